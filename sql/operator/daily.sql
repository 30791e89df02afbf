-- x402 daily monitoring (the migration guide's daily checks).
-- Run with: psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f sql/operator/daily.sql

\echo 'Payments confirmed in the last 24 hours, per chain:'
SELECT * FROM v_x402_stats_24h;

\echo 'Active payments and the requests they still hold:'
SELECT COUNT(*) as active_payments,
       SUM(requests_allocated - requests_used) as remaining_requests
FROM v_x402_active_payments;

\echo 'Busiest endpoints in the last 24 hours:'
SELECT * FROM v_x402_endpoint_stats ORDER BY request_count DESC LIMIT 10;
