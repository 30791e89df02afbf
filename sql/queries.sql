-- The daemon's named queries (verifier/store.py). Parameters only, never interpolation.
-- Advisory locks use the two-key form (402, n): n = 10 + chain for watchers, 20+ for jobs.

-- name: try_lock
SELECT pg_try_advisory_lock(402, %(key)s) AS locked

-- name: unlock
SELECT pg_advisory_unlock(402, %(key)s) AS unlocked

-- name: try_xact_lock
SELECT pg_try_advisory_xact_lock(402, %(key)s) AS locked

-- name: cursors
SELECT chain, account, position, marker
  FROM verifier.cursors
 WHERE chain = %(chain)s
 ORDER BY account

-- name: save_cursor
INSERT INTO verifier.cursors (chain, account, position, marker)
VALUES (%(chain)s, %(account)s, %(position)s, %(marker)s)
ON CONFLICT (chain, account) DO UPDATE
   SET position = EXCLUDED.position, marker = EXCLUDED.marker, updated_at = now()

-- name: upsert_payments
-- Found payments, in one statement. A row already recorded is only touched while it is pending
-- or reorged (refreshed, or revived when its transaction is found again), so a rescan can never
-- credit a payment twice or undo a verdict.
INSERT INTO x402_payments AS p (
    tx_hash, chain, amount_usdc, from_address, to_address, block_number, block_hash,
    confirmations, status, requests_allocated, verified_at, expires_at
)
SELECT t.tx_hash, %(chain)s, t.amount, t.from_address, t.to_address, t.block_number,
       t.block_hash, t.confirmations, t.status, t.requests,
       CASE WHEN t.status IN ('verified', 'underpaid') THEN now() END,
       now() + %(ttl)s
  FROM unnest(%(tx_hash)s::text[], %(amount)s::numeric[], %(from_address)s::text[],
              %(to_address)s::text[], %(block_number)s::bigint[], %(block_hash)s::text[],
              %(confirmations)s::int[], %(status)s::text[], %(requests)s::bigint[])
       AS t (tx_hash, amount, from_address, to_address, block_number, block_hash,
             confirmations, status, requests)
ON CONFLICT (tx_hash, chain) DO UPDATE
   SET amount_usdc        = EXCLUDED.amount_usdc,
       from_address       = EXCLUDED.from_address,
       to_address         = EXCLUDED.to_address,
       block_number       = EXCLUDED.block_number,
       block_hash         = EXCLUDED.block_hash,
       confirmations      = EXCLUDED.confirmations,
       status             = EXCLUDED.status,
       requests_allocated = EXCLUDED.requests_allocated,
       verified_at        = EXCLUDED.verified_at,
       expires_at         = EXCLUDED.expires_at
 WHERE p.status IN ('pending', 'reorged')

-- name: pending_payments
SELECT id, tx_hash, block_number, block_hash, from_address, to_address, amount_usdc
  FROM x402_payments
 WHERE chain = %(chain)s AND status = 'pending'
 ORDER BY block_number, id

-- name: settle_pending
-- New verdicts for pending payments; a row that left 'pending' meanwhile is not touched.
UPDATE x402_payments p
   SET status = t.status,
       confirmations = t.confirmations,
       requests_allocated = t.requests,
       verified_at = CASE WHEN t.status IN ('verified', 'underpaid') THEN now() END,
       expires_at = now() + %(ttl)s
  FROM unnest(%(id)s::bigint[], %(status)s::text[], %(confirmations)s::int[],
              %(requests)s::bigint[]) AS t (id, status, confirmations, requests)
 WHERE p.id = t.id AND p.status = 'pending'

-- name: remember_blocks
INSERT INTO verifier.blocks (chain, block_number, block_hash)
SELECT %(chain)s, t.n, t.h FROM unnest(%(numbers)s::bigint[], %(hashes)s::text[]) AS t (n, h)
ON CONFLICT (chain, block_number) DO UPDATE
   SET block_hash = EXCLUDED.block_hash, seen_at = now()

-- name: recent_blocks
SELECT block_number, block_hash
  FROM verifier.blocks
 WHERE chain = %(chain)s AND block_number >= %(since)s
 ORDER BY block_number

-- name: forget_blocks_below
DELETE FROM verifier.blocks WHERE chain = %(chain)s AND block_number < %(below)s

-- name: forget_blocks_above
DELETE FROM verifier.blocks WHERE chain = %(chain)s AND block_number > %(above)s

