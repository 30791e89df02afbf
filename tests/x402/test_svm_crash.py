"""SIGKILL of the daemon between sending a Solana settlement and its confirmation, then a
restart: the stored signature is looked up first (getSignatureStatuses), the stored bytes are
sent again only when the node does not know them, and a repeated /settle answers from the
ledger: one transaction on chain, one payment row, one used request."""

from __future__ import annotations

import signal

import pytest

from tests.daemon import eventually, query
from tests.x402.svm_env import TOKEN, SvmSetup, post
from tests.x402.test_exactly_once import free_port, start_daemon, wait_listening


@pytest.mark.parametrize("lost", [True, False], ids=["node lost it", "it landed meanwhile"])
async def test_sigkill_between_send_and_confirmation_then_restart(
        svm_setup: SvmSetup, database_url: str, lost: bool) -> None:
    s = svm_setup
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = s.env(X402_FACILITATOR_ADDR=f"127.0.0.1:{port}", X402_FACILITATOR_SETTLE_TIMEOUT="1",
                DATABASE_URL=database_url)
    body = s.payment()
    s.node.hold_sends = True  # accepted, not executed: no confirmation comes
    proc = start_daemon(env)
    try:
        await wait_listening(url, TOKEN)
        first = await post(url, "/settle", body)
        assert first["success"] is False and first["errorReason"] == "settlement_pending", first
        sig = first["transaction"]
        assert [str(t.signatures[0]) for t in s.node.held] == [sig]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert query(database_url, "SELECT state, tx_hash FROM verifier.settlements"
                 ) == [("sent", sig)]
    s.node.hold_sends = False
    if lost:
        s.node.drop_held()  # a restarted node, a dropped transaction: only the ledger has it
    else:
        assert s.node.release_held() == [sig]
    sent_before = s.node.sent[sig]
    s.node.call_log.clear()
    proc = start_daemon(env)
    try:
        await wait_listening(url, TOKEN)
        await eventually(lambda: query(database_url, "SELECT state FROM verifier.settlements")
                         == [("mined",)], within=30)
        again = await post(url, "/settle", body)
        assert again["success"] is True and again["transaction"] == sig, again
        third = await post(url, "/settle", body)
        assert third["errorReason"] == "duplicate_settlement" and third["transaction"] == sig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            proc.kill()
    log = list(s.node.call_log)
    assert "getSignatureStatuses" in log
    if lost:
        # Looked up before it was sent again, and sent again exactly once.
        assert log.index("getSignatureStatuses") < log.index("sendTransaction")
        assert s.node.sent[sig] == sent_before + 1
    else:
        assert "sendTransaction" not in log and s.node.sent[sig] == sent_before
    assert s.node.landed(sig).err is None and s.usdc(s.payee) == 10_000
    assert query(database_url, "SELECT count(*), min(tx_hash) FROM x402_payments"
                 ) == [(1, sig)]
    assert query(database_url, "SELECT count(*) FROM x402_usage") == [(1,)]
