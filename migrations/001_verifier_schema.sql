-- 001: the daemon's own schema and its migration ledger.
-- The migration runner executes this file before anything else (it defines the ledger the
-- runner writes to), so every statement here must be idempotent.

CREATE SCHEMA IF NOT EXISTS verifier;

COMMENT ON SCHEMA verifier IS
    'x402-verifier internals: migration ledger, chain cursors, claims and the API functions';

CREATE TABLE IF NOT EXISTS verifier.schema_migrations (
    filename    TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
