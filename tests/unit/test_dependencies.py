"""Every third-party module the product imports is declared in pyproject.toml, with a bound
(issue 9, item 8): an install from the declared list alone must run the code."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """{distribution: version specifier} over dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    out: dict[str, str] = {}
    for spec in specs:
        match = NAME.match(spec.split(";")[0])
        assert match, spec
        out[_normal(match.group(1))] = match.group(3).strip()
    return out


def imported_top_level(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"verifier", "__future__"}


def test_every_imported_distribution_is_declared_with_a_bound():
    providers = metadata.packages_distributions()
    specs = declared()
    missing, unbounded = [], []
    for module in sorted(imported_top_level(ROOT / "verifier")):
        dists = providers.get(module)
        assert dists, f"{module} is imported but no installed distribution provides it"
        dist = _normal(dists[0])
        if dist not in specs:
            missing.append(f"{module} ({dist})")
        elif not re.search(r"(==|<|~=)", specs[dist]):
            unbounded.append(f"{dist}{specs[dist]}")
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"
    assert unbounded == [], f"declared without an upper bound: {unbounded}"


def test_the_scan_sees_imports():
    # Guards the test above against finding nothing: the product imports these directly.
    assert {"psycopg", "aiohttp", "web3", "structlog"} <= imported_top_level(ROOT / "verifier")
