"""verifier.submit_claim takes contract wallets' proofs: up to 16,386 characters (8 KiB as
0x-hex), in hex, base58 or standard base64; longer or other alphabets are refused at once."""

from __future__ import annotations

import base64
import secrets

import psycopg
import pytest

TX = "0x" + "ab" * 32
EIGHT_KIB = secrets.token_bytes(8192)


def submit(conn, proof: str) -> tuple:
    row = conn.execute("SELECT * FROM verifier.submit_claim('base', %s, %s, %s)",
                       (TX, secrets.token_hex(32), proof)).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize("proof", [
    "0x" + EIGHT_KIB.hex(),  # 16,386 characters
    base64.b64encode(EIGHT_KIB).decode(),  # 10,924 characters, with + / =
    "0x" + secrets.token_hex(65),
    "5" * 88,  # base58
])
def test_long_proofs_are_queued_whole(conn, proof):
    claim_id, status, reason = submit(conn, proof)
    assert (status, reason) == ("waiting", None)
    stored = conn.execute("SELECT proof FROM verifier.claims WHERE id = %s", (claim_id,))
    assert stored.fetchone() == (proof,)


@pytest.mark.parametrize("proof", [
    "0x" + EIGHT_KIB.hex() + "a",  # 16,387 characters
    base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode(),  # - and _ are not standard base64
    "q8==3v+/",
    "0x' OR 1=1 --",
])
def test_other_proofs_are_refused_at_once(conn, proof):
    assert submit(conn, proof) == (None, "rejected", "malformed_proof")
    assert conn.execute("SELECT count(*) FROM verifier.claims").fetchone() == (0,)


def test_the_table_holds_no_longer_proof(conn):
    long = "0x" + "ab" * 8193
    with pytest.raises(psycopg.errors.CheckViolation, match="claims_proof_check"):
        conn.execute("INSERT INTO verifier.claims (chain, tx_hash, token_hash, proof) "
                     "VALUES ('base', %s, %s, %s)", (TX, secrets.token_hex(32), long))
