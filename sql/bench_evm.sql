-- Named queries of scripts/bench_evm.py.

-- name: naive_insert
-- The naive verifier's one INSERT per payment.
INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, block_number,
                           confirmations, status, requests_allocated, expires_at)
VALUES (%(tx)s, 'base', %(amount)s::numeric / 1000000, %(sender)s, %(payee)s, %(block)s,
        %(confirmations)s, %(status)s, %(requests)s, now() + interval '24 hours')

-- name: claim_latencies
-- Submit -> token row, in milliseconds, both instants stamped by PostgreSQL.
SELECT extract(epoch FROM t.created_at - c.created_at) * 1000
  FROM verifier.claims c
  JOIN x402_tokens t ON t.token_hash = c.token_hash
 WHERE c.status = 'issued'
