-- The claim workers' named queries (verifier/store/claims.py). Parameters only.

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

-- name: claim_channel
-- New claims are announced on this channel (migration 008); only the daemon may read its name.
SELECT channel FROM verifier.claim_channel

-- name: listen_claims
-- The channel is the name read above, composed in as an identifier (psycopg.sql).
LISTEN {channel}
