"""What the watchers publish is all that metrics, /readyz and the watchdog read."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from verifier import config
from verifier.metrics import Metrics
from verifier.models import ChainView
from verifier.systemd import watcher_progress
from verifier.watcher_status import StatusBoard, WatcherStatus

ENV = {
    "X402_CHAINS": "base,ethereum",
    "X402_BASE_RPC_URLS": "http://a:8545",
    "X402_BASE_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
    "X402_BASE_MAX_LAG_BLOCKS": "5",
    "X402_ETHEREUM_RPC_URLS": "http://c:8545",
    "X402_ETHEREUM_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
}


def view(head: int) -> ChainView:
    return ChainView(head=head, final=head - 2)


def lagging_base() -> WatcherStatus:
    return WatcherStatus("base", last_progress=100.0, active=True, view=view(120), position=110,
                         scanned=110, caught_up_at=90.0, reorgs=2, reorged_blocks=3)


def test_lag_is_head_minus_scanned_and_unknown_before_a_scan():
    assert lagging_base().lag_blocks == 10
    assert WatcherStatus("base", last_progress=0.0, active=True, view=view(9)).lag_blocks is None


def test_the_board_keeps_the_latest_status_of_each_chain():
    board = StatusBoard([WatcherStatus("base", 1.0), WatcherStatus("ethereum", 1.0)])
    board.publish(lagging_base())
    assert board.current() == [lagging_base(), WatcherStatus("ethereum", 1.0)]


def watched_elsewhere(chain: str = "ethereum", at: float = 125.0) -> WatcherStatus:
    """A standby that saw another instance's live lease at ``at``."""
    return WatcherStatus(chain, last_progress=0.0, watched=True, watched_at=at)


def test_watchdog_ok_while_active_watchers_progress_and_standby_ones_see_a_live_lease():
    statuses = [lagging_base(), watched_elsewhere()]
    ok = watcher_progress(statuses, now=130.0, stall_after=60.0)
    assert ok.ok and ok.text == "base at 110 of 120; ethereum standby"
    stalled = watcher_progress(statuses, now=170.0, stall_after=60.0)
    assert not stalled.ok and stalled.text == "stalled: base no progress for 70s"


def test_a_chain_nobody_watches_stops_the_watchdog_and_fails_readiness():
    """A standby that has not seen a live lease (it could not ask) since 80: tolerated for the
    stall limit, then reported, never fed as "standby"."""
    nobody = WatcherStatus("ethereum", last_progress=0.0, watched=False, watched_at=80.0)
    statuses = [lagging_base(), nobody]
    assert watcher_progress(statuses, now=130.0, stall_after=60.0).ok
    stalled = watcher_progress(statuses, now=150.0, stall_after=60.0)
    assert not stalled.ok and stalled.text == "stalled: ethereum watched by nobody for 70s"
    metrics = Metrics(config.load(ENV).chains, StatusBoard(statuses))
    assert metrics._chain_readiness(nobody) == {"ok": False, "active": False, "watched": False}


def test_readiness_reads_the_published_status():
    board = StatusBoard([lagging_base(), watched_elsewhere()])
    metrics = Metrics(config.load(ENV).chains, board)
    chains = {w.chain: metrics._chain_readiness(w) for w in board.current()}
    assert chains == {
        "base": {"ok": False, "active": True, "head": 120, "scanned": 110, "lag_blocks": 10,
                 "max_lag_blocks": 5},
        "ethereum": {"ok": True, "active": False, "watched": True},
    }


def test_scraped_chain_figures_and_reorg_counts_come_from_the_board():
    board = StatusBoard([lagging_base(), WatcherStatus("ethereum", last_progress=0.0)])
    metrics = Metrics(config.load(ENV).chains, board)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(
                   generate_latest(metrics.registry).decode())
               for s in family.samples}

    def value(name: str, chain: str) -> float | None:
        return samples.get((name, (("chain", chain),)))

    assert value("x402_chain_head_block", "base") == 120
    assert value("x402_chain_scanned_block", "base") == 110
    assert value("x402_chain_lag_blocks", "base") == 10
    assert value("x402_chain_max_lag_blocks", "base") == 5
    assert value("x402_watcher_active", "base") == 1
    assert value("x402_watcher_active", "ethereum") == 0
    assert value("x402_chain_head_block", "ethereum") is None  # standby: nothing to report
    assert value("x402_reorgs_total", "base") == 2
    assert value("x402_reorged_blocks_total", "base") == 3
    assert value("x402_reorgs_total", "ethereum") == 0
    board.publish(WatcherStatus("base", last_progress=100.0, active=True, reorgs=3))
    assert b'x402_reorgs_total{chain="base"} 3.0' in generate_latest(metrics.registry)


def test_a_chain_no_endpoint_serves_fails_readiness_and_is_scraped():
    """An active watcher that found no endpoint on its chain (a chain switch) is not ready,
    however small its lag; set-aside rows and the switch are scraped."""
    from dataclasses import replace

    switched = replace(lagging_base(), scanned=120, set_aside=2,
                       wrong_chain="base: http://a serves chain id 1, expected 8453")
    board = StatusBoard([switched])
    metrics = Metrics(config.load(ENV).chains, board)
    assert metrics._chain_readiness(switched) == {
        "ok": False, "active": True,
        "wrong_chain": "base: http://a serves chain id 1, expected 8453"}
    assert metrics._chain_readiness(replace(switched, wrong_chain=None))["ok"]
    text = generate_latest(metrics.registry)
    assert b'x402_chain_wrong_chain{chain="base"} 1.0' in text
    assert b'x402_payments_set_aside_total{chain="base"} 2.0' in text