-- name: mark_reorged
-- Payments whose (block, hash) is no longer on the chain.
UPDATE x402_payments p
   SET status = 'reorged'
  FROM unnest(%(numbers)s::bigint[], %(hashes)s::text[]) AS gone (n, h)
 WHERE p.chain = %(chain)s
   AND p.block_number = gone.n
   AND p.block_hash = gone.h
   AND p.status <> 'reorged'
RETURNING p.id, p.tx_hash, p.status

-- name: revoke_tokens
DELETE FROM x402_tokens WHERE payment_id = ANY(%(payment_ids)s::bigint[])

-- name: payment_by_tx
SELECT id, status, from_address, to_address, amount_usdc, block_number, block_hash, expires_at,
       EXISTS (SELECT 1 FROM x402_tokens t WHERE t.payment_id = p.id) AS claimed
  FROM x402_payments p
 WHERE tx_hash = %(tx_hash)s AND chain = %(chain)s

-- name: lock_claim
-- The next waiting claim, row-locked until the caller's transaction ends, with its payment if
-- recorded. SKIP LOCKED lets many workers and daemons share the queue. A claim decided inside
-- that transaction costs one commit.
SELECT c.id, c.chain, c.tx_hash, c.token_hash, c.proof, c.attempts, now() - c.created_at,
       p.id, p.status, p.from_address, p.amount_usdc,
       EXISTS (SELECT 1 FROM x402_tokens t WHERE t.payment_id = p.id) AS claimed
  FROM verifier.claims c
  LEFT JOIN x402_payments p ON p.tx_hash = c.tx_hash AND p.chain = c.chain
 WHERE c.id = (
        SELECT id FROM verifier.claims
         WHERE status = 'waiting'
           AND next_attempt_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_attempt_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED)

-- name: lease_claim
-- A claim that needs the network is leased instead of held locked: another worker takes it
-- again only if this one has not decided it when the lease ends.
UPDATE verifier.claims
   SET lease_until = now() + %(lease)s, attempts = attempts + 1, updated_at = now()
 WHERE id = %(claim_id)s

-- name: issue_token
-- The token row is written in the same statement that closes the claim. ON CONFLICT keeps one
-- token per payment even when two claims for it race.
WITH pay AS (
    SELECT id, expires_at FROM x402_payments
     WHERE id = %(payment_id)s AND status = 'verified'
       FOR UPDATE
), tok AS (
    INSERT INTO x402_tokens (token_hash, payment_id, expires_at)
    SELECT %(token_hash)s, pay.id, pay.expires_at FROM pay
    ON CONFLICT DO NOTHING
    RETURNING id
)
UPDATE verifier.claims c
   SET status = CASE WHEN EXISTS (SELECT 1 FROM tok) THEN 'issued' ELSE 'rejected' END,
       reason = CASE WHEN EXISTS (SELECT 1 FROM tok) THEN NULL
                     WHEN EXISTS (SELECT 1 FROM pay) THEN 'already_claimed'
                     ELSE 'not_verified' END,
       payment_id = %(payment_id)s,
       decided_at = now(), updated_at = now(), lease_until = NULL
 WHERE c.id = %(claim_id)s AND c.status = 'waiting'
RETURNING c.status, c.reason, pg_notify('x402_claim_done', c.id::text)

-- name: close_claim
UPDATE verifier.claims
   SET status = %(status)s, reason = %(reason)s, payment_id = %(payment_id)s,
       decided_at = now(), updated_at = now(), lease_until = NULL
 WHERE id = %(claim_id)s AND status = 'waiting'
RETURNING status, reason, pg_notify('x402_claim_done', id::text)

-- name: defer_claim
UPDATE verifier.claims
   SET next_attempt_at = now() + %(delay)s, lease_until = NULL, reason = %(reason)s,
       payment_id = %(payment_id)s, updated_at = now()
 WHERE id = %(claim_id)s AND status = 'waiting'

-- name: claim_status
SELECT id, chain, tx_hash, status, reason, payment_id, created_at, decided_at
  FROM verifier.claims
 WHERE id = %(claim_id)s

-- name: chain_status
SELECT c.chain, max(c.position) AS position, max(c.updated_at) AS updated_at,
       (SELECT count(*) FROM x402_payments p
         WHERE p.chain = c.chain AND p.status = 'pending') AS pending_payments,
       (SELECT count(*) FROM verifier.claims w
         WHERE w.chain = c.chain AND w.status = 'waiting') AS waiting_claims
  FROM verifier.cursors c
 GROUP BY c.chain
 ORDER BY c.chain

-- name: ping
SELECT 1

-- name: listen_claims
LISTEN x402_claims

-- name: listen_claim_done
LISTEN x402_claim_done
