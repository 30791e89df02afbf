"""The one gateway to PostgreSQL: every statement the product runs is here, grouped by concern.

Each module has its own named .sql file under sql/: watch (cursors, payments, blocks, rewind),
claims (claim session, listen), jobs (job runs, cleanup, analytics, retention), reports (status,
metrics, doctor), ledger (the migration ledger), locks (leases and locks: who leads),
api (what an API server calls) and admin (embedded-server databases). psycopg errors are wrapped
once into verifier.errors.DatabaseError (store/errors.py); nothing above catches psycopg.
"""

from verifier.store.claims import Claim, ClaimSession, PaymentRow
from verifier.store.locks import JOB_LEASES, LOCK_KEYS, WATCH_LEASES, ChainLease
from verifier.store.watch import PendingPayment, SetAside, Store

__all__ = ["JOB_LEASES", "LOCK_KEYS", "WATCH_LEASES", "ChainLease", "Claim", "ClaimSession",
           "PaymentRow", "PendingPayment", "SetAside", "Store"]
