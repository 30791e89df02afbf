"""The systemd units in systemd/: `systemd-analyze verify` is clean and `security` rates every
service's exposure 2.0 or lower (where systemd-analyze exists; otherwise those two tests say so
as skips, and the directive checks below still run); the hardening directives are there; the
daemon really runs under MemoryDenyWriteExecute; the env example documents every setting."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.daemon import query
from tests.ops.harness import PAYEE, daemon_env, notify_socket
from verifier import api, config, rules
from verifier.devnet.evm import EvmDevnet, local_devnet, sign_claim

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SERVICES = ("x402-verifier.service", "x402-cleanup.service", "x402-analytics.service")
TIMERS = ("x402-cleanup.timer", "x402-analytics.timer")
INSTALLED_BIN = "/opt/x402-verifier/bin/x402-verifier"
ANALYZE = shutil.which("systemd-analyze")
NO_ANALYZE = "systemd-analyze is not installed here: `verify` and `security` were NOT checked"


def directives(unit: str) -> dict[str, list[str]]:
    """{'Section.Key': [values in order]}: systemd allows a key more than once."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def runnable_copies(tmp_path: Path) -> list[Path]:
    """The units as shipped, with ExecStart's installed path pointing at this checkout's
    x402-verifier: `verify` checks that the program exists."""
    here = Path(sys.prefix) / "bin" / "x402-verifier"
    assert here.exists(), "pip install -e . first"
    copies = []
    for name in (*SERVICES, *TIMERS):
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text().replace(INSTALLED_BIN, str(here)))
        copies.append(copy)
    return copies


@pytest.mark.skipif(ANALYZE is None, reason=NO_ANALYZE)
def test_systemd_analyze_verify_is_clean(tmp_path):
    done = subprocess.run([ANALYZE, "verify", *map(str, runnable_copies(tmp_path))],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(ANALYZE is None, reason=NO_ANALYZE)
@pytest.mark.parametrize("service", SERVICES)
def test_systemd_analyze_security_exposure_is_at_most_2(service):
    done = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager",
                           str(UNITS / service)], capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


def test_the_daemon_unit_is_a_hardened_notify_service():
    d = directives("x402-verifier.service")
    expected = {
        "Service.Type": ["notify"], "Service.NotifyAccess": ["main"],
        "Service.WatchdogSec": ["60s"], "Service.Restart": ["on-failure"],
        "Service.EnvironmentFile": ["/etc/x402-verifier/env"],
        "Service.ExecStart": [f"{INSTALLED_BIN} run"],
        "Service.DynamicUser": ["yes"], "Service.UMask": ["0077"],
        "Service.CapabilityBoundingSet": [""], "Service.AmbientCapabilities": [""],
        "Service.NoNewPrivileges": ["yes"], "Service.ProtectSystem": ["strict"],
        "Service.ProtectHome": ["yes"], "Service.PrivateTmp": ["yes"],
        "Service.PrivateDevices": ["yes"],
        "Service.RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "Service.SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "Service.SystemCallArchitectures": ["native"],
        "Service.ProtectKernelTunables": ["yes"], "Service.ProtectKernelModules": ["yes"],
        "Service.ProtectKernelLogs": ["yes"], "Service.ProtectControlGroups": ["yes"],
        "Service.RestrictNamespaces": ["yes"], "Service.LockPersonality": ["yes"],
        "Service.MemoryDenyWriteExecute": ["yes"], "Service.RestrictRealtime": ["yes"],
        "Service.RestrictSUIDSGID": ["yes"], "Service.ProtectClock": ["yes"],
        "Service.ProtectHostname": ["yes"], "Install.WantedBy": ["multi-user.target"],
    }
    assert {k: d.get(k) for k in expected} == expected


@pytest.mark.parametrize("job_unit, jobs", [("x402-cleanup", ["cleanup", "retention"]),
                                            ("x402-analytics", ["analytics"])])
