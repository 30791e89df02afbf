#!/usr/bin/env python3
"""Applies pending migrations (the same code as `x402-verifier migrate`).

Usage: python scripts/run_migrations.py [--dry-run]
Uses DATABASE_URL, or the embedded PostgreSQL under var/ when it is unset.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["migrate", *sys.argv[1:]]))
