"""The README's claim flow as written: its client block and its server block, run as code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> tuple[str, str]:
    """(client block, server block) of README's "For API servers" section."""
    text = README.read_text()
    section = text[text.index("## For API servers\n"):text.index("### Claim proofs\n")]
    found = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(found) == 2, "README's For API servers section has a client and a server block"
    return found[0], found[1]


def server(database_url: str) -> dict[str, Any]:
    """The server block's names (redeem, quote, db) with DATABASE_URL set."""
    names: dict[str, Any] = {"DATABASE_URL": database_url}
    exec(blocks()[1], names)
    return names


def client(**names: Any) -> dict[str, Any]:
    """The client block run with ``names`` (chain, tx_hash, private_key or keypair)."""
    scope = {"private_key": None, "keypair": None, **names}
    exec(blocks()[0], scope)
    return scope
