"""The chaos soak, shortened for `make test`: a few hundred payments on Base and Solana through
faulty RPCs (every fault kind at least once), a SIGKILL of the daemon (a subprocess) and its
restart, a reorg shallower than the confirmation depth; then the audit against the chains.
The full soak is `make chaos` (scripts/chaos.py)."""

from __future__ import annotations

from tests.reliability.soak import Plan, report, run
from tests.support.faults import Fault


def test_short_chaos_run_loses_nothing_and_credits_nothing_twice(tmp_path):
    result = run(Plan(
        payments=300, chains=("base", "solana"), rounds=6, fault_rate=0.03, kills=1,
        second_daemon=False, postgres_restarts=0, reorgs=1, pause=1.5, not_found_grace=10,
        budget=240, log_dir=tmp_path / "logs",
    ))
    report(result)
    assert result.differences == []
    assert {f for f in Fault if result.faults[f]} == set(Fault)
    figures = result.figures
    assert figures["sigkills"] == 1 and figures["unexpected_exits"] == []
    assert figures["reorged_out"] > 0  # the reorg removed payments, and none was credited
    assert figures["payments_valid_on_chain"] > 200
    assert figures["tokens"] == figures["tokens_consumed_once"] > 0
