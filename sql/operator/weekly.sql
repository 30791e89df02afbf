-- x402 weekly maintenance (the migration guide's weekly checks). It changes data: verified
-- payments past their expiry become 'expired' and dead tokens are deleted (the daemon's
-- scheduler does the same every hour; running it again is harmless).
-- Run with: psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f sql/operator/weekly.sql

\echo 'Payments expired by this cleanup:'
SELECT cleanup_expired_x402_payments() as expired_count;

\echo 'Database and table sizes:'
SELECT pg_size_pretty(pg_database_size(current_database())) as database_size,
       pg_size_pretty(pg_total_relation_size('x402_payments')) as payments_size,
       pg_size_pretty(pg_total_relation_size('x402_usage')) as usage_size;
