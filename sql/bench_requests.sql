-- Named queries of scripts/bench_requests.py: the request path side by side with the floor.

-- name: make_payment
-- A verified payment with a token, allocated %(requests)s requests, valid for a day.
WITH p AS (
    INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address,
                               block_number, confirmations, status, requests_allocated,
                               verified_at, expires_at)
    VALUES ('0x' || md5(%(name)s) || md5('tx' || %(name)s), 'base', 1, '0x' || lpad('b', 40, '0'),
            '0x' || lpad('e', 40, '0'), 1, 12, 'verified', %(requests)s, now(),
            now() + interval '1 day')
    RETURNING id
)
INSERT INTO x402_tokens (token_hash, payment_id, expires_at)
SELECT %(token_hash)s, p.id, now() + interval '1 day' FROM p
RETURNING payment_id

-- name: floor_insert
-- (a) the physical floor: one bare usage row, committed (autocommit).
INSERT INTO x402_usage (payment_id, endpoint, method, status_code)
VALUES (%(payment_id)s, '/bench', 'GET', 200)

-- name: consume
SELECT allowed, requests_remaining, reason
  FROM verifier.consume_request(%(token_hash)s, '/bench', 'GET', 200)

-- name: merge
-- What the cleanup job does first (a no-op where there is nothing to merge back).
SELECT verifier.merge_request_slots()

-- name: accounting
-- Per payment of the run: allocated, used and usage rows logged.
SELECT p.id, p.requests_allocated, p.requests_used,
       (SELECT count(*) FROM x402_usage u WHERE u.payment_id = p.id) AS logged
  FROM x402_payments p
 WHERE p.id = ANY(%(ids)s)

-- name: reset
TRUNCATE x402_usage, x402_tokens, x402_payments CASCADE
