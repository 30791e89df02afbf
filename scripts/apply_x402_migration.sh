#!/usr/bin/env bash
# Applies the x402 schema (migrations/002_x402_payments.sql) to an existing PostgreSQL database,
# as the x402 migration guide describes: a pg_dump backup, the migration in one transaction,
# then the guide's verification queries.
#
# Usage: DATABASE_URL=postgresql://user:pass@host/db scripts/apply_x402_migration.sh [options]
#   --dry-run      change nothing: show the database's current state and what would be done
#   --skip-backup  do not take the pg_dump backup first
#   -h, --help     this text
# Environment: DATABASE_URL (required; a URL or a "key=value" connection string, passed whole),
#   BACKUP_DIR (default ./var/backups), PSQL and PG_DUMP (default psql, pg_dump: use client
#   programs of the server's major version or newer).
# Exit codes: 0 done, 1 failed (nothing applied unless the migration itself ran), 2 bad usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIGRATION="$ROOT/migrations/002_x402_payments.sql"
VERIFY="$ROOT/sql/operator/verify.sql"
PSQL="${PSQL:-psql}"
PG_DUMP="${PG_DUMP:-pg_dump}"
BACKUP_DIR="${BACKUP_DIR:-./var/backups}"

dry_run=0
skip_backup=0

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
say() { printf '%s\n' "$*"; }
fail() { printf 'apply_x402_migration: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --skip-backup) skip_backup=1 ;;
        -h|--help) usage; exit 0 ;;
        *) printf 'apply_x402_migration: unknown option %s\n' "$arg" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z "${DATABASE_URL:-}" ]]; then
    printf 'apply_x402_migration: DATABASE_URL is not set\n' >&2
    exit 2
fi
[[ -r "$MIGRATION" ]] || fail "cannot read $MIGRATION"

# The password never reaches the terminal: user:secret@ and password=secret are masked.
shown_url="$(printf '%s' "$DATABASE_URL" \
    | sed -E "s#(://[^:/@]*):[^@/]*@#\\1:***@#; s#(password=)('([^'\\\\]|\\\\.)*'|[^ &]*)#\\1***#")"

verify() {
    "$PSQL" "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -f "$VERIFY"
}

backup() {
    local file="$1"
    mkdir -p "$BACKUP_DIR"
    say "backing up to $file"
    # pg_dump's stderr goes to the terminal as it is; its exit status decides.
    if ! "$PG_DUMP" -Fc -d "$DATABASE_URL" -f "$file"; then
        rm -f "$file"
        fail "backup failed (pg_dump exited non-zero); nothing was applied"
    fi
    [[ -s "$file" ]] || { rm -f "$file"; fail "backup $file is empty; nothing was applied"; }
    say "backup written: $file ($(wc -c < "$file") bytes)"
}

backup_file="$BACKUP_DIR/x402_pre_migration_$(date -u +%Y%m%dT%H%M%SZ).dump"

if (( dry_run )); then
    say "dry run: nothing will be changed"
    say "database: $shown_url"
    say "current state:"
    rc=0
    verify || rc=$?
    case "$rc" in
        0) say "the x402 schema is already complete; applying again changes nothing that exists" ;;
        3) say "the x402 schema is not (fully) there yet" ;;
        *) fail "cannot query the database (psql exited $rc)" ;;
    esac
    if (( skip_backup )); then
        say "would skip the backup (--skip-backup)"
    else
        say "would back up with: $PG_DUMP -Fc -d <DATABASE_URL> -f $backup_file"
    fi
    say "would apply: $PSQL <DATABASE_URL> -v ON_ERROR_STOP=1 --single-transaction -f $MIGRATION"
    say "would then run the verification queries of $VERIFY"
    exit 0
fi

say "database: $shown_url"
if (( skip_backup )); then
    say "skipping the backup (--skip-backup)"
else
    backup "$backup_file"
fi

say "applying $MIGRATION in one transaction"
"$PSQL" "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$MIGRATION" \
    || fail "migration failed and was rolled back; the database is as it was"

say "verifying"
verify || fail "verification failed: the schema is not what the guide expects"
say "x402 schema applied"
