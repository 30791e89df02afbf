-- Named queries of the chaos soak's audit (verifier/devnet/soak.py).

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

-- name: text_columns
-- Every column of the verifier's tables (and the views) that can hold text.
SELECT c.table_schema, c.table_name, c.column_name
  FROM information_schema.columns c
  JOIN information_schema.tables t
    ON t.table_schema = c.table_schema AND t.table_name = c.table_name
 WHERE c.table_schema IN ('public', 'verifier')
   AND t.table_type = 'BASE TABLE'
   AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
 ORDER BY 1, 2, 3

-- name: rows_containing
-- {table} and {column} are psycopg.sql identifiers.
SELECT count(*) FROM {table} WHERE strpos({column}::text, %(needle)s) > 0

-- name: function_security
-- The verifier's SQL functions and the guide's two: who they run as, and their search_path.
SELECT n.nspname, p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'verifier'
    OR (n.nspname = 'public'
        AND p.proname IN ('cleanup_expired_x402_payments', 'update_x402_analytics'))
 ORDER BY 1, 2

-- name: retry_quarantined_now
-- What the README tells an operator to run to retry quarantined transactions at once.
UPDATE verifier.solana_quarantine SET next_retry_at = now()
