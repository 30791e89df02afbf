-- The x402 migration guide's post-migration checks: 4 tables, 4 views, 2 functions.
-- Run with: psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f sql/operator/verify.sql
-- The last statement fails (psql exits 3 under ON_ERROR_STOP) when any object is missing.

\echo 'Tables (expect x402_analytics, x402_payments, x402_tokens, x402_usage):'
SELECT tablename FROM pg_tables
 WHERE schemaname = 'public' AND tablename LIKE 'x402_%'
 ORDER BY tablename;

\echo 'Views (expect v_x402_active_payments, v_x402_endpoint_stats, v_x402_stats_24h, v_x402_top_payers):'
SELECT viewname FROM pg_views
 WHERE schemaname = 'public' AND viewname LIKE 'v_x402_%'
 ORDER BY viewname;

\echo 'Functions (expect cleanup_expired_x402_payments, update_x402_analytics):'
SELECT proname FROM pg_proc
 WHERE proname LIKE '%x402%'
 ORDER BY proname;

DO $$
DECLARE
    n_tables    INTEGER;
    n_views     INTEGER;
    n_functions INTEGER;
BEGIN
    SELECT count(*) INTO n_tables FROM pg_tables
     WHERE schemaname = 'public'
       AND tablename IN ('x402_payments', 'x402_tokens', 'x402_usage', 'x402_analytics');
    SELECT count(*) INTO n_views FROM pg_views
     WHERE schemaname = 'public'
       AND viewname IN ('v_x402_active_payments', 'v_x402_stats_24h', 'v_x402_top_payers',
                        'v_x402_endpoint_stats');
    SELECT count(*) INTO n_functions FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public'
       AND p.proname IN ('cleanup_expired_x402_payments', 'update_x402_analytics');
    IF n_tables <> 4 OR n_views <> 4 OR n_functions <> 2 THEN
        RAISE EXCEPTION 'x402 schema incomplete: % of 4 tables, % of 4 views, % of 2 functions',
            n_tables, n_views, n_functions;
    END IF;
    RAISE NOTICE 'x402 schema complete: 4 tables, 4 views, 2 functions';
END;
$$;
