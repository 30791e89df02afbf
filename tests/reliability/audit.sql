-- Named queries of the chaos soak's audit (tests/reliability/soak.py).

-- name: payments
SELECT chain, tx_hash, status, amount_usdc, requests_allocated
  FROM x402_payments

-- name: claims
SELECT id, chain, tx_hash, token_hash, status, reason
  FROM verifier.claims

-- name: tokens
SELECT t.token_hash, p.chain, p.tx_hash, p.status
  FROM x402_tokens t
  JOIN x402_payments p ON p.id = t.payment_id

-- name: cursors
SELECT chain, account, position, marker
  FROM verifier.cursors

-- name: waiting_claims
SELECT count(*) FROM verifier.claims WHERE status = 'waiting'

-- name: pending_payments
SELECT count(*) FROM x402_payments WHERE status = 'pending'

-- name: recorded
SELECT count(*) FROM x402_payments
