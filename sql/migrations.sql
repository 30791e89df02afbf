-- Named queries of the migration ledger (verifier/store/ledger.py). Its lock is
-- sql/locks.sql's, keyed by LOCK_KEYS['migrations'].

-- name: ledger_exists
SELECT to_regclass('verifier.schema_migrations') IS NOT NULL AS present

-- name: applied
SELECT filename, sha256 FROM verifier.schema_migrations ORDER BY filename

-- name: record
INSERT INTO verifier.schema_migrations (filename, sha256) VALUES (%(filename)s, %(sha256)s)
