#!/usr/bin/env python3
"""The chaos soak (`make chaos`): bounded to 10 minutes, fails loudly on any difference.

    .venv/bin/python scripts/chaos.py [--payments 5000] [--seed 402] [--rate 0.10]
                                       [--chains base,ethereum,solana] [--logs DIR]

5,000 USDC payments over two anvil chains (Base id 8453, Ethereum id 1) and the LiteSVM Solana
server, all watched by one daemon configuration (X402_CHAINS=base,ethereum,solana); every RPC
behind a fault-injecting proxy (faults on 10% of requests, every kind at least once); two
SIGKILLs of the daemon (`python -m verifier run`), one PostgreSQL stop/start (a pgserver of its
own), a second daemon for part of the run, three reorgs shallower than the confirmation depth,
the Base RPC serving Ethereum under its URL until the daemon notices.
Then it checks the database against the chains and prints the figures: every valid payment
verified exactly once with the right amount, nothing invalid recorded as paid, no duplicate
token, every claim resolved, cursors on the chains. Exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from verifier.devnet.soak import Plan, report, run  # noqa: E402

BOUND = 600.0  # seconds: the whole soak, set-up to audit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=402)
    parser.add_argument("--rate", type=float, default=0.10, help="share of RPC requests faulted")
    parser.add_argument("--chains", default="base,ethereum,solana")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pause", type=float, default=10.0,
                        help="seconds between rounds (the daemon polls, and is faulted, meanwhile)")
    parser.add_argument("--logs", type=Path, default=REPO / "var" / "chaos",
                        help="the daemons' logs (JSON lines)")
    args = parser.parse_args()
    # The bound holds even if something hangs: SIGALRM ends the run (and its children).
    signal.signal(signal.SIGALRM, _overrun)
    signal.alarm(int(BOUND) + 30)
    started = time.monotonic()
    plan = Plan(payments=args.payments, chains=tuple(args.chains.split(",")),
                fault_rate=args.rate, seed=args.seed, rounds=args.rounds, pause=args.pause,
                budget=BOUND,
                log_dir=args.logs, say=lambda line: print(line, flush=True))
    result = run(plan)
    elapsed = time.monotonic() - started
    if elapsed > BOUND:
        result.differences.append(f"OVERRUN: the soak took {elapsed:.0f} s, the bound is "
                                  f"{BOUND:.0f} s")
    report(result, say=lambda line: print(line, flush=True))
    print(f"reproduce: make chaos CHAOS_ARGS='--seed {args.seed} --payments {args.payments} "
          f"--rate {args.rate} --pause {args.pause}'")
    return 1 if result.differences else 0


def _overrun(_signum: int, _frame: object) -> None:
    print("!" * 78 + f"\nCHAOS FAILED: the soak did not finish within {BOUND:.0f} s\n" + "!" * 78,
          flush=True)
    raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
