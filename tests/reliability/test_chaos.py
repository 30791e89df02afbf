"""The chaos soak, shortened for `make test`: a few hundred payments on Base and Solana through
faulty RPCs (every fault kind at least once), a SIGKILL of the daemon (a subprocess) and its
restart, a reorg shallower than the confirmation depth, an RPC switching chain, a Solana
transaction the node refuses until it is quarantined; then the audit against the chains.
The full soak is `make chaos` (scripts/chaos.py)."""

from __future__ import annotations

import psycopg

from verifier.devnet.faults import Fault
from verifier.devnet.soak import Plan, report, soaked


def test_short_chaos_run_loses_nothing_and_credits_nothing_twice(tmp_path):
    plan = Plan(payments=300, chains=("base", "solana"), rounds=6, fault_rate=0.03, kills=1,
                second_daemon=False, postgres_restarts=0, reorgs=1, pause=1.5,
                not_found_grace=10, budget=240, log_dir=tmp_path / "logs")
    with soaked(plan) as soak:
        result = soak.audit()
        report(result)
        assert result.differences == []
        assert {f for f in Fault if result.faults[f]} == set(Fault)
        figures = result.figures
        assert figures["sigkills"] == 1 and figures["unexpected_exits"] == []
        assert figures["chain_switches"] == ["base to chain id 1"]  # noticed, nothing rewound
        [quarantine] = figures["quarantines"]  # refused with -32015: put aside, then recorded
        assert quarantine.endswith("quarantined, then recorded")
        assert figures["reorged_out"] > 0  # the reorg removed payments, and none was credited
        assert figures["payments_valid_on_chain"] > 200
        assert figures["tokens"] == figures["tokens_consumed_once"] > 0

        # The audit is not blind: damage the database four ways and it names each.
        with psycopg.connect(soak.url, autocommit=True) as conn:
            conn.execute(_TAMPER)
        found = {line.split(":")[0] for line in soak.audit().differences}
    assert {"WRONG AMOUNT", "LOST", "CREDITED UNPAID", "UNRESOLVED CLAIM"} <= found


_TAMPER = """
UPDATE x402_payments SET amount_usdc = amount_usdc + 0.000001
 WHERE id = (SELECT min(id) FROM x402_payments WHERE status = 'verified');
DELETE FROM x402_payments
 WHERE id = (SELECT max(id) FROM x402_payments WHERE status = 'verified');
INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, block_number,
                           status, requests_allocated, expires_at)
VALUES ('0x' || repeat('0f', 32), 'base', 5, '0x' || repeat('aa', 20), '0x' || repeat('bb', 20),
        1, 'verified', 5000, now() + interval '1 day');
UPDATE verifier.claims SET status = 'waiting'
 WHERE id = (SELECT min(id) FROM verifier.claims WHERE status = 'rejected');
"""
