-- Named queries of the migration runner (verifier/migrate.py).

-- name: lock
SELECT pg_advisory_lock(402, 1)

-- name: unlock
SELECT pg_advisory_unlock(402, 1)

-- name: ledger_exists
SELECT to_regclass('verifier.schema_migrations') IS NOT NULL AS present

-- name: applied
SELECT filename, sha256 FROM verifier.schema_migrations ORDER BY filename

-- name: record
INSERT INTO verifier.schema_migrations (filename, sha256) VALUES (%(filename)s, %(sha256)s)
