-- The claim workers' named queries (verifier/store/claims.py). Parameters only.

-- name: lock_claim
-- The next waiting claim, row-locked until the caller's transaction ends, with its payment if
-- recorded. SKIP LOCKED lets many workers and daemons share the queue. A claim decided inside
-- that transaction costs one commit. Claims whose payment is recorded come first: they are
-- decided from the database, so they never wait behind claims that need the chain. With
-- recorded_only, only those: what a worker takes while the on-demand lookups are at their limit
-- (verifier/claims.py Lookups).
SELECT c.id, c.chain, c.tx_hash, c.token_hash, c.proof, c.attempts, now() - c.created_at,
       p.id, p.status, p.from_address, p.amount_usdc,
       EXISTS (SELECT 1 FROM x402_tokens t WHERE t.payment_id = p.id) AS claimed,
       p.expires_at <= now() AS lapsed
  FROM verifier.claims c
  LEFT JOIN x402_payments p ON p.tx_hash = c.tx_hash AND p.chain = c.chain
 WHERE c.id = (
        SELECT w.id FROM verifier.claims w
         WHERE w.status = 'waiting'
           AND w.next_attempt_at <= now()
           AND (w.lease_until IS NULL OR w.lease_until < now())
           AND (NOT %(recorded_only)s OR EXISTS (SELECT 1 FROM x402_payments r
                                                  WHERE r.tx_hash = w.tx_hash
                                                    AND r.chain = w.chain))
         ORDER BY EXISTS (SELECT 1 FROM x402_payments r
                           WHERE r.tx_hash = w.tx_hash AND r.chain = w.chain) DESC,
                  w.next_attempt_at, w.id
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
-- A payment past its expires_at (cleanup has not marked it yet) gets no dead token: 'expired'.
WITH pay AS (
    SELECT id, expires_at, expires_at > now() AS live FROM x402_payments
     WHERE id = %(payment_id)s AND status = 'verified'
       FOR UPDATE
), tok AS (
    INSERT INTO x402_tokens (token_hash, payment_id, expires_at)
    SELECT %(token_hash)s, pay.id, pay.expires_at FROM pay WHERE pay.live
    ON CONFLICT DO NOTHING
    RETURNING id
)
UPDATE verifier.claims c
   SET status = CASE WHEN EXISTS (SELECT 1 FROM tok) THEN 'issued' ELSE 'rejected' END,
       reason = CASE WHEN EXISTS (SELECT 1 FROM tok) THEN NULL
                     WHEN EXISTS (SELECT 1 FROM pay WHERE NOT pay.live) THEN 'expired'
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
