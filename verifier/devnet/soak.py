"""The chaos soak: real chains behind faulty RPCs, the daemon killed, doubled and cut off from its
database, then an audit of everything it wrote against the chains themselves.

    result = run(Plan(payments=5_000, chains=("base", "ethereum", "solana")))
    result.differences  # [] when nothing was lost, doubled or credited unpaid

One run: two anvil nodes (Base id 8453, Ethereum id 1) and the LiteSVM Solana server, each behind a
FaultProxy (faults on `fault_rate` of the requests, every fault kind at least once); a dedicated
pgserver PostgreSQL; the daemon as a subprocess (`python -m verifier run`), restarted like
systemd's Restart=on-failure would. Payments go out in rounds; between rounds come the events
(SIGKILLs, a second daemon for a while, a PostgreSQL stop/start, reorgs shallower than the
confirmation depth, an EVM RPC serving another chain under its URL until the daemon notices) and
claims: valid ones, a second valid claim of a claimed payment, forged
proofs, and claims of non-payments. Then every EVM block gets final, the daemon catches up, and
the audit compares the database with the chains (not with what the daemon saw).

Used by `make chaos` (scripts/chaos.py, the full soak) and by a shorter run in `make test`
(tests/reliability/test_chaos.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from verifier import api, rules
from verifier.devnet import tools
from verifier.devnet.anvil import rpc as anvil_rpc
from verifier.devnet.evm import (
    OTHER,
    PAYEE,
    USDC_BASE,
    USDC_ETHEREUM,
    EvmDevnet,
    local_devnet,
    sign_claim,
)
from verifier.devnet.faults import Fault, FaultProxy
from verifier.devnet.postgres import RestartablePostgres
from verifier.store import audit

MIN_PAYMENT = 100_000  # the daemon's default X402_MIN_PAYMENT_USDC, 0.10
PRICE = 1_000  # X402_PRICE_PER_REQUEST_USDC 0.001
EVM_USDC = {"base": USDC_BASE, "ethereum": USDC_ETHEREUM}
INVALID_REASONS = {"underpaid": "underpaid", "lookalike": "wrong_token",
                   "other_recipient": "wrong_recipient", "reverted": "failed_tx",
                   "failed": "failed_tx"}


@dataclass(frozen=True)
class Plan:
    payments: int = 5_000  # valid payments, over all chains
    chains: tuple[str, ...] = ("base", "ethereum", "solana")
    solana_share: float = 0.2
    rounds: int = 20
    per_block: int = 10  # EVM payments per block
    fault_rate: float = 0.10
    kills: int = 2
    second_daemon: bool = True
    postgres_restarts: int = 1
    reorgs: int = 3
    reorg_depth: int = 3
    chain_switches: int = 1  # an EVM RPC serves another chain until the daemon says so
    quarantines: int = 1  # a Solana payment the node refuses (-32015) until it is quarantined
    confirmations: int = 6
    claim_every: int = 10  # one valid payment in N is claimed
    pause: float = 1.0  # seconds between rounds
    not_found_grace: float = 30.0  # X402_CLAIM_NOT_FOUND_GRACE_SECONDS
    seed: int = 402
    budget: float = 600.0  # seconds for the whole run, setup to audit
    log_dir: Path | None = None
    say: Callable[[str], None] = print


@dataclass
class Claimed:
    kind: str  # valid | again | forged | replay | an INVALID_REASONS key
    chain: str
    tx_hash: str
    token: str
    token_hash: str


@dataclass
class Result:
    differences: list[str]
    figures: dict[str, Any]
    faults: Counter[Fault]


@dataclass
class _Sent:
    chain: str
    tx_hash: str
    amount: int
    signer: Any  # LocalAccount (EVM) or Keypair (Solana)
    kind: str = "valid"


class DaemonProcess:
    """`python -m verifier run` with its log in a file; restarted when it dies on its own."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.unexpected_exits: list[int] = []

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=self.env,
                                     cwd=tools.checkout(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supervise(self) -> None:
        """Like systemd's Restart=on-failure: a daemon that exited on its own is restarted (and
        counted: it should not have exited)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append(self.proc.returncode)
            self.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -9
        self.proc = None
        return code


class Soak:
    def __init__(self, plan: Plan, stack: ExitStack):
        self.plan = plan
        self.stack = stack
        self.started = time.monotonic()
        self.say = plan.say
        self.log_dir = plan.log_dir or Path(stack.enter_context(_temp_dir()))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sent: list[_Sent] = []
        self.claims: list[Claimed] = []
        self.proxies: dict[str, FaultProxy] = {}
        self.devnets: dict[str, EvmDevnet] = {}
        self.payers: dict[str, list[Any]] = {}
        self.events: Counter[str] = Counter()
        self.reorged: list[tuple[str, int]] = []  # (chain, head at the reorg)
        self.switched: list[str] = []  # "<chain> to <other chain id>", one per chain switch
        self.quarantined: list[str] = []  # "<signature> <outcome>", one per quarantine event
        self.stop_exit_codes: list[int] = []
        self.solana: Any = None
        self.kit: Any = None
        self.payee_sol: Any = None
        self._conn: psycopg.Connection | None = None
        self._claim_seq = itertools.count()
        self._again: list[Claimed] = []

    # --- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        self.pg = self.stack.enter_context(RestartablePostgres())
        self.url = self.pg.database()
        shares = self._shares()
        for index, chain in enumerate(self.plan.chains):
            if chain == "solana":
                upstream = self._setup_solana(shares[chain])
            else:
                upstream = self._setup_evm(chain, shares[chain])
            proxy = self.stack.enter_context(FaultProxy(
                upstream, seed=self.plan.seed * 10 + index, rate=self.plan.fault_rate,
                hang=3.0, retry_after=1, gap=10))
            self.proxies[chain] = proxy
        self.env = self._daemon_env()
        self.daemons = [DaemonProcess("daemon-1", self.env, self.log_dir)]
        self.second = DaemonProcess("daemon-2", self.env, self.log_dir)
        self.stack.callback(self._stop_all)

    def _shares(self) -> dict[str, int]:
        evm = [c for c in self.plan.chains if c != "solana"]
        solana = round(self.plan.payments * self.plan.solana_share) \
            if "solana" in self.plan.chains else 0
        if not evm:
            return {"solana": self.plan.payments}
        each = (self.plan.payments - solana) // len(evm)
        shares = {c: each for c in evm}
        shares[evm[0]] += self.plan.payments - solana - each * len(evm)
        if solana:
            shares["solana"] = solana
        return shares

    def _setup_evm(self, chain: str, count: int) -> str:
        devnet = self.stack.enter_context(local_devnet(chain))
        payers = devnet.new_accounts(max(4, min(200, count // 10)), seed=f"soak-{chain}")
        devnet.mint_many([(p, 10**13) for p in payers])
        devnet.mint(payers[0], 10**30, token=devnet.lookalike)  # beyond any USDC supply
        self.devnets[chain] = devnet
        self.payers[chain] = payers
        return devnet.url

    def _setup_solana(self, count: int) -> str:
        from verifier.devnet.solana_server import SolanaServer
        from verifier.devnet.solana_tokens import TokenKit

        self.solana = self.stack.enter_context(SolanaServer())
        self.kit = TokenKit(self.solana)
        self.kit.create_usdc()
        self.payee_sol = self.kit.wallet()
        self.kit.create_ata(self.payee_sol.pubkey())
        payers = [self.kit.wallet() for _ in range(max(2, min(50, count // 20)))]
        for payer in payers:
            self.kit.fund(payer.pubkey(), 10**12)
        self.payers["solana"] = payers
        self.solana_start = self.solana.slot + 1
        return str(self.solana.url)

    def _daemon_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "X402_CHAINS": ",".join(self.plan.chains),
            "X402_POLL_INTERVAL": "0.2",
            "X402_WORKERS": "4",
            "X402_METRICS_ADDR": "off",
            "X402_LOG_FORMAT": "json",
            "X402_CLAIM_NOT_FOUND_GRACE_SECONDS": str(self.plan.not_found_grace),
        }
        for chain in self.plan.chains:
            p = f"X402_{chain.upper()}_"
            env[p + "RPC_URLS"] = self.proxies[chain].url
            env[p + "RPC_TIMEOUT"] = "1"  # the proxy's hang lasts 3 s
            if chain == "solana":
                env[p + "PAYMENT_ADDRESS"] = str(self.payee_sol.pubkey())
                env[p + "START_BLOCK"] = str(self.solana_start)
            else:
                env[p + "PAYMENT_ADDRESS"] = PAYEE
                env[p + "START_BLOCK"] = "0"
                env[p + "CONFIRMATIONS"] = str(self.plan.confirmations)
                env[p + "MAX_LOG_RANGE"] = "50"  # many scan steps, so kills land mid-scan
        return env

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> None:
        plan = self.plan
        events = self._timeline()
        self.daemons[0].start()
        self._wait_until_watching()
        self.say(f"soak: {plan.payments} payments over {', '.join(plan.chains)} in {plan.rounds} "
                 f"rounds, faults on {plan.fault_rate:.0%} of RPC requests")
        evm_chains = [c for c in plan.chains if c != "solana"]
        shares = self._shares()
        for r in range(plan.rounds):
            first = len(self.sent)
            for chain in plan.chains:
                n = _split(shares[chain], plan.rounds, r)
                if chain == "solana":
                    self._pay_solana(r, n)
                else:
                    self._pay_evm(chain, r, n)
            self._schedule_faults(r)
            for what in events.get(r, []):
                self._event(what, evm_chains)
            self._claim_round(self.sent[first:])
            self._supervise()
            time.sleep(plan.pause)
            self.say(f"  round {r + 1}/{plan.rounds}: {len(self.sent)} sent, "
                     f"{self._count('recorded')} recorded, {len(self.claims)} claims "
                     f"[{self._elapsed():.0f} s]")
        if self.second.alive():
            self.stop_exit_codes.append(self.second.terminate())
        self._late_claims()
        self._finish()

    def _wait_until_watching(self) -> None:
        """Until the daemon has a cursor on every chain: the events must hit a working daemon."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._supervise()
            rows = self._db(lambda conn: audit.rows(conn, "cursors"))
            if {r[0] for r in rows} >= set(self.plan.chains):
                self.say(f"daemon watching [{self._elapsed():.0f} s]")
                return
            time.sleep(0.2)
        raise AssertionError("the daemon did not start watching within 60 s")

    def _schedule_faults(self, r: int) -> None:
        """Every fault kind at least once on every proxy, whatever the dice say: a few kinds per
        round, and ten requests apart (the proxies' gap), not served in one burst."""
        kinds = list(Fault)
        per_round = -(-len(kinds) // self.plan.rounds)
        for proxy in self.proxies.values():
            for fault in kinds[r * per_round:(r + 1) * per_round]:
                proxy.schedule(fault)

    def _timeline(self) -> dict[int, list[str]]:
        plan, rounds = self.plan, self.plan.rounds
        at: dict[int, list[str]] = {}

        def put(fraction: float, what: str) -> None:
            at.setdefault(min(rounds - 1, max(0, int(rounds * fraction))), []).append(what)

        for i in range(plan.kills):
            put(0.3 + 0.45 * i / max(1, plan.kills - 1) if plan.kills > 1 else 0.5, "kill")
        if plan.second_daemon:
            put(0.35, "second_daemon_start")
            put(0.7, "second_daemon_stop")
        for i in range(plan.postgres_restarts):
            put(0.55 + 0.1 * i, "postgres_restart")
        for i in range(plan.reorgs):
            put((i + 1) / (plan.reorgs + 1), "reorg")
        for i in range(plan.chain_switches):
            put(0.45 + 0.1 * i, "chain_switch")
        for i in range(plan.quarantines):
            put(0.25 + 0.1 * i, "quarantine")
        return at

    def _event(self, what: str, evm_chains: list[str]) -> None:
        self.events[what] += 1
        if what == "kill":
            target = self.daemons[0]
            target.kill()
            self.say(f"  SIGKILL {target.name}")
            time.sleep(1)  # systemd's RestartSec
            target.start()
        elif what == "second_daemon_start":
            self.second.start()
            self.say("  second daemon started")
        elif what == "second_daemon_stop":
            code = self.second.terminate()
            self.stop_exit_codes.append(code)
            self.say(f"  second daemon stopped (SIGTERM, exit {code})")
        elif what == "postgres_restart":
            self._close_conn()
            self.pg.stop()
            self.say("  PostgreSQL stopped")
            time.sleep(4)
            self.pg.start()
            alive = [d.name for d in [*self.daemons, self.second] if d.alive()]
            self.events["daemons_alive_after_postgres_restart"] += len(alive)
            self.say(f"  PostgreSQL started; still running: {', '.join(alive) or 'no daemon'}")
        elif what == "reorg" and evm_chains:
            chain = evm_chains[(self.events[what] - 1) % len(evm_chains)]
            devnet = self.devnets[chain]
            head = devnet.head()
            self._until_seen(chain, devnet, head - self.plan.reorg_depth + 1)
            devnet.reorg(self.plan.reorg_depth)
            self.reorged.append((chain, head))
            self.say(f"  reorg of depth {self.plan.reorg_depth} on {chain} at block {head}")
        elif what == "chain_switch" and evm_chains:
            self._switch_chain(evm_chains[(self.events[what] - 1) % len(evm_chains)])
        elif what == "quarantine" and self.solana is not None:
            self._quarantine_one()

    def _quarantine_one(self) -> None:
        """A paying Solana transaction that the node refuses with a final error (-32015,
        unsupported version) on every getTransaction: the daemon must quarantine it and go on;
        then the node serves it again and a retry made due at once (as the README tells an
        operator to do) must record it. Audited like every other payment: lost if not."""
        from verifier.devnet.solana_server import Fault

        payer = self.payers["solana"][0]
        amount = 150_000 + 1_000 * len(self.sent) + 7
        target: dict[str, Any] = {"signature": None, "refusing": True}
        self.solana.inject(
            "getTransaction", Fault.UNSUPPORTED_VERSION, times=10**6,
            when=lambda params: target["refusing"] and bool(params)
            and params[0] == target["signature"])
        target["signature"] = sig = self.kit.transfer(payer, self.payee_sol.pubkey(), amount)
        self.sent.append(_Sent("solana", sig, amount, payer))
        seen = self._logged("solana_quarantined")
        deadline = time.monotonic() + 30
        while self._logged("solana_quarantined") == seen and time.monotonic() < deadline:
            time.sleep(0.2)
        quarantined = self._logged("solana_quarantined") > seen
        target["refusing"] = False
        deadline = time.monotonic() + 30
        recorded = False
        while quarantined and time.monotonic() < deadline and not recorded:
            # The log line comes before the quarantine row is committed: made due again until
            # the retry has recorded the payment.
            self._db(audit.retry_quarantined_now)
            rows = self._db(lambda conn: audit.rows(conn, "payments"))
            recorded = any(c == "solana" and tx == sig for c, tx, *_ in rows)
            if not recorded:
                time.sleep(0.2)
        outcome = ("quarantined, then recorded" if quarantined and recorded
                   else "NOT QUARANTINED" if not quarantined else "quarantined, NOT recorded")
        self.quarantined.append(f"{sig[:12]}... {outcome}")
        self.say(f"  Solana transaction refused with -32015: {outcome}")

    def _switch_chain(self, chain: str) -> None:
        """The chain's proxy forwards to another chain (Ethereum for Base, when it runs; else a
        spare anvil 500 blocks ahead) until the daemon logs that no endpoint serves the chain,
        then to the chain again. Nothing may be rewound, lost or credited meanwhile."""
        devnet = self.devnets[chain]
        other = next((d for c, d in self.devnets.items() if c != chain), None)
        url = other.url if other is not None else self._spare_chain(devnet.chain_id)
        proxy = self.proxies[chain]
        seen = self._logged("watcher_no_endpoint_on_chain")
        proxy.serve_from(url)
        deadline = time.monotonic() + 30
        while self._logged("watcher_no_endpoint_on_chain") == seen \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        proxy.serve_from(devnet.url)
        noticed = self._logged("watcher_no_endpoint_on_chain") > seen
        self.switched.append(f"{chain} to chain id {int(anvil_rpc(url, 'eth_chainId'), 16)}"
                             + ("" if noticed else " (NOT NOTICED)"))
        self.say(f"  {chain} RPC served another chain, "
                 f"{'noticed' if noticed else 'NOT noticed'} by the daemon; back now")

    def _spare_chain(self, chain_id: int) -> str:
        from verifier.devnet.anvil import Anvil

        spare = self.stack.enter_context(Anvil(chain_id=8453 if chain_id == 1 else 1))
        spare.rpc("anvil_mine", hex(500))
        return spare.url

    def _logged(self, event: str) -> int:
        """How many times the daemons have logged ``event`` so far."""
        return sum(d.log_path.read_text(errors="replace").count(f'"{event}"')
                   for d in [*self.daemons, self.second] if d.log_path.exists())

    def _until_seen(self, chain: str, devnet: EvmDevnet, first_block: int) -> None:
        """Lets the daemon record (as pending) the payments a reorg is about to remove, so that
        the reorg takes back payments it has seen, not only ones it has not."""
        doomed = {e["transactionHash"].lower() for e in devnet.transfer_logs(first_block,
                                                                              to=PAYEE)}
        deadline = time.monotonic() + 10
        while doomed and time.monotonic() < deadline:
            rows = self._db(lambda conn: audit.rows(conn, "payments"))
            if doomed <= {tx for c, tx, *_ in rows if c == chain}:
                self.events["reorg_after_seen"] += 1
                return
            time.sleep(0.2)

    def _supervise(self) -> None:
        for daemon in [*self.daemons]:
            daemon.supervise()

    # --- payments ----------------------------------------------------------------------------

    def _pay_evm(self, chain: str, r: int, n: int) -> None:
        """One invalid transaction (by turns: underpaid, look-alike token beyond USDC's supply,
        USDC to someone else, reverted), then the round's payments, `per_block` a block: the
        newest blocks, the ones a reorg replaces, carry valid payments."""
        devnet, payers = self.devnets[chain], self.payers[chain]
        payer = payers[r % len(payers)]
        kind = ("underpaid", "lookalike", "other_recipient", "reverted")[r % 4]
        if kind == "underpaid":
            tx, amount = devnet.transfer(payer, PAYEE, 50_000 + r), 50_000 + r
        elif kind == "lookalike":
            payer = payers[0]
            tx, amount = devnet.transfer(payer, PAYEE, 10**27 + r, token=devnet.lookalike), 0
        elif kind == "other_recipient":
            tx, amount = devnet.transfer(payer, OTHER, 1_000_000 + r), 0
        else:
            tx, amount = devnet.reverted_payment(payer, PAYEE, 1_000_000 + r), 0
        self.sent.append(_Sent(chain, tx, amount, payer, kind))
        wanted = [(payers[(r * 7 + i) % len(payers)], 150_000 + 1_000 * len(self.sent) + i)
                  for i in range(n)]
        hashes = devnet.bulk_transfers([(p, PAYEE, a) for p, a in wanted],
                                       per_block=self.plan.per_block)
        self.sent += [_Sent(chain, h, a, p) for h, (p, a) in zip(hashes, wanted, strict=True)]

    def _pay_solana(self, r: int, n: int) -> None:
        payers, payee = self.payers["solana"], self.payee_sol.pubkey()
        for i in range(n):
            payer = payers[(r * 3 + i) % len(payers)]
            amount = 150_000 + 1_000 * len(self.sent) + i
            self.sent.append(_Sent("solana", self.kit.transfer(payer, payee, amount), amount,
                                   payer))
        payer = payers[r % len(payers)]
        if r % 2:
            self.sent.append(_Sent("solana", self.kit.transfer(payer, payee, 40_000 + r),
                                   40_000 + r, payer, "underpaid"))
        else:
            sig = self.kit.failed_transfer(payer, payee, 10**15)
            self.sent.append(_Sent("solana", sig, 0, payer, "failed"))

    # --- claims ------------------------------------------------------------------------------

    def _claim_round(self, fresh: list[_Sent]) -> None:
        """Claims of this round's payments: one valid payment in N, every invalid one, a forged
        proof for one payment nobody claims yet; and for an earlier claimed payment, a second
        valid claim and a replay of the first claim's token hash."""
        valid = [s for s in fresh if s.kind == "valid"]
        for s in valid[:: self.plan.claim_every]:
            self._claim(s, "valid")
        for s in fresh:
            if s.kind != "valid":
                self._claim(s, s.kind)
        claimed = self._claimed_txs
        unclaimed = [s for s in valid if s.tx_hash not in claimed]
        if unclaimed:
            self._claim(unclaimed[0], "forged")
        earlier = [c for c in self.claims if c.kind == "valid" and c not in self._again]
        if earlier:
            c = earlier[len(earlier) // 2]
            self._again.append(c)
            self._claim(self._sent_by_tx[c.tx_hash], "again")
            self._replay(c)

    def _late_claims(self) -> None:
        """The payments that got a forged claim are claimed for real too."""
        for c in [c for c in self.claims if c.kind == "forged"]:
            self._claim(self._sent_by_tx[c.tx_hash], "valid")

    @property
    def _claimed_txs(self) -> set[str]:
        return {c.tx_hash for c in self.claims}

    @property
    def _sent_by_tx(self) -> dict[str, _Sent]:
        return {s.tx_hash: s for s in self.sent}

    def _claim(self, s: _Sent, kind: str) -> None:
        token, token_hash = api.new_token()
        signer = s.signer
        if kind == "forged":
            signer = self._stranger(s)
        message = rules.claim_message(s.chain, s.tx_hash, token_hash)
        if s.chain == "solana":
            proof = str(signer.sign_message(message.encode()))
        else:
            proof = sign_claim(signer.key, message)
        submitted = self._db(lambda conn: api.submit_claim(conn, s.chain, s.tx_hash, token_hash,
                                                           proof))
        if submitted.status != "waiting" and submitted.claim_id is None:
            raise AssertionError(f"submit_claim refused a well-formed claim: {submitted}")
        self.claims.append(Claimed(kind, s.chain, s.tx_hash, token, token_hash))

    def _replay(self, c: Claimed) -> None:
        """The same token hash for the same transaction: the existing claim, not a new one."""
        again = self._db(lambda conn: api.submit_claim(conn, c.chain, c.tx_hash, c.token_hash,
                                                       None))
        if again.claim_id is None:
            raise AssertionError(f"a replayed claim was not recognised: {again}")
        self.events["replayed_claims"] += 1

    def _stranger(self, s: _Sent) -> Any:
        others = [p for p in self.payers[s.chain] if p is not s.signer]
        return others[next(self._claim_seq) % len(others)]

    # --- the end -----------------------------------------------------------------------------

    def _finish(self) -> None:
        """Every EVM payment final, the daemon caught up, every claim decided; then SIGTERM."""
        for devnet in self.devnets.values():
            devnet.mine(self.plan.confirmations + 1)
        self.say(f"load done [{self._elapsed():.0f} s]; waiting for the daemon to catch up")
        deadline = self.started + self.plan.budget - 20
        while True:
            self._supervise()
            waiting = self._count("waiting_claims")
            pending = self._count("pending_payments")
            behind = self._cursors_behind()
            if not waiting and not pending and not behind:
                break
            if time.monotonic() > deadline:
                self.say(f"  gave up waiting: {waiting} claims waiting, {pending} payments "
                         f"pending, behind: {behind}")
                break
            time.sleep(1)
        code = self.daemons[0].terminate()
        self.stop_exit_codes.append(code)
        self.say(f"daemon stopped (SIGTERM, exit {code}) [{self._elapsed():.0f} s]")

    def _cursors_behind(self) -> list[str]:
        rows = self._db(lambda conn: audit.rows(conn, "cursors"))
        positions: dict[str, list[int]] = {}
        for chain, _account, position, _marker in rows:
            positions.setdefault(chain, []).append(position)
        behind = []
        for chain, devnet in self.devnets.items():
            if max(positions.get(chain, [-1])) < devnet.head():
                behind.append(chain)
        if self.solana is not None:
            markers = {account: marker for chain, account, _p, marker in rows
                       if chain == "solana"}
            for account, marker in markers.items():
                listed = self.solana.signatures_for(account)
                if listed and marker != listed[-1]:
                    behind.append("solana")
            if not markers:
                behind.append("solana")
        return behind

    def _stop_all(self) -> None:
        for daemon in [*self.daemons, self.second]:
            if daemon.alive():
                with contextlib.suppress(Exception):
                    daemon.terminate()
        self._close_conn()

    # --- database access ---------------------------------------------------------------------

    def _db(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        for attempt in range(30):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True)
                return fn(self._conn)
            except psycopg.OperationalError:
                self._close_conn()
                if attempt == 29:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _count(self, name: str) -> int:
        return int(self._db(lambda conn: audit.count(conn, name)))

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- the audit ---------------------------------------------------------------------------

    def audit(self) -> Result:
        diffs: list[str] = []
        rows = self._db(lambda conn: audit.rows(conn, "payments"))
        recorded = {(c, tx): (status, _units(amount), req) for c, tx, status, amount, req in rows}
        truth: dict[tuple[str, str], int] = {}
        for chain, devnet in self.devnets.items():
            truth.update({(chain, tx): a for tx, a in _evm_truth(devnet, chain).items()})
        if self.solana is not None:
            truth.update(self._solana_truth())
        gone = self._check_sent_against_truth(truth, diffs)
        paid = {"verified", "used", "expired"}
        for key, amount in truth.items():
            want = "verified" if amount >= MIN_PAYMENT else "underpaid"
            got = recorded.get(key)
            if got is None:
                diffs.append(f"LOST: {key[0]} {key[1]} ({amount} base units) was never recorded")
            elif (got[0] in paid) != (want == "verified") or got[0] in ("pending", "reorged"):
                diffs.append(f"WRONG STATUS: {key[0]} {key[1]} is {got[0]}, expected {want}")
            elif got[1] != amount:
                diffs.append(f"WRONG AMOUNT: {key[0]} {key[1]} recorded {got[1]}, paid {amount}")
            elif want == "verified" and got[2] != amount // PRICE:
                diffs.append(f"WRONG REQUESTS: {key[0]} {key[1]} has {got[2]} requests")
        for key, (status, _amount, _req) in recorded.items():
            if key not in truth and status != "reorged":
                diffs.append(f"CREDITED UNPAID: {key[0]} {key[1]} is {status} but no such "
                             "payment is on the chain")
        claims_by_status = self._audit_claims(gone, diffs)
        tokens = self._audit_tokens(diffs)
        consumed = self._consume_some(diffs)
        self._audit_cursors(diffs)
        self._audit_daemons(diffs)
        faults: Counter[Fault] = Counter()
        for proxy in self.proxies.values():
            faults.update(proxy.injected)
        for fault in Fault:
            if not faults[fault]:
                diffs.append(f"FAULT NEVER INJECTED: {fault.value}")
        diffs += [f"CHAIN SWITCH NOT NOTICED: {s}" for s in self.switched if "NOT" in s]
        diffs += [f"QUARANTINE: {q}" for q in self.quarantined if "NOT" in q]
        figures = {
            "seconds": round(self._elapsed()),
            "payments_valid_on_chain": sum(1 for a in truth.values() if a >= MIN_PAYMENT),
            "payments_underpaid_on_chain": sum(1 for a in truth.values() if a < MIN_PAYMENT),
            "payments_by_chain": dict(Counter(c for (c, _), a in truth.items()
                                              if a >= MIN_PAYMENT)),
            "invalid_sent": dict(Counter(s.kind for s in self.sent if s.kind != "valid")),
            "reorged_out": len(gone),
            "recorded_rows": len(recorded),
            "recorded_by_status": dict(Counter(v[0] for v in recorded.values())),
            "claims": dict(claims_by_status),
            "tokens": tokens,
            "tokens_consumed_once": consumed,
            "rpc_requests": sum(p.requests for p in self.proxies.values()),
            "faults_injected": sum(faults.values()),
            "sigkills": self.events["kill"],
            "daemon_starts": sum(d.starts for d in [*self.daemons, self.second]),
            "unexpected_exits": [c for d in [*self.daemons, self.second]
                                 for c in d.unexpected_exits],
            "sigterm_exit_codes": self.stop_exit_codes,
            "postgres_restarts": self.pg.restarts,
            "daemons_alive_after_postgres_restart": self.events[
                "daemons_alive_after_postgres_restart"],
            "two_daemons_window": bool(self.events["second_daemon_start"]),
            "reorgs": [f"{c}@{h} depth {self.plan.reorg_depth}" for c, h in self.reorged],
            "reorgs_of_payments_already_recorded": self.events["reorg_after_seen"],
            "chain_switches": self.switched,
            "quarantines": self.quarantined,
            "replayed_claims": self.events["replayed_claims"],
            "logs": str(self.log_dir),
        }
        return Result(diffs, figures, faults)

    def _check_sent_against_truth(self, truth: dict[tuple[str, str], int],
                                  diffs: list[str]) -> set[tuple[str, str]]:
        """The harness's own bookkeeping: what it sent is on chain unless a reorg removed it.
        Returns the transactions a reorg removed."""
        gone: set[tuple[str, str]] = set()
        for chain, devnet in self.devnets.items():
            hashes = [s.tx_hash for s in self.sent if s.chain == chain]
            for i in range(0, len(hashes), 200):
                part = hashes[i:i + 200]
                receipts = devnet.batch([("eth_getTransactionReceipt", [h]) for h in part])
                gone.update((chain, h) for h, r in zip(part, receipts, strict=True) if r is None)
        for s in self.sent:
            key = (s.chain, s.tx_hash)
            if key in gone:
                if key in truth:
                    diffs.append(f"HARNESS: {key} has no receipt but paid on chain")
            elif s.kind in ("valid", "underpaid"):
                if key not in truth and s.chain != "solana":
                    diffs.append(f"HARNESS: {key} was sent and is on chain but not in the "
                                 "chain's USDC logs")
                elif key in truth and truth[key] != s.amount:
                    diffs.append(f"HARNESS: {key} paid {truth[key]}, sent {s.amount}")
            elif key in truth:
                diffs.append(f"HARNESS: the {s.kind} transaction {key} paid the payee USDC")
        return gone

    def _solana_truth(self) -> dict[tuple[str, str], int]:
        out = {}
        for s in self.sent:
            if s.chain == "solana" and s.kind in ("valid", "underpaid") \
                    and self.solana.landed(s.tx_hash).err is None:
                out[("solana", s.tx_hash)] = s.amount
        return out

    def _audit_claims(self, gone: set[tuple[str, str]], diffs: list[str]) -> Counter[str]:
        rows = self._db(lambda conn: audit.rows(conn, "claims"))
        by_hash = {token_hash: (status, reason) for _id, _c, _tx, token_hash, status, reason
                   in rows}
        if len(rows) != len({c.token_hash for c in self.claims}):
            diffs.append(f"CLAIMS: {len(rows)} claim rows for {len(self.claims)} submitted")
        outcome: Counter[str] = Counter()
        issued_per_tx: Counter[tuple[str, str]] = Counter()
        for c in self.claims:
            status, reason = by_hash.get(c.token_hash, ("missing", None))
            outcome[f"{c.kind}:{status}:{reason}"] += 1
            key = (c.chain, c.tx_hash)
            if status == "issued":
                issued_per_tx[key] += 1
            if status == "waiting" or status == "missing":
                diffs.append(f"UNRESOLVED CLAIM: {c.kind} claim of {key} is {status}")
            elif key in gone:
                if status == "issued" or reason not in ("reorged", "not_found"):
                    diffs.append(f"CLAIM: {c.kind} claim of reorged-out {key} is {status}/"
                                 f"{reason}")
            elif c.kind in INVALID_REASONS:
                if (status, reason) != ("rejected", INVALID_REASONS[c.kind]):
                    diffs.append(f"CLAIM: {c.kind} claim of {key} is {status}/{reason}, "
                                 f"expected rejected/{INVALID_REASONS[c.kind]}")
            elif c.kind == "forged":
                if status == "issued" or reason not in ("bad_proof", "already_claimed"):
                    diffs.append(f"CLAIM: forged claim of {key} is {status}/{reason}")
            elif status != "issued" and reason != "already_claimed":
                diffs.append(f"VALID CLAIM REJECTED: {c.kind} claim of {key} is {status}/"
                             f"{reason}")
        valid_txs = {(c.chain, c.tx_hash) for c in self.claims if c.kind in ("valid", "again")}
        for key in valid_txs - gone:
            if issued_per_tx[key] != 1:
                diffs.append(f"TOKENS: {key} has {issued_per_tx[key]} issued claims, expected 1")
        return Counter({k: v for k, v in sorted(outcome.items())})

    def _audit_tokens(self, diffs: list[str]) -> int:
        rows = self._db(lambda conn: audit.rows(conn, "tokens"))
        issued = {c.token_hash: c for c in self.claims}
        per_payment = Counter((chain, tx) for _h, chain, tx, _s in rows)
        for key, n in per_payment.items():
            if n > 1:
                diffs.append(f"DUPLICATE TOKEN: {key} has {n} tokens")
        for token_hash, chain, tx, status in rows:
            claim = issued.get(token_hash)
            if claim is None or (claim.chain, claim.tx_hash) != (chain, tx):
                diffs.append(f"TOKEN: {token_hash[:12]}… for {chain} {tx} matches no claim of it")
            if status not in ("verified", "used"):
                diffs.append(f"TOKEN: {chain} {tx} has a token while {status}")
        return len(rows)

    def _consume_some(self, diffs: list[str]) -> int:
        """Each issued token buys exactly what its payment paid for, one request at a time."""
        rows = self._db(lambda conn: audit.rows(conn, "claims"))
        issued = {h for *_x, h, status, _r in rows if status == "issued"}
        amounts = {s.tx_hash: s.amount for s in self.sent}
        used = 0
        for c in self.claims:
            if c.token_hash not in issued:
                continue
            use = self._consume(c.token)
            expected = amounts[c.tx_hash] // PRICE - 1
            if not use.allowed or use.requests_remaining != expected:
                diffs.append(f"CONSUME: token of {c.chain} {c.tx_hash}: {use}, expected "
                             f"{expected} left")
            used += 1
        return used

    def _consume(self, token: str) -> Any:
        return self._db(lambda conn: api.consume(conn, token, "/soak", "GET", 200))

    def _audit_cursors(self, diffs: list[str]) -> None:
        rows = self._db(lambda conn: audit.rows(conn, "cursors"))
        for chain, account, position, marker in rows:
            if chain in self.devnets:
                devnet = self.devnets[chain]
                if position > devnet.head():
                    diffs.append(f"CURSOR: {chain} at {position}, beyond the head")
                elif marker != devnet.block_hash(position):
                    diffs.append(f"CURSOR: {chain} at {position} holds hash {marker}, the "
                                 f"chain has {devnet.block_hash(position)}")
            elif chain == "solana":
                listed = self.solana.signatures_for(account)
                if listed and (marker != listed[-1]
                               or position != self.solana.landed(listed[-1]).slot):
                    diffs.append(f"CURSOR: solana {account} at {position}/{marker}, newest is "
                                 f"{listed[-1]}")
        for chain in self.plan.chains:
            if not any(r[0] == chain for r in rows):
                diffs.append(f"CURSOR: none for {chain}")

    def _audit_daemons(self, diffs: list[str]) -> None:
        for daemon in [*self.daemons, self.second]:
            for code in daemon.unexpected_exits:
                diffs.append(f"DAEMON EXITED ON ITS OWN: {daemon.name} with code {code} "
                             f"(log {daemon.log_path})")
        for code in self.stop_exit_codes:
            if code != 0:
                diffs.append(f"DAEMON: SIGTERM ended with exit code {code}, expected 0")


@contextlib.contextmanager
def soaked(plan: Plan) -> Iterator[Soak]:
    """A soak that has run, its chains and database still up (for audit())."""
    with ExitStack() as stack:
        soak = Soak(plan, stack)
        soak.setup()
        soak.say(f"set-up done [{soak._elapsed():.0f} s]")
        soak.run()
        yield soak


def run(plan: Plan) -> Result:
    with soaked(plan) as soak:
        return soak.audit()


def report(result: Result, say: Callable[[str], None] = print) -> None:
    say("")
    say("chaos soak figures")
    for key, value in result.figures.items():
        if isinstance(value, dict) and value:
            say(f"  {key}:")
            for k, v in value.items():
                say(f"      {k}: {v}")
        else:
            say(f"  {key}: {value}")
    say("  faults by kind: " + ", ".join(f"{f.value}={result.faults[f]}" for f in Fault))
    if result.differences:
        say("")
        say("!" * 78)
        say(f"CHAOS FAILED: {len(result.differences)} difference(s) between the database and "
            "the chains")
        for line in result.differences[:200]:
            say(f"  {line}")
        say("!" * 78)
    else:
        say("CHAOS PASSED: every valid payment verified exactly once with its amount, nothing "
            "unpaid credited, no duplicate token, every claim resolved, cursors on the chains")


def _evm_truth(devnet: EvmDevnet, chain: str) -> dict[str, int]:
    """tx -> USDC paid to the payee, from the chain's own logs (the canonical chain now)."""
    head = devnet.head()
    paid: dict[str, int] = {}
    for first in range(0, head + 1, 2_000):
        for entry in devnet.transfer_logs(first, min(first + 1_999, head), to=PAYEE,
                                          token=EVM_USDC[chain]):
            tx = entry["transactionHash"].lower()
            paid[tx] = paid.get(tx, 0) + int(entry["data"], 16)
    return paid


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _units(amount: Decimal) -> int:
    return int(amount.scaleb(6))


@contextlib.contextmanager
def _temp_dir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="x402-chaos-") as path:
        yield path


__all__ = ["Plan", "Result", "Soak", "report", "run", "soaked"]
