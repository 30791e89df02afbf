"""Which way the imports go: the daemon never needs the devnet, the scripts never need the tests,
and a wheel carries every file the devnet reads."""

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERIFIER = REPO / "verifier"
DEVNET = VERIFIER / "devnet"


def imported(path: Path) -> set[str]:
    """Every module a file imports, `from a import b` counted as both `a` and `a.b`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in sources(VERIFIER) if DEVNET not in p.parents],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_daemon_does_not_import_the_devnet(path: Path) -> None:
    bad = {m for m in imported(path) if m == "verifier.devnet" or m.startswith("verifier.devnet.")}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources(REPO / "scripts") + sources(VERIFIER),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_and_package_do_not_import_the_tests(path: Path) -> None:
    bad = {m for m in imported(path) if m == "tests" or m.startswith("tests.")}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_wheel_carries_every_data_file_of_the_devnet() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["verifier.devnet"]
    data = [p for p in DEVNET.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data, "the devnet has no data files: its contracts are expected"
    for path in data:
        rel = path.relative_to(DEVNET)
        assert any(rel.match(pattern) for pattern in patterns), f"{rel} is not package data"
