-- Rollback of 002_x402_payments.sql: removes exactly the objects it created (dropping a table
-- drops its indexes, constraints and triggers), and forgets that the migration was applied so
-- that the migration runner applies it again next time. Never applied by the runner itself.
-- Run it with: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -1 -f migrations/002_x402_payments_rollback.sql

DROP VIEW IF EXISTS v_x402_endpoint_stats;
DROP VIEW IF EXISTS v_x402_top_payers;
DROP VIEW IF EXISTS v_x402_stats_24h;
DROP VIEW IF EXISTS v_x402_active_payments;

DROP FUNCTION IF EXISTS update_x402_analytics(TIMESTAMPTZ);
DROP FUNCTION IF EXISTS cleanup_expired_x402_payments();

DROP TABLE IF EXISTS x402_analytics;
DROP TABLE IF EXISTS x402_usage;
DROP TABLE IF EXISTS x402_tokens;
DROP TABLE IF EXISTS x402_payments;

DROP FUNCTION IF EXISTS verifier.payments_before_write();

DO $$
BEGIN
    IF to_regclass('verifier.schema_migrations') IS NOT NULL THEN
        DELETE FROM verifier.schema_migrations WHERE filename = '002_x402_payments.sql';
    END IF;
END;
$$;