def test_job_units_run_the_jobs_command_hardened_like_the_daemon(job_unit, jobs):
    service, timer = directives(f"{job_unit}.service"), directives(f"{job_unit}.timer")
    assert service["Service.Type"] == ["oneshot"]
    assert service["Service.ExecStart"] == [f"{INSTALLED_BIN} jobs run {j}" for j in jobs]
    daemon = directives("x402-verifier.service")
    hardening = {k: v for k, v in daemon.items() if k.startswith("Service.") and k not in {
        "Service.Type", "Service.NotifyAccess", "Service.ExecStart", "Service.Restart",
        "Service.RestartSec", "Service.TimeoutStartSec", "Service.TimeoutStopSec",
        "Service.WatchdogSec", "Service.SyslogIdentifier"}}
    assert {k: service.get(k) for k in hardening} == hardening
    assert timer["Timer.Persistent"] == ["true"]
    assert timer["Install.WantedBy"] == ["timers.target"]
    minute = {"x402-cleanup": "00", "x402-analytics": "05"}[job_unit]
    assert timer["Timer.OnCalendar"] == [f"*-*-* *:{minute}:00 UTC"]


# -- MemoryDenyWriteExecute ------------------------------------------------------------------------

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1

# Turns on the kernel's memory-deny-write-execute for this process (what systemd's
# MemoryDenyWriteExecute= enforces with seccomp), proves it bites (a W+X mapping is refused:
# exit 91), then runs x402-verifier.
UNDER_MDWE = f"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(90)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(91)
except PermissionError:
    pass
from verifier.cli import main
sys.exit(main(sys.argv[1:]))
"""


def mdwe_supported() -> bool:
    """Asked in a child: the flag cannot be cleared once set."""
    probe = f"import ctypes; ctypes.CDLL(None).prctl({PR_SET_MDWE}, 1, 0, 0, 0) == 0 or exit(1)"
    return subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


@pytest.fixture
def devnet() -> Iterator[EvmDevnet]:
    with local_devnet("base") as d:
        yield d


@pytest.mark.skipif(not mdwe_supported(), reason="this kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_the_daemon_runs_under_memory_deny_write_execute(devnet, database_url):
    payer = devnet.accounts[1]
    devnet.mint(payer, 10_000_000)
    tx = devnet.transfer(payer, PAYEE, 2_000_000)
    sock, path = notify_socket()
    sock.setblocking(True)
    sock.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    env.update(daemon_env(devnet.url), DATABASE_URL=database_url, NOTIFY_SOCKET=path,
               X402_LOG_FORMAT="json")
    with sock, subprocess.Popen([sys.executable, "-c", UNDER_MDWE, "run"], env=env,
                                stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert sock.recv(65536).decode().startswith("READY=1"), proc.poll()
            # A claim makes the daemon verify an EIP-191 proof (coincurve) as well.
            token, token_hash = api.new_token()
            proof = sign_claim(payer.key, rules.claim_message("base", tx, token_hash))
            with psycopg.connect(database_url, autocommit=True) as conn:
                claim = api.submit_claim(conn, "base", tx, token_hash, proof)
                assert claim.claim_id is not None
                claim = api.wait_for_claim(conn, claim.claim_id, timeout=30)
                assert (claim.status, claim.reason) == ("issued", None)
                assert api.consume(conn, token, "/api/data", "GET", 200).allowed
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            proc.kill()
    assert query(database_url, "SELECT status FROM x402_payments") == [("verified",)]


# -- the environment file --------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values = {}
    for line in (UNITS / "x402-verifier.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def settings_read_by_config() -> set[str]:
    """Every variable name verifier/config.py reads: X402_* and DATABASE_URL literals, and the
    per-chain suffixes it appends to X402_<CHAIN>_."""
    tree = ast.parse(Path(config.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"X402_[A-Z0-9_]+|DATABASE_URL", node.value):
            names.add(node.value)
    chain_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_chain")
    for node in ast.walk(chain_fn):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"[A-Z][A-Z0-9_]*[A-Z0-9]", node.value) \
                and not node.value.startswith("X402_"):
            names.add(f"X402_<CHAIN>_{node.value}")
    return names


def test_the_env_example_documents_every_setting_and_loads():
    text = (UNITS / "x402-verifier.env.example").read_text()
    names = settings_read_by_config()
    assert len(names) > 30
    documented = set(re.findall(r"\b(X402_[A-Z0-9_<>]+|DATABASE_URL)\b", text))
    chains = ("BASE", "ETHEREUM", "SOLANA")
    missing = sorted(n for n in names if n not in documented and not any(
        n.replace("<CHAIN>", c) in documented for c in chains))
    assert missing == []
    cfg = config.load(env_example())  # the example, as shipped, is a valid configuration
    assert list(cfg.chains) == ["base", "ethereum", "solana"]
    assert cfg.metrics_addr == ("127.0.0.1", 9402)
