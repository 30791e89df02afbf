"""Where the devnet finds its npm tools (anvil, solc-js): the `.tools/` folder `make install` fills.

From a source checkout that is `<checkout>/.tools`, wherever the caller runs from; an operator who
installed the wheel runs `npm install --prefix .tools ...` (the Makefile's line) in the folder
they work in, or points X402_DEVNET_TOOLS at one.
"""

from __future__ import annotations

import os
from pathlib import Path

TOOLS_ENV = "X402_DEVNET_TOOLS"
_PACKAGE = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The source checkout this package is imported from, or None when it is installed."""
    root = _PACKAGE.parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "verifier").is_dir() else None


def tools_dir() -> Path:
    """$X402_DEVNET_TOOLS, else the checkout's `.tools`, else `./.tools` (which may not exist
    yet: the callers say so, naming this path)."""
    if env := os.environ.get(TOOLS_ENV):
        return Path(env)
    root = checkout()
    if root is not None:
        return root / ".tools"
    return Path.cwd() / ".tools"


def node_modules() -> Path:
    return tools_dir() / "node_modules"
