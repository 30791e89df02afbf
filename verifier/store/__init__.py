"""The one gateway to PostgreSQL: every statement the product runs is here, grouped by concern.

Each module has its own named .sql file under sql/: watch (cursors, payments, blocks, rewind),
claims (claim session, listen), jobs (job runs, cleanup, analytics, retention), reports (status,
metrics, doctor), ledger (the migration ledger), locks (advisory locks and their one key table),
api (what an API server calls) and admin (embedded-server databases). psycopg errors are wrapped
once into verifier.errors.DatabaseError (store/errors.py); nothing above catches psycopg.
"""

from verifier.store.claims import Claim, ClaimSession, PaymentRow
from verifier.store.locks import JOB_KEYS, LOCK_KEYS, WATCHER_LOCK, ChainLock
from verifier.store.watch import PendingPayment, SetAside, Store

__all__ = ["JOB_KEYS", "LOCK_KEYS", "WATCHER_LOCK", "ChainLock", "Claim", "ClaimSession",
           "PaymentRow", "PendingPayment", "SetAside", "Store"]
