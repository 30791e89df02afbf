-- Named queries of scripts/bench_sql.py: the fill at the guide's 30-day scale, then the
-- statements it times. Rows are generated in the server (generate_series), never sent row by row.

-- Payments spread evenly over the last days, one every minute and a half, on the three
-- chains, from a fixed number of payers. One in ten is a 0.10 USDC payment (100 requests) that its
-- usage will exhaust; the others buy 500 to 10,499 requests. Statuses are set after the usage.
-- name: fill_payments
INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, block_number,
                           block_hash, confirmations, status, requests_allocated, created_at,
                           verified_at, expires_at)
SELECT CASE WHEN s.chain = 'solana' THEN md5(s.g::text) || md5((-s.g)::text)
            ELSE '0x' || md5(s.g::text) || md5((-s.g)::text) END,
       s.chain,
       s.units / 1000000.0,
       CASE WHEN s.chain = 'solana' THEN 'Payer' || lpad((s.g %% %(payers)s)::text, 39, '1')
            ELSE '0x' || lpad(to_hex(s.g %% %(payers)s), 40, '0') END,
       CASE WHEN s.chain = 'solana' THEN 'PayeeSoLana1111111111111111111111111111111'
            ELSE '0x00000000000000000000000000000000000402ee' END,
       20000000 + s.g,
       '0x' || md5(('block' || s.g)::text) || md5(('hash' || s.g)::text),
       12,
       'verified',
       s.units / 1000,
       s.verified_at - interval '1 minute',
       s.verified_at,
       s.verified_at + interval '24 hours'
  FROM (SELECT g,
               (ARRAY['base', 'ethereum', 'solana'])[1 + g %% 3] AS chain,
               CASE WHEN g %% 10 = 0 THEN 100000
                    ELSE 500000 + (g * 7919 %% 10000) * 1000 END AS units,
               now() - %(days)s * interval '1 day'
                     + (g - 1) * (%(days)s * interval '1 day' / %(payments)s) AS verified_at
          FROM generate_series(1, %(payments)s) AS g) AS s;

-- name: fill_tokens
INSERT INTO x402_tokens (token_hash, payment_id, created_at, expires_at)
SELECT encode(sha256(convert_to('bench-token-' || p.id, 'UTF8')), 'hex'), p.id, p.verified_at,
       p.expires_at
  FROM x402_payments p;

-- Usage rows numbered first .. last, at most limit of them: row j is request
-- k = j / payments of payment 1 + j mod payments, made k * 13 minutes after it was verified
-- (inside its 24 hours). Rows that would lie in the future, or beyond what the payment bought,
-- are skipped; the script goes on past 3,000,000 numbers until the total is reached.
-- name: fill_usage
INSERT INTO x402_usage (payment_id, endpoint, method, status_code, response_time_ms,
                        ip_address, user_agent, created_at)
SELECT p.id,
       (ARRAY['/api/v1/quote', '/api/v1/search', '/api/v1/data', '/api/v1/report',
              '/api/v1/price', '/api/v1/news', '/api/v2/chat', '/api/v2/embed'])[1 + j %% 8],
       CASE WHEN j %% 5 = 0 THEN 'POST' ELSE 'GET' END,
       CASE WHEN j %% 50 = 0 THEN 500 WHEN j %% 20 = 0 THEN 404 ELSE 200 END,
       5 + (j * 31 %% 400),
       ('10.' || (j %% 250) || '.' || (j / 250 %% 250) || '.7')::inet,
       'bench/1.0',
       p.verified_at + (j / %(payments)s) * interval '13 minutes' + interval '5 seconds'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS j
  JOIN x402_payments p ON p.id = 1 + j %% %(payments)s
 WHERE j / %(payments)s < p.requests_allocated
   AND p.verified_at + (j / %(payments)s) * interval '13 minutes' + interval '5 seconds' <= now()
 LIMIT %(limit)s;

