"""The x402-verifier command line. Exit codes: 0 ok, 2 bad usage or configuration, 1 failure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# Only what every command needs is imported here; each command imports its own modules, so
# `--help`, `migrate` and `jobs` never load web3, solana or the daemon (test_fast_commands).
from verifier import config as config_mod
from verifier import redact
from verifier.errors import ConfigError, DatabaseError, VerifierError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _database_url() -> str:
    from verifier import db

    settings = config_mod.load(os.environ, chains=False)
    return db.resolve_url(settings.database_url, settings.embedded_dir)


def _config(*, chains: bool = True) -> config_mod.Config:
    from verifier import logs

    cfg = config_mod.load(os.environ, chains=chains)
    logs.configure(cfg.log_format)
    return cfg


def _cmd_migrate(args: argparse.Namespace) -> int:
    from verifier import migrate

    migrate.run(_database_url(), dry_run=args.dry_run)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from verifier import db

    cfg = _config()
    url = db.resolve_url(cfg.database_url, cfg.embedded_dir)
    return asyncio.run(_run(cfg, url))


async def _run(cfg: config_mod.Config, url: str) -> int:
    import asyncio
    import signal

    from verifier.daemon import Daemon

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from verifier.systemd import Notifier

    async with Daemon.open(cfg, url, Notifier.from_env(os.environ)) as daemon:
        await daemon.run(stop)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    import asyncio

    cfg = _config()
    chain_cfg = _chain(cfg, args.chain)
    return asyncio.run(_verify(cfg, chain_cfg, args.tx))


async def _verify(cfg: config_mod.Config, chain_cfg: config_mod.ChainConfig, tx: str) -> int:
    from verifier import rules
    from verifier.chains import open_adapter
    from verifier.money import base_units_to_usdc

    tx_hash = _canonical_tx(chain_cfg.name, tx)
    if tx_hash is None:
        _print({"chain": chain_cfg.name, "tx_hash": tx, "verdict": "rejected",
                "reason": "malformed_tx_hash"})
        return EXIT_FAILURE
    adapter = await open_adapter(chain_cfg)
    try:
        lookup = await adapter.lookup(tx_hash)
    finally:
        await adapter.close()
    if lookup.payment is None or lookup.view is None:
        _print({"chain": chain_cfg.name, "tx_hash": tx_hash, "verdict": "rejected",
                "reason": lookup.reason})
        return EXIT_FAILURE
    p = lookup.payment
    verdict = rules.judge(p, lookup.view, cfg.policy)
    _print({
        "chain": p.chain, "tx_hash": p.tx_hash, "verdict": verdict.status,
        "reason": "underpaid" if verdict.status == "underpaid" else
                  "unconfirmed" if verdict.status == "pending" else None,
        "amount_usdc": str(base_units_to_usdc(p.amount)),
        "amount_base_units": str(p.amount),
        "from_address": p.from_address, "to_address": p.to_address,
        "block_number": p.block_number, "block_hash": p.block_hash,
        "confirmations": verdict.confirmations,
        "requests_allocated": verdict.requests_allocated,
    })
    return EXIT_OK if verdict.status == "verified" else EXIT_FAILURE


def _cmd_claim(args: argparse.Namespace) -> int:
    from verifier import api
    from verifier.store import api as gateway

    token = None
    token_hash = args.token_hash
    if token_hash is None:
        if args.proof is not None:
            raise ConfigError("--proof: a proof signs the token hash, so the token must be made "
                              "by the client: give --token-hash (see verifier.client)")
        token, token_hash = api.new_token()
    url = _database_url()
    with gateway.connect(url) as conn:
        claim = api.submit_claim(conn, args.chain, args.tx, token_hash, args.proof)
        if claim.claim_id is not None and claim.status == "waiting":
            claim = api.wait_for_claim(conn, claim.claim_id, timeout=args.wait)
    out: dict[str, Any] = {"claim_id": claim.claim_id, "status": claim.status,
                           "reason": claim.reason}
    if claim.status == "issued" and token is not None:
        out["token"] = token  # shown this once; only its SHA-256 is stored
    _print(out)
    return EXIT_OK if claim.status == "issued" else EXIT_FAILURE


def _cmd_status(args: argparse.Namespace) -> int:
    from verifier import status

    try:
        chains = config_mod.load(os.environ).chains  # for the heads; optional
    except ConfigError:
        chains = {}
    return status.show(_database_url(), chains, as_json=args.json)


def _cmd_jobs(args: argparse.Namespace) -> int:
    import asyncio

    from verifier import db, jobs

    settings = _config(chains=False)
    if args.hour is not None and args.job != "analytics":
        raise ConfigError("--hour: only the analytics job takes an hour")
    url = db.resolve_url(settings.database_url, settings.embedded_dir)
    run = asyncio.run(jobs.run_once(url, args.job, hour=args.hour,
                                    backfill_hours=settings.analytics_backfill_hours,
                                    retention_days=settings.usage_retention_days,
                                    claim_retention_days=settings.claim_retention_days))
    _print({"job": run.job, "status": run.status, "seconds": round(run.seconds, 3),
            **run.detail})
    return EXIT_FAILURE if run.status == "failed" else EXIT_OK


def _hour(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None


def _cmd_doctor(args: argparse.Namespace) -> int:
    from verifier import doctor

    return doctor.run(os.environ)


def _chain(cfg: config_mod.Config, name: str) -> config_mod.ChainConfig:
    if name not in cfg.chains:
        raise ConfigError(f"--chain: {name!r} is not configured (X402_CHAINS={','.join(cfg.chains)})")
    return cfg.chains[name]


def _canonical_tx(chain: str, tx: str) -> str | None:
    from verifier.addresses import canonical_tx_id

    try:
        return canonical_tx_id(chain, tx)
    except ValueError:
        return None


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=_json_default, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x402-verifier",
        description="Verifies USDC payments for pay-per-request APIs and records them in PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run the daemon (watchers, claim workers, scheduled jobs)")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.add_argument("--dry-run", action="store_true", help="list what would be applied")
    p.set_defaults(func=_cmd_migrate)
    p = sub.add_parser("verify", help="look one transaction up on chain and print its verdict")
    p.add_argument("--chain", required=True, choices=config_mod.SUPPORTED_CHAINS)
    p.add_argument("--tx", required=True, help="transaction hash (EVM) or signature (Solana)")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser(
        "claim", help="claim a payment for a client-made token hash and proof; submit, wait",
        description="With --token-hash and --proof: submits the claim a client made (the client "
                    "keeps the token; see README, Claim proofs) and prints its verdict. Without "
                    "--token-hash: makes a token here and prints it once when issued; only of use "
                    "with X402_CLAIM_PROOF=none, since a payer cannot have signed a token hash "
                    "made here.")
    p.add_argument("--chain", required=True)
    p.add_argument("--tx", required=True)
    p.add_argument("--token-hash", help="SHA-256 of the client's token, 64 lowercase hex")
    p.add_argument("--proof", help="the payer's signature over the claim message for that token "
                                   "hash (0x-hex, base64; Solana: base58); needs --token-hash")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the verdict")
    p.set_defaults(func=_cmd_claim)
    p = sub.add_parser("status", help="heads, cursors, lag, pending payments, waiting claims, "
                                      "last job runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("jobs", help="scheduled maintenance jobs")
    jobs_sub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jobs_sub.add_parser("run", help="run one job once, under its lock (for cron or timers)")
    p.add_argument("job", choices=("cleanup", "analytics", "retention"))
    p.add_argument("--hour", type=_hour, help="analytics: the hour to (re)compute, ISO 8601, "
                                              "UTC unless it says otherwise")
    p.set_defaults(func=_cmd_jobs)
    p = sub.add_parser("doctor", help="check configuration, database, migrations and every RPC")
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every command logs through the scrubbing set-up (to stderr), even those that read no
    # configuration (doctor, status): what an RPC client logs never carries a credential.
    from verifier import logs

    fmt = os.environ.get("X402_LOG_FORMAT", "auto")
    logs.configure(fmt if fmt in ("auto", "json", "console") else "auto")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return EXIT_USAGE
    except DatabaseError as exc:
        # Every statement goes through verifier.store, which raises only DatabaseError: one line.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(f"database error: {detail}")
        return EXIT_FAILURE
    except VerifierError as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug: its traceback, scrubbed like any log line
        import traceback

        print(redact.scrub(traceback.format_exc()), file=sys.stderr, end="")
        return EXIT_FAILURE


def _fail(message: str) -> None:
    print(f"x402-verifier: {redact.scrub(message)}", file=sys.stderr)
