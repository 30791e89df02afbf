"""The database speaks the same words as the code: every CHECK list of chains and statuses, and
the chain check of the API function, equal what verifier.config and verifier.vocab define."""

import re

import psycopg
import pytest

from verifier.config import SUPPORTED_CHAINS
from verifier.vocab import CLAIM_STATUSES, PAYMENT_STATUSES, QUARANTINE_REASONS

QUOTED = re.compile(r"'([^']*)'")


def check_lists(conn: psycopg.Connection, column: str) -> dict[str, set[str]]:
    """{table: the values its CHECK on ``column`` admits}, for every table that has one."""
    rows = conn.execute(
        """SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid)
             FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'c' AND a.attname = %(column)s
              AND pg_get_constraintdef(c.oid) LIKE '%%ANY%%'""",
        {"column": column}).fetchall()
    return {table: set(QUOTED.findall(definition)) for table, definition in rows}


def test_every_chain_check_lists_exactly_the_supported_chains(conn):
    found = check_lists(conn, "chain")
    assert {"x402_payments", "x402_analytics", "verifier.cursors"} <= set(found)
    assert all(values == set(SUPPORTED_CHAINS) for values in found.values()), found


def test_payment_and_claim_status_checks_match_the_vocabulary(conn):
    found = check_lists(conn, "status")
    assert found["x402_payments"] == set(PAYMENT_STATUSES)
    assert found["verifier.claims"] == set(CLAIM_STATUSES)


def test_quarantine_reason_check_matches_the_vocabulary(conn):
    assert check_lists(conn, "reason")["verifier.solana_quarantine"] == set(QUARANTINE_REASONS)


@pytest.mark.parametrize("chain", SUPPORTED_CHAINS)
def test_submit_claim_knows_every_supported_chain(conn, chain):
    status, reason = conn.execute(
        "SELECT status, reason FROM verifier.submit_claim(%(chain)s, 'x', %(h)s, NULL)",
        {"chain": chain, "h": "0" * 64}).fetchone()
    assert (status, reason) == ("rejected", "malformed_tx_hash")


def test_submit_claim_refuses_a_chain_the_code_does_not_know(conn):
    status, reason = conn.execute(
        "SELECT status, reason FROM verifier.submit_claim('polygon', 'x', %(h)s, NULL)",
        {"h": "0" * 64}).fetchone()
    assert (status, reason) == ("rejected", "unsupported_chain")
