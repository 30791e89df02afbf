// Pays one x402-protected URL with the official npm client: @x402/fetch + @x402/svm (exact).
// Usage: node svm_pay.cjs '<json: {url, secretKey: [64 numbers], rpcUrl, network, repeat?}>'
// Prints one JSON line: {status, body, paymentResponse}.
// With repeat: N, the client's one PAYMENT-SIGNATURE is sent N times at once (a replay, as a
// retrying client or an attacker would); prints {answers: [{status, paymentResponse}...]}.
const {
  wrapFetchWithPayment, x402Client, x402HTTPClient, decodePaymentResponseHeader,
} = require("@x402/fetch");
const { ExactSvmScheme } = require("@x402/svm/exact/client");
const { createKeyPairSignerFromBytes } = require("@solana/kit");

async function main() {
  const args = JSON.parse(process.argv[2]);
  const signer = await createKeyPairSignerFromBytes(Uint8Array.from(args.secretKey));
  const client = new x402Client();
  client.register(args.network, new ExactSvmScheme(signer, { rpcUrl: args.rpcUrl }));
  if (args.repeat) {
    const http = new x402HTTPClient(client);
    const first = await fetch(args.url);
    const required = http.getPaymentRequiredResponse((n) => first.headers.get(n),
                                                     await first.json().catch(() => undefined));
    const headers = http.encodePaymentSignatureHeader(await http.createPaymentPayload(required));
    const answers = await Promise.all(Array.from({ length: args.repeat }, async () => {
      const r = await fetch(args.url, { headers });
      const h = r.headers.get("PAYMENT-RESPONSE");
      await r.text();
      return { status: r.status, paymentResponse: h ? decodePaymentResponseHeader(h) : null };
    }));
    console.log(JSON.stringify({ firstStatus: first.status, answers }));
    return;
  }
  const pay = wrapFetchWithPayment(fetch, client);
  const response = await pay(args.url, { method: "GET" });
  const header = response.headers.get("PAYMENT-RESPONSE");
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  console.log(JSON.stringify({
    status: response.status,
    body,
    paymentResponse: header ? decodePaymentResponseHeader(header) : null,
  }));
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exit(1);
});
