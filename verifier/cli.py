"""The x402-verifier command line. Exit codes: 0 ok, 2 bad usage or configuration, 1 failure."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from verifier import config as config_mod
from verifier import db, migrate
from verifier.errors import ConfigError, VerifierError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = config_mod.load_database(os.environ)
    url = db.resolve_url(settings.database_url, settings.embedded_dir)
    migrate.run(url, dry_run=args.dry_run)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x402-verifier",
        description="Verifies USDC payments for pay-per-request APIs and records them in PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.add_argument("--dry-run", action="store_true", help="list what would be applied")
    p.set_defaults(func=_cmd_migrate)
    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add their sub-commands here (name -> registration function).
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"x402-verifier: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerifierError as exc:
        print(f"x402-verifier: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
