-- Leadership (verifier/store/locks.py). Leases live in verifier.leases (migration 008), which
-- only x402_daemon may write or row-lock: no other login can take them. The migration runner
-- alone uses an advisory lock, the two-key form (402, key), its key defined once in
-- verifier/store/locks.py (LOCK_KEYS); it runs as the schema owner before any table exists.

-- name: lock
SELECT pg_advisory_lock(402, %(key)s)

-- name: unlock
SELECT pg_advisory_unlock(402, %(key)s) AS unlocked

-- name: take_lease
-- Takes the lease, or renews it for its holder. Another holder's lease is free once it has
-- expired or the session that took it has gone (another login's sessions show their pid but
-- not when they started: then the pid alone is compared).
INSERT INTO verifier.leases AS l (name, holder, expires_at, renewed_at, backend_pid,
                                  backend_start)
SELECT %(name)s, %(holder)s, now() + make_interval(secs => %(seconds)s), now(), a.pid,
       a.backend_start
  FROM pg_stat_activity a
 WHERE a.pid = pg_backend_pid()
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
       renewed_at = EXCLUDED.renewed_at, backend_pid = EXCLUDED.backend_pid,
       backend_start = EXCLUDED.backend_start
 WHERE l.holder = EXCLUDED.holder
    OR l.expires_at <= now()
    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                    WHERE a.pid = l.backend_pid
                      AND (a.backend_start IS NULL OR a.backend_start = l.backend_start))
RETURNING true AS held

-- name: release_lease
UPDATE verifier.leases SET expires_at = now() WHERE name = %(name)s AND holder = %(holder)s

-- name: try_job_lock
-- The job's row, locked until the run's transaction ends; nothing when another run holds it.
SELECT true AS locked FROM verifier.leases WHERE name = %(name)s FOR UPDATE SKIP LOCKED