-- requests_used from the usage written; statuses as a running system would have them: used
-- when exhausted, expired once past expiry (the last hour's expiries are left for cleanup).
-- name: settle_payments
UPDATE x402_payments p
   SET requests_used = u.n,
       status = CASE WHEN u.n >= p.requests_allocated THEN 'used'
                     WHEN p.expires_at < now() - interval '1 hour' THEN 'expired'
                     ELSE 'verified' END
  FROM (SELECT payment_id, count(*) AS n FROM x402_usage GROUP BY payment_id) AS u
 WHERE u.payment_id = p.id;

-- name: fill_analytics
SELECT count(*)
  FROM (SELECT update_x402_analytics(h)
          FROM generate_series(date_trunc('hour', now(), 'UTC') - %(days)s * interval '1 day',
                               date_trunc('hour', now(), 'UTC') - interval '1 hour',
                               interval '1 hour') AS h) AS done;

-- name: counts
SELECT (SELECT count(*) FROM x402_payments) AS payments,
       (SELECT count(*) FROM x402_tokens) AS tokens,
       (SELECT count(*) FROM x402_usage) AS usage,
       (SELECT count(*) FROM x402_analytics) AS analytics,
       (SELECT count(*) FROM v_x402_active_payments) AS active,
       pg_size_pretty(pg_database_size(current_database())) AS size

-- Samples the timed statements draw their parameters from.
-- name: sample_tx_hashes
SELECT tx_hash, chain FROM x402_payments ORDER BY md5(id::text) LIMIT %(n)s

-- name: sample_live_tokens
SELECT t.token_hash FROM x402_tokens t JOIN x402_payments p ON p.id = t.payment_id
 WHERE p.status = 'verified' AND p.expires_at > now() + interval '10 minutes'
   AND p.requests_allocated - p.requests_used > 100
 ORDER BY md5(t.id::text) LIMIT %(n)s

-- name: sample_payers
SELECT DISTINCT from_address FROM v_x402_active_payments ORDER BY 1 LIMIT %(n)s

-- name: sample_hours
SELECT hour_bucket FROM x402_analytics GROUP BY hour_bucket ORDER BY md5(hour_bucket::text)
 LIMIT %(n)s

-- The statements timed --------------------------------------------------------------------

-- The guide's lookup of a payment by its hash (the hash alone, as the guide writes it).
-- name: lookup_payment
SELECT * FROM x402_payments WHERE tx_hash = %(tx_hash)s

-- name: lookup_payment_chain
SELECT * FROM x402_payments WHERE chain = %(chain)s AND tx_hash = %(tx_hash)s

-- What an API server checks before serving a paid request (without consuming it).
-- name: validate_token
SELECT p.id, p.requests_allocated - p.requests_used AS requests_remaining, t.expires_at
  FROM x402_tokens t JOIN x402_payments p ON p.id = t.payment_id
 WHERE t.token_hash = %(token_hash)s AND t.expires_at > now()
   AND p.status = 'verified' AND p.expires_at > now()

-- name: consume_request
SELECT * FROM verifier.consume_request(%(token_hash)s, '/api/v1/quote', 'GET', 200, 12,
                                       '192.0.2.1', 'bench/1.0')

-- name: active_all
SELECT * FROM v_x402_active_payments

-- name: active_by_payer
SELECT * FROM v_x402_active_payments WHERE from_address = %(from_address)s

-- The guide's daily summary of active payments.
-- name: active_summary
SELECT COUNT(*) as active_payments, SUM(requests_allocated - requests_used) as remaining_requests
  FROM v_x402_active_payments

-- name: stats_24h
SELECT * FROM v_x402_stats_24h

-- name: top_payers
SELECT * FROM v_x402_top_payers

-- name: endpoint_stats
SELECT * FROM v_x402_endpoint_stats ORDER BY request_count DESC LIMIT 10

-- name: analytics_last_24h
SELECT * FROM x402_analytics WHERE hour_bucket >= now() - interval '24 hours'
 ORDER BY hour_bucket DESC, chain

-- name: update_analytics
SELECT update_x402_analytics(%(hour)s)

-- name: cleanup
SELECT cleanup_expired_x402_payments()

-- Every payment active at once: the worst case of v_x402_active_payments.
-- name: activate_all
UPDATE x402_payments
   SET status = 'verified', expires_at = now() + interval '1 day',
       requests_used = least(requests_used, requests_allocated - 1)

-- Housekeeping ----------------------------------------------------------------------------

-- name: fast_fill
SET synchronous_commit = off

-- name: vacuum_analyze
VACUUM ANALYZE

-- name: vacuum_payments
VACUUM ANALYZE x402_payments

-- name: analyze_payments
ANALYZE x402_payments

-- name: has_schema
SELECT to_regclass('x402_usage') IS NOT NULL

-- name: server_version
SHOW server_version

-- name: cluster_usage
CLUSTER x402_usage USING idx_x402_usage_created_at

-- The server's own time for one statement (the statement follows this prefix).
-- name: explain
EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)
