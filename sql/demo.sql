-- Named queries of scripts/demo.py (`make demo`). Demo rows are paid to the demo payees only,
-- so a new run can remove the previous run's rows and nothing else.

-- name: forget_previous_run
DELETE FROM x402_payments WHERE to_address = ANY(%(payees)s)

-- name: insert_payment
INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, block_number,
                           block_hash, confirmations, status, requests_allocated, verified_at,
                           expires_at)
VALUES (%(tx_hash)s, %(chain)s, %(amount_usdc)s, %(from_address)s, %(to_address)s,
        %(block_number)s, %(block_hash)s, %(confirmations)s, %(status)s,
        %(requests_allocated)s, %(verified_at)s, %(expires_at)s)
RETURNING id

-- name: insert_token
INSERT INTO x402_tokens (token_hash, payment_id, expires_at)
SELECT %(token_hash)s, p.id, p.expires_at FROM x402_payments p WHERE p.id = %(payment_id)s

-- name: consume_request
SELECT allowed, requests_remaining, reason
  FROM verifier.consume_request(%(token_hash)s, %(endpoint)s, %(method)s, %(status_code)s,
                                %(response_time_ms)s, %(ip_address)s, %(user_agent)s)

-- name: cleanup
SELECT cleanup_expired_x402_payments()

-- name: update_analytics
SELECT update_x402_analytics(%(hour)s)

-- name: analytics_for_hour
SELECT hour_bucket, chain, total_payments, total_amount_usdc, total_requests, unique_payers,
       average_payment_usdc
  FROM x402_analytics WHERE hour_bucket = date_trunc('hour', %(hour)s, 'UTC')
 ORDER BY chain

-- name: payments
SELECT chain, left(tx_hash, 14) || '…' AS tx_hash, amount_usdc, status, requests_allocated,
       requests_used
  FROM x402_payments WHERE to_address = ANY(%(payees)s) ORDER BY id

-- name: active_payments
SELECT chain, from_address, amount_usdc, requests_allocated, requests_used, requests_remaining,
       expires_at
  FROM v_x402_active_payments ORDER BY verified_at

-- name: stats_24h
SELECT * FROM v_x402_stats_24h ORDER BY chain

-- name: top_payers
SELECT * FROM v_x402_top_payers LIMIT 10

-- name: endpoint_stats
SELECT * FROM v_x402_endpoint_stats ORDER BY request_count DESC LIMIT 10

-- name: payment_status
SELECT status FROM x402_payments WHERE chain = %(chain)s AND tx_hash = %(tx_hash)s

-- name: payments_seen
SELECT chain, tx_hash, status, amount_usdc, from_address FROM x402_payments ORDER BY id

-- name: all_payments
SELECT chain, left(tx_hash, 14) || '…' AS tx_hash, from_address, amount_usdc, status,
       requests_allocated, requests_used
  FROM x402_payments ORDER BY id
