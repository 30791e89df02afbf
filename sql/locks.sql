-- Advisory locks (verifier/store/locks.py), always the two-key form (402, key). The keys are
-- defined once, in verifier/store/locks.py (LOCK_KEYS); every statement takes the key as a
-- parameter.

-- name: try_lock
SELECT pg_try_advisory_lock(402, %(key)s) AS locked

-- name: lock
SELECT pg_advisory_lock(402, %(key)s)

-- name: unlock
SELECT pg_advisory_unlock(402, %(key)s) AS unlocked

-- name: try_xact_lock
SELECT pg_try_advisory_xact_lock(402, %(key)s) AS locked
