-- The facilitator's settlement ledger (verifier/store/settlements.py). Parameters only.

-- name: find
SELECT id, chain, payer, nonce, pay_to, asset, amount, network, resource, settler, tx_nonce,
       signed_tx, tx_hash, state, block_number, block_hash, error_reason, answer,
       success_answered, broadcasts
  FROM verifier.settlements
 WHERE chain = %(chain)s AND payer = %(payer)s AND nonce = %(nonce)s

-- name: by_id
SELECT id, chain, payer, nonce, pay_to, asset, amount, network, resource, settler, tx_nonce,
       signed_tx, tx_hash, state, block_number, block_hash, error_reason, answer,
       success_answered, broadcasts
  FROM verifier.settlements
 WHERE id = %(id)s

-- name: take
-- The ledger entry, before anything is signed or sent: whoever inserts it settles; everyone
-- else finds it (the unique key decides, across daemons).
INSERT INTO verifier.settlements (chain, payer, nonce, pay_to, asset, amount, valid_before,
                                  network, resource, settler)
VALUES (%(chain)s, %(payer)s, %(nonce)s, %(pay_to)s, %(asset)s, %(amount)s, %(valid_before)s,
        %(network)s, %(resource)s, %(settler)s)
ON CONFLICT (chain, payer, nonce) DO NOTHING
RETURNING id

-- name: allocate_nonce
-- The settler's next nonce. `chain_next` is the account's pending transaction count as the node
-- last saw it: never go below it (a key also used elsewhere moves on), never reuse one handed
-- out here. The row lock serializes allocations of one key across daemons; it is held only
-- until the signed transaction is stored (same transaction), which takes microseconds.
INSERT INTO verifier.settler_nonces AS n (chain, settler, next_nonce)
VALUES (%(chain)s, %(settler)s, %(chain_next)s + 1)
ON CONFLICT (chain, settler) DO UPDATE
   SET next_nonce = greatest(n.next_nonce, %(chain_next)s) + 1, updated_at = now()
RETURNING next_nonce - 1

-- name: next_nonce
SELECT next_nonce FROM verifier.settler_nonces WHERE chain = %(chain)s AND settler = %(settler)s

-- name: mark_signed
UPDATE verifier.settlements
   SET state = 'signed', settler = %(settler)s, tx_nonce = %(tx_nonce)s,
       signed_tx = %(signed_tx)s, tx_hash = %(tx_hash)s, updated_at = now()
 WHERE id = %(id)s AND state = 'taken'

-- name: mark_sent
UPDATE verifier.settlements
   SET state = CASE WHEN state = 'signed' THEN 'sent' ELSE state END,
       broadcasts = broadcasts + 1, updated_at = now()
 WHERE id = %(id)s

-- name: mark_mined
-- Once only: the caller records the payment and its usage in the same transaction only when
-- this returns the row.
UPDATE verifier.settlements
   SET state = 'mined', block_number = %(block_number)s, block_hash = %(block_hash)s,
       error_reason = NULL, updated_at = now()
 WHERE id = %(id)s AND state IN ('signed', 'sent', 'failed')
RETURNING id

-- name: mark_failed
UPDATE verifier.settlements
   SET state = 'failed', error_reason = %(reason)s, updated_at = now()
 WHERE id = %(id)s AND state IN ('taken', 'signed', 'sent')

-- name: release
-- An entry taken but never signed: nothing was sent, so the authorization may be settled later.
DELETE FROM verifier.settlements WHERE id = %(id)s AND state = 'taken'

-- name: claim_success
-- Exactly one answer per authorization says success:true: the one that flips this.
UPDATE verifier.settlements
   SET success_answered = true, updated_at = now()
 WHERE id = %(id)s AND state = 'mined' AND NOT success_answered
RETURNING id

-- name: store_answer
UPDATE verifier.settlements
   SET answer = %(answer)s, updated_at = now()
 WHERE id = %(id)s AND answer IS NULL

-- name: unfinished
SELECT id FROM verifier.settlements
 WHERE chain = %(chain)s AND settler = %(settler)s AND state IN ('signed', 'sent')
   AND updated_at < now() - %(older_than)s
 ORDER BY tx_nonce

-- name: abandoned
-- Taken but never signed (the daemon died between taking and signing, or refused to sign):
-- no transaction exists, no nonce was allocated; the entry is released so a repeat settles.
SELECT id FROM verifier.settlements
 WHERE chain = %(chain)s AND state = 'taken' AND updated_at < now() - %(older_than)s

-- name: counts
SELECT chain, state, count(*) FROM verifier.settlements GROUP BY chain, state

-- name: use_paid_request
-- The request the payment was made for is counted as used and logged, as consume_request
-- would log it; the facilitator knows only the resource's path (method '' and status 200 are
-- placeholders, see README).
WITH used AS (
    UPDATE x402_payments
       SET requests_used = requests_used + 1
     WHERE chain = %(chain)s AND tx_hash = %(tx_hash)s AND requests_used < requests_allocated
    RETURNING id
)
INSERT INTO x402_usage (payment_id, endpoint, method, status_code)
SELECT id, %(endpoint)s, '', 200 FROM used
