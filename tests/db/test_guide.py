"""The x402 migration guide's own post-migration checks, run against the migrated schema."""

import psycopg

GUIDE_TEST_BLOCK = """
-- Test INSERT
INSERT INTO x402_payments (
    tx_hash, chain, amount_usdc, from_address, to_address,
    block_number, confirmations, status, requests_allocated, expires_at
) VALUES (
    'test_migration_check', 'base', 1.00,
    '0xtest', '0xkamiyo',
    12345, 1, 'verified', 100,
    NOW() + INTERVAL '1 hour'
);

-- Test SELECT
SELECT * FROM x402_payments WHERE tx_hash = 'test_migration_check';

-- Test VIEW
SELECT * FROM v_x402_active_payments;

-- Test FUNCTION
SELECT cleanup_expired_x402_payments();

-- Clean up test
DELETE FROM x402_payments WHERE tx_hash = 'test_migration_check';
"""


def column(conn: psycopg.Connection, query: str) -> list[str]:
    return [row[0] for row in conn.execute(query).fetchall()]


def test_guide_lists_exactly_its_tables_views_and_functions(conn):
    tables = column(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                          "AND tablename LIKE 'x402_%' ORDER BY tablename")
    views = column(conn, "SELECT viewname FROM pg_views WHERE schemaname='public' "
                         "AND viewname LIKE 'v_x402_%' ORDER BY viewname")
    functions = column(conn, "SELECT proname FROM pg_proc WHERE proname LIKE '%x402%' "
                             "ORDER BY proname")
    assert tables == ["x402_analytics", "x402_payments", "x402_tokens", "x402_usage"]
    assert views == ["v_x402_active_payments", "v_x402_endpoint_stats", "v_x402_stats_24h",
                     "v_x402_top_payers"]
    assert functions == ["cleanup_expired_x402_payments", "update_x402_analytics"]


def test_guide_basic_operations_block_runs_unchanged(conn):
    conn.execute(GUIDE_TEST_BLOCK)  # several statements: the simple query protocol, like psql
    assert conn.execute("SELECT count(*) FROM x402_payments").fetchone()[0] == 0


def test_guide_insert_is_visible_as_active_with_verified_at_filled(conn):
    insert = GUIDE_TEST_BLOCK.split("-- Test SELECT")[0]
    conn.execute(insert)
    row = conn.execute(
        "SELECT requests_remaining, verified_at IS NOT NULL FROM v_x402_active_payments "
        "WHERE tx_hash = 'test_migration_check'"
    ).fetchone()
    assert row == (100, True)
