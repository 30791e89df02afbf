"""Each index of migration 002 serves the query it was made for, and there are no others."""

import pytest
from psycopg import sql

from tests.db import data

EXPECTED_INDEXES = {
    "x402_payments": {"x402_payments_pkey", "x402_payments_tx_hash_chain_key",
                      "idx_x402_payments_from_address", "idx_x402_payments_verified_expires",
                      "idx_x402_payments_verified_at", "idx_x402_payments_pending"},
    "x402_tokens": {"x402_tokens_pkey", "x402_tokens_token_hash_key",
                    "x402_tokens_payment_id_key"},
    "x402_usage": {"x402_usage_pkey", "idx_x402_usage_payment_id", "idx_x402_usage_created_at"},
    "x402_analytics": {"x402_analytics_pkey", "x402_analytics_hour_bucket_chain_key"},
}

QUERIES = [
    ("SELECT * FROM x402_payments WHERE tx_hash = %(tx)s", "x402_payments_tx_hash_chain_key"),
    ("SELECT * FROM v_x402_active_payments WHERE from_address = %(payer)s",
     "idx_x402_payments_from_address"),
    ("SELECT count(*) FROM v_x402_active_payments", "idx_x402_payments_verified_expires"),
    ("SELECT * FROM v_x402_stats_24h", "idx_x402_payments_verified_at"),
    ("SELECT * FROM x402_payments WHERE status = 'pending' AND chain = 'base' "
     "ORDER BY block_number", "idx_x402_payments_pending"),
    ("SELECT * FROM v_x402_endpoint_stats", "idx_x402_usage_created_at"),
    ("SELECT count(*) FROM x402_usage WHERE payment_id = %(id)s", "idx_x402_usage_payment_id"),
    ("SELECT p.id FROM x402_tokens t JOIN x402_payments p ON p.id = t.payment_id "
     "WHERE t.token_hash = %(token)s", "x402_tokens_token_hash_key"),
]


def index_names(plan: dict) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_names(child)
    return found


def test_exactly_the_expected_indexes(conn):
    rows = conn.execute("SELECT tablename, indexname FROM pg_indexes "
                        "WHERE schemaname = 'public' AND tablename LIKE 'x402_%'").fetchall()
    got: dict[str, set[str]] = {}
    for table, index in rows:
        got.setdefault(table, set()).add(index)
    assert got == EXPECTED_INDEXES


@pytest.mark.parametrize(("query", "index"), QUERIES, ids=[i for _, i in QUERIES])
def test_index_serves_its_query(conn, query, index):
    pid = data.payment(conn, tx_hash="0xabc", from_address="0xpayer")
    token = data.token(conn, pid)
    data.usage(conn, pid)
    conn.execute("SET enable_seqscan = off")  # tiny tables: ask whether the index can serve
    explain = sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(query))
    plan = conn.execute(explain, {"tx": "0xabc", "payer": "0xpayer", "id": pid,
                                  "token": token}).fetchone()[0]
    assert index in index_names(plan[0]["Plan"])
