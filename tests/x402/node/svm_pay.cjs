// Pays one x402-protected URL with the official npm client: @x402/fetch + @x402/svm (exact).
// Usage: node svm_pay.cjs '<json: {url, secretKey: [64 numbers], rpcUrl, network}>'
// Prints one JSON line: {status, body, paymentResponse}.
const { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } = require("@x402/fetch");
const { ExactSvmScheme } = require("@x402/svm/exact/client");
const { createKeyPairSignerFromBytes } = require("@solana/kit");

async function main() {
  const args = JSON.parse(process.argv[2]);
  const signer = await createKeyPairSignerFromBytes(Uint8Array.from(args.secretKey));
  const client = new x402Client();
  client.register(args.network, new ExactSvmScheme(signer, { rpcUrl: args.rpcUrl }));
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
