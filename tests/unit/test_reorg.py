"""The rewind plan after a reorg, from a table: what is gone, and where the cursor goes back to."""

import pytest

from verifier import reorg
from verifier.models import Cursor


def blocks(*numbers: int, fork: str = "") -> list[tuple[int, str]]:
    return [(n, f"h{n}{fork}") for n in numbers]


def hashes(pairs: list[tuple[int, str]]) -> dict[int, str | None]:
    return dict(pairs)


def at(position: int) -> list[Cursor]:
    return [Cursor("base", "", position, f"h{position}")]


STORED = blocks(10, 11, 12, 13)

CASES = [
    # (name, stored, current, head, since, scanned, gone, rewound to, its hash)
    ("no change", STORED, hashes(STORED), 13, 10, at(13), None, None, None),
    ("the newest block gone", STORED, hashes(blocks(10, 11, 12) + blocks(13, fork="'")),
     13, 10, at(13), [13], 12, "h12"),
    ("a block no longer there at all", STORED, {10: "h10", 11: "h11", 12: "h12", 13: None},
     13, 10, at(13), [13], 12, "h12"),
    ("a fork below the newest: everything from it is gone",
     STORED, hashes(blocks(10, 11) + blocks(12, 13, fork="'")), 13, 10, at(13), [12, 13], 11,
     "h11"),
    ("a gap in what was stored: back to the last good block below the fork",
     blocks(10, 11, 13), hashes(blocks(10, 11) + blocks(13, fork="'")), 13, 10, at(13), [13],
     11, "h11"),
    ("everything gone: back to just before the window", STORED,
     hashes(blocks(10, 11, 12, 13, fork="'")), 13, 10, at(13), [10, 11, 12, 13], 9, None),
    ("everything gone from block 0: the cursor goes to -1", blocks(0, 1),
     hashes(blocks(0, 1, fork="'")), 1, 0, at(1), [0, 1], -1, None),
    ("cursor behind last_good: never moved on", STORED,
     hashes(blocks(10, 11, 12) + blocks(13, fork="'")), 13, 10, at(11), [13], 11, "h11"),
    ("stored blocks above the head are ignored", STORED, hashes(blocks(10, 11)), 11, 10,
     at(13), None, None, None),
    ("above the head ignored, a fork below it still found", STORED,
     hashes(blocks(10) + blocks(11, fork="'")), 11, 10, at(13), [11], 10, "h10"),
    ("a good block above the fork does not count as last good", STORED,
     hashes(blocks(10) + blocks(11, fork="'") + blocks(12, 13)), 13, 10, at(13), [11], 10,
     "h10"),
]


@pytest.mark.parametrize(("stored", "current", "head", "since", "scanned", "gone", "position",
                          "block_hash"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewind_plan(stored, current, head, since, scanned, gone, position, block_hash):
    rewind = reorg.plan("base", stored, current, head=head, since=since, scanned=scanned)
    if gone is None:
        assert rewind is None
        return
    assert rewind is not None
    assert [n for n, _ in rewind.gone] == gone
    assert dict(rewind.gone) == {n: h for n, h in stored if n in gone}
    assert rewind.cursor == Cursor("base", "", position, block_hash)
    assert rewind.fork_after == position


def test_the_rewound_cursor_keeps_its_account():
    scanned = [Cursor("base", "acct", 13, "h13")]
    rewind = reorg.plan("base", STORED, hashes(blocks(10, 11, 12) + blocks(13, fork="'")),
                        head=13, since=10, scanned=scanned)
    assert rewind is not None and rewind.cursor == Cursor("base", "acct", 12, "h12")


def test_a_chain_never_scanned_gets_a_cursor_at_the_last_good_block():
    rewind = reorg.plan("base", STORED, hashes(blocks(10, 11, 12) + blocks(13, fork="'")),
                        head=13, since=10, scanned=[])
    assert rewind is not None and rewind.cursor == Cursor("base", "", 12, "h12")


@pytest.mark.parametrize(("head", "window", "confirmations", "start"), [
    (100, 64, 1, 36),  # the reorg window
    (100, 4, 10, 89),  # blocks still waiting for their confirmations, and one more
    (10, 64, 1, 0),  # never below block 0
])
def test_window_start(head, window, confirmations, start):
    assert reorg.window_start(head, window, confirmations) == start


def test_checkable_leaves_blocks_above_the_head():
    assert reorg.checkable(STORED, 11) == blocks(10, 11)
