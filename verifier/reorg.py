"""The rewind plan after a reorg, decided from facts alone (no I/O).

The watcher remembers (number, hash) of recent blocks it scanned; each step it asks the chain
for the current hashes of those blocks. Blocks whose hash changed (or vanished) are gone: their
payments become reorged and the cursor goes back to the last block still on the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from verifier.models import Cursor

Block = tuple[int, str]


@dataclass(frozen=True)
class Rewind:
    gone: tuple[Block, ...]  # stored blocks no longer on the chain, oldest first
    cursor: Cursor  # where scanning resumes: the last block still on the chain

    @property
    def fork_after(self) -> int:
        return self.cursor.position


def window_start(head: int, reorg_window: int, confirmations: int) -> int:
    """The first block worth checking: a reorg deeper than the window (or than the blocks
    still waiting for confirmations) is not looked for."""
    return max(0, head - max(reorg_window, confirmations + 1))


def checkable(stored: Sequence[Block], head: int) -> list[Block]:
    """Blocks above the head the node reports are left for later: a lagging node says nothing
    about them."""
    return [(n, h) for n, h in stored if n <= head]


def plan(chain: str, stored: Sequence[Block], current: Mapping[int, str | None], *,
         head: int, since: int, scanned: Sequence[Cursor]) -> Rewind | None:
    """What is gone and where the cursor goes back to; None when every stored block is still
    there. `stored` is oldest first, from `since` on; `scanned` the chain's cursors."""
    blocks = checkable(stored, head)
    gone = tuple((n, h) for n, h in blocks if current.get(n) != h)
    if not gone:
        return None
    first_bad = gone[0][0]
    good = [n for n, h in blocks if n < first_bad and current.get(n) == h]
    last_good = good[-1] if good else max(-1, since - 1)
    # Blocks of payments looked up for claims may lie ahead of the cursor: never move it on.
    if scanned and scanned[0].position < last_good:
        last_good = scanned[0].position
    return Rewind(gone, _cursor_at(chain, scanned, last_good, current.get(last_good)))


def _cursor_at(chain: str, scanned: Sequence[Cursor], position: int,
               block_hash: str | None) -> Cursor:
    """A chain with block hashes scans with one cursor (EVM: account '', marker = the block's
    hash); it is moved back, or made when the chain was never scanned."""
    if scanned:
        return replace(scanned[0], position=position, marker=block_hash)
    return Cursor(chain, "", position, block_hash)
