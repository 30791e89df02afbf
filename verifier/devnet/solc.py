"""Compile the devnet's contracts with solc-js (npm `solc`) run by node, offline.

Results are cached under `.tools/solc-cache/` keyed by a hash of the compiler version and the
full standard-JSON input (sources and settings), so a test run compiles only when a contract,
the settings or the compiler changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from verifier.devnet import tools

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"  # package data
SOLC_JS_DIR = tools.node_modules() / "solc"
CACHE_DIR = tools.tools_dir() / "solc-cache"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

# Reads standard JSON on stdin, writes solc's standard JSON output on stdout.
_NODE_COMPILE = """
const solc = require(process.argv[1]);
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => { process.stdout.write(solc.compile(input)); });
"""


class SolcError(RuntimeError):
    """solc-js could not be run, or the sources did not compile."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    """Creation code, 0x-prefixed: what a deployment transaction carries."""
    runtime: str
    """Deployed code, 0x-prefixed: what anvil_setCode places at an address."""


def solc_version() -> str:
    package = json.loads((_solc_js_dir() / "package.json").read_text())
    return str(package["version"])


def compile_sources(sources: Mapping[str, str]) -> dict[str, Artifact]:
    """Compile Solidity sources (file name -> text); every contract found, by name."""
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": SETTINGS,
    }
    key = _cache_key(standard_input)
    cached = _read_cache(key)
    if cached is None:
        cached = _artifacts(_run_solc(standard_input))
        _write_cache(key, cached)
    return {name: Artifact(**fields) for name, fields in cached.items()}


@cache
def contracts() -> dict[str, Artifact]:
    """The contracts in verifier/devnet/contracts, compiled once per process."""
    sources = {path.name: path.read_text() for path in sorted(CONTRACTS_DIR.glob("*.sol"))}
    return compile_sources(sources)


def artifact(name: str) -> Artifact:
    found = contracts()
    if name not in found:
        raise KeyError(f"no contract {name!r}; have {sorted(found)}")
    return found[name]


def _solc_js_dir() -> Path:
    path = Path(os.environ.get("SOLC_JS_DIR", SOLC_JS_DIR))
    if not (path / "soljson.js").exists():
        raise SolcError(f"solc-js not found at {path}; run `make install`, or set SOLC_JS_DIR "
                        f"or {tools.TOOLS_ENV}")
    return path


def _cache_key(standard_input: Mapping[str, Any]) -> str:
    blob = json.dumps({"solc": solc_version(), "input": standard_input}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_cache(key: str) -> dict[str, dict[str, Any]] | None:
    path = CACHE_DIR / f"{key}.json"
    try:
        found: dict[str, dict[str, Any]] = json.loads(path.read_text())
        return found
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_cache(key: str, artifacts: Mapping[str, Mapping[str, Any]]) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a concurrent test process reads either nothing or the whole file.
    with tempfile.NamedTemporaryFile("w", dir=CACHE_DIR, suffix=".tmp", delete=False) as out:
        json.dump(artifacts, out)
    os.replace(out.name, CACHE_DIR / f"{key}.json")


def _run_solc(standard_input: Mapping[str, Any]) -> dict[str, Any]:
    node = os.environ.get("NODE_BIN") or shutil.which("node")
    if node is None:
        raise SolcError("node not found on PATH (set NODE_BIN)")
    proc = subprocess.run(
        [node, "-e", _NODE_COMPILE, str(_solc_js_dir())],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise SolcError(f"solc-js failed (exit {proc.returncode}): {proc.stderr.strip()}")
    output: dict[str, Any] = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SolcError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    return output


def _artifacts(output: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for per_file in output.get("contracts", {}).values():
        for name, compiled in per_file.items():
            found[name] = {
                "name": name,
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "runtime": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
    return found
