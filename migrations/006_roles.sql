-- 006: the roles an operator grants to login roles (none of them can log in itself).
--
--   x402_api       an API server: verifier.submit_claim() and verifier.consume_request(),
--                  with the column privileges those SECURITY INVOKER functions need, and the
--                  claim status it waits for. Nothing else.
--   x402_readonly  an analyst: the four v_x402_* views.
--   x402_daemon    x402-verifier run / status / jobs: the tables it reads and writes, the
--                  maintenance functions. It does not migrate: the schema owner does.
--
--   CREATE ROLE payments_api LOGIN PASSWORD '...' IN ROLE x402_api;
--
-- Roles belong to the cluster, grants to this database: creating the roles needs CREATEROLE
-- (or a DBA creates them first, then this file only grants). Idempotent, so it can be run
-- again by hand, e.g. after the 002 rollback, which drops the public objects and their grants.
-- A later migration that adds an object one of these roles needs grants it there.

DO $$
DECLARE
    v_role TEXT;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['x402_api', 'x402_readonly', 'x402_daemon'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                            WHERE rolname = current_user AND (rolcreaterole OR rolsuper)) THEN
                RAISE EXCEPTION 'role % does not exist and % may not create it', v_role, current_user
                    USING HINT = 'Run the migrations as a role with CREATEROLE, or have a DBA run '
                                 'CREATE ROLE x402_api NOLOGIN; CREATE ROLE x402_readonly NOLOGIN; '
                                 'CREATE ROLE x402_daemon NOLOGIN; first.';
            END IF;
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
            -- Commented here only: commenting on a role also needs CREATEROLE.
            EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, CASE v_role
                WHEN 'x402_api' THEN 'x402-verifier: submit claims and consume requests only'
                WHEN 'x402_readonly' THEN 'x402-verifier: the v_x402_* views only'
                ELSE 'x402-verifier: what the daemon reads and writes' END);
        END IF;
    END LOOP;
END;
$$;

-- Functions are executable by PUBLIC unless revoked: only the roles meant to call them may.
REVOKE EXECUTE ON FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT)
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION cleanup_expired_x402_payments() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION update_x402_analytics(TIMESTAMPTZ) FROM PUBLIC;

-- x402_api ------------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA verifier TO x402_api;
GRANT EXECUTE ON FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT) TO x402_api;
GRANT EXECUTE ON FUNCTION
    verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT) TO x402_api;
-- submit_claim inserts the claim and reads back an existing one; the API waits on its status.
GRANT INSERT (chain, tx_hash, token_hash, proof) ON verifier.claims TO x402_api;
GRANT SELECT (id, chain, tx_hash, token_hash, status, reason) ON verifier.claims TO x402_api;
-- consume_request takes one request: the columns its UPDATEs and SELECTs name, and the usage row.
GRANT SELECT (id, status, expires_at, requests_allocated, requests_used) ON x402_payments
    TO x402_api;
GRANT UPDATE (status, requests_used) ON x402_payments TO x402_api;
GRANT SELECT (token_hash, payment_id, expires_at) ON x402_tokens TO x402_api;
GRANT UPDATE (last_used_at) ON x402_tokens TO x402_api;
GRANT INSERT (payment_id, endpoint, method, status_code, response_time_ms, ip_address, user_agent)
    ON x402_usage TO x402_api;

-- x402_readonly -------------------------------------------------------------------------------

-- Views run with their owner's rights: the tables behind them stay out of reach.
GRANT SELECT ON v_x402_active_payments, v_x402_stats_24h, v_x402_top_payers,
    v_x402_endpoint_stats TO x402_readonly;

-- x402_daemon ---------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA verifier TO x402_daemon;
GRANT SELECT ON verifier.schema_migrations TO x402_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON verifier.cursors, verifier.blocks, verifier.claims,
    verifier.job_runs, verifier.x402_usage_archive TO x402_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON x402_payments, x402_tokens, x402_usage, x402_analytics
    TO x402_daemon;  -- identity columns need no sequence privilege
GRANT SELECT ON v_x402_active_payments, v_x402_stats_24h, v_x402_top_payers,
    v_x402_endpoint_stats TO x402_daemon;
GRANT EXECUTE ON FUNCTION cleanup_expired_x402_payments() TO x402_daemon;
GRANT EXECUTE ON FUNCTION update_x402_analytics(TIMESTAMPTZ) TO x402_daemon;
-- `x402-verifier claim` and the demo speak to the daemon's database as an API server would.
GRANT EXECUTE ON FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT) TO x402_daemon;
GRANT EXECUTE ON FUNCTION
    verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT) TO x402_daemon;
