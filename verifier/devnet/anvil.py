"""A local anvil node (npm `@foundry-rs/anvil`, offline) for tests, benchmarks and the demo.

    with Anvil(chain_id=8453) as node:
        EvmDevnet(node.url) ...

The process listens on a free localhost port, is ready when `start()` returns (it answered
`eth_chainId` with the expected id), and is killed on `stop()`, on leaving the `with` block, at
interpreter exit, and (Linux) when the Python process dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

from verifier.devnet import tools

NODE_MODULES = tools.node_modules()
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PORT_ATTEMPTS = 5
_RUNNING: set[Anvil] = set()


class AnvilError(RuntimeError):
    """anvil could not be found, did not start, or answered an RPC call with an error."""


def anvil_bin() -> str:
    """$ANVIL_BIN, else the native binary the npm package ships, else its node launcher.

    The native binary is preferred: it starts faster and, being our direct child, dies with
    us; the launcher (`.bin/anvil`, a node script) would leave an orphan if node were killed.
    """
    if env := os.environ.get("ANVIL_BIN"):
        return env
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    native = NODE_MODULES / "@foundry-rs" / f"anvil-{sys.platform}-{arch}" / "bin" / "anvil"
    for candidate in (native, NODE_MODULES / ".bin" / "anvil"):
        if candidate.exists():
            return str(candidate)
    raise AnvilError(f"anvil not found under {NODE_MODULES}; run `make install`, or set "
                     f"ANVIL_BIN or {tools.TOOLS_ENV}")


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 10.0) -> Any:
    """One JSON-RPC call with the standard library (no web3), raising AnvilError on an error."""
    host_port = url.removeprefix("http://").rstrip("/")
    conn = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if "error" in answer:
        raise AnvilError(f"{method}: {answer['error']}")
    return answer["result"]


class Anvil:
    """One anvil process. Automine is on unless `block_time` or `no_mining` says otherwise.

    `hardfork` defaults to cancun, not anvil's latest (prague): measured on anvil 1.7.1, the
    cost of mining a block under prague grows with the chain's length (2,000 empty blocks:
    ~6 s after 0 blocks, ~18 s after 2,000; cancun: ~1 s and ~3 s), which makes generating
    thousands of blocks slow. Nothing the daemon reads (logs, receipts, headers, eth_call)
    differs between the two for its purposes. `hardfork=None` leaves anvil's default.
    """

    def __init__(
        self,
        *,
        chain_id: int = 8453,
        accounts: int = 10,
        balance: int = 10_000,
        block_time: float | None = None,
        no_mining: bool = False,
        hardfork: str | None = "cancun",
        extra_args: Sequence[str] = (),
        start_timeout: float = 15.0,
    ) -> None:
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance = balance
        self.block_time = block_time
        self.no_mining = no_mining
        self.hardfork = hardfork
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self.process is None:
            raise AnvilError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Anvil:
        if self.process is not None:
            raise AnvilError("anvil already started")
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._spawn(_free_port())
                self._wait_ready()
                return self
            except _PortTaken:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise AnvilError("anvil: no free port after several attempts") from None
        raise AssertionError("unreachable")

    def stop(self) -> None:
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, params)

    def command(self, port: int) -> list[str]:
        args = [
            anvil_bin(),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
            "--balance", str(self.balance),
            "--mnemonic", DEFAULT_MNEMONIC,
            "--silent",
        ]  # fmt: skip
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        if self.no_mining:
            args.append("--no-mining")
        if self.hardfork is not None:
            args += ["--hardfork", self.hardfork]
        return args + list(self.extra_args)

    def _spawn(self, port: int) -> None:
        self.port = port
        # Lives as long as the process (closed in stop()): anvil's stderr, for error messages.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=_die_with_parent,
        )
        _RUNNING.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            returncode = self.process.poll()
            if returncode is not None:
                stderr = self._read_stderr()
                self.stop()
                if "address already in use" in stderr.lower():
                    raise _PortTaken
                raise AnvilError(f"anvil exited with code {returncode}; stderr: {stderr}")
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                answered = int(rpc(self.url, "eth_chainId", timeout=1.0), 16)
                if answered != self.chain_id:
                    self.stop()
                    raise AnvilError(f"anvil answered chain id {answered}, not {self.chain_id}")
                return
            time.sleep(0.01)
        stderr = self._read_stderr()
        self.stop()
        raise AnvilError(f"anvil did not answer within {self.start_timeout} s; stderr: {stderr}")

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()


class _PortTaken(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the parent dies."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@atexit.register
def _stop_all() -> None:
    for node in list(_RUNNING):
        node.stop()
