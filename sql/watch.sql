-- The watcher's named queries (verifier/store/watch.py): cursors, payments, the blocks they
-- were seen in, and the rewind after a reorg. Parameters only, never interpolation.

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
-- credit a payment twice or undo a verdict. A revival never allocates less than was already
-- used (a reorged, partly spent payment re-included with a smaller amount).
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
       requests_allocated = GREATEST(EXCLUDED.requests_allocated, p.requests_used),
       verified_at        = EXCLUDED.verified_at,
       expires_at         = EXCLUDED.expires_at
 WHERE p.status IN ('pending', 'reorged')

-- name: remember_exact
-- The found payments that are x402 "exact" ones (migration 013): a fact of the transaction.
INSERT INTO verifier.exact_payments (chain, tx_hash)
SELECT %(chain)s, t.tx_hash FROM unnest(%(tx_hash)s::text[]) AS t (tx_hash)
ON CONFLICT (chain, tx_hash) DO NOTHING

-- name: pending_payments
SELECT p.id, p.tx_hash, p.block_number, p.block_hash, p.from_address, p.to_address,
       p.amount_usdc, e.tx_hash IS NOT NULL AS exact
  FROM x402_payments p
  LEFT JOIN verifier.exact_payments e ON e.chain = p.chain AND e.tx_hash = p.tx_hash
 WHERE p.chain = %(chain)s AND p.status = 'pending'
 ORDER BY p.block_number, p.id

-- name: settle_pending
-- New verdicts for pending payments; a row that left 'pending' meanwhile is not touched. Never
-- below what is used: a revived payment may have been partly spent before its reorg.
UPDATE x402_payments p
   SET status = t.status,
       confirmations = t.confirmations,
       requests_allocated = GREATEST(t.requests, p.requests_used),
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
-- The tokens of reorged payments are deleted; their claims become 'revoked' with reason
-- 'payment_reorged' and stay (until X402_CLAIM_RETENTION_DAYS) as the tombstone that
-- verifier.consume_request reads to answer payment_reorged instead of unknown_token.
WITH gone AS (
    DELETE FROM x402_tokens WHERE payment_id = ANY(%(payment_ids)s::bigint[])
    RETURNING token_hash
)
UPDATE verifier.claims c
   SET status = 'revoked', reason = 'payment_reorged', decided_at = now(), updated_at = now()
  FROM gone
 WHERE c.token_hash = gone.token_hash AND c.status = 'issued'

-- name: payment_by_tx
SELECT id, status, from_address, to_address, amount_usdc, block_number, block_hash, expires_at,
       EXISTS (SELECT 1 FROM x402_tokens t WHERE t.payment_id = p.id) AS claimed,
       expires_at <= now() AS lapsed
  FROM x402_payments p
 WHERE tx_hash = %(tx_hash)s AND chain = %(chain)s

-- name: quarantine
-- Transactions put aside (migration 009), in the transaction that moves the cursor past them.
-- Met again: one more attempt, and the next retry twice as far (15 s x 2^attempts, at most 6 h).
INSERT INTO verifier.solana_quarantine AS q (
    chain, account, signature, slot, reason, error_code, attempts, next_retry_at
)
SELECT %(chain)s, t.account, t.signature, t.slot, t.reason, t.code, t.attempts,
       now() + least(interval '15 seconds' * power(2, least(t.attempts, 20)), interval '6 hours')
  FROM unnest(%(account)s::text[], %(signature)s::text[], %(slot)s::bigint[],
              %(reason)s::text[], %(code)s::int[], %(attempts)s::int[])
       AS t (account, signature, slot, reason, code, attempts)
ON CONFLICT (chain, signature) DO UPDATE
   SET reason = EXCLUDED.reason,
       error_code = EXCLUDED.error_code,
       attempts = q.attempts + 1,
       last_seen = now(),
       next_retry_at = now() + least(interval '15 seconds' * power(2, least(q.attempts + 1, 20)),
                                     interval '6 hours')

-- name: release_quarantined
DELETE FROM verifier.solana_quarantine
 WHERE chain = %(chain)s AND signature = ANY(%(signatures)s::text[])

-- name: quarantine_due
SELECT chain, account, signature, slot, reason, error_code, attempts
  FROM verifier.solana_quarantine
 WHERE chain = %(chain)s AND next_retry_at <= now()
 ORDER BY next_retry_at, signature
 LIMIT %(limit)s

-- name: wake_claims
-- Claims waiting (backed off) for transactions just recorded are due again at once: they are
-- now decided from the database.
UPDATE verifier.claims
   SET next_attempt_at = now()
 WHERE status = 'waiting' AND chain = %(chain)s AND tx_hash = ANY(%(tx_hash)s::text[])
   AND next_attempt_at > now()
