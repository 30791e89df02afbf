-- Named queries of the scheduled jobs (verifier/store/jobs.py). Parameters only.
-- Each run holds its job's transaction-level advisory lock (sql/locks.sql: try_xact_lock).

-- name: slot_done
SELECT EXISTS (
    SELECT 1 FROM verifier.job_runs
     WHERE job = %(job)s AND slot = %(slot)s AND status = 'ok'
) AS done

-- name: record_run
INSERT INTO verifier.job_runs (job, slot, status, detail, instance, started_at, finished_at)
VALUES (%(job)s, %(slot)s, %(status)s, %(detail)s, %(instance)s, %(started_at)s, %(finished_at)s)

-- name: merge_request_slots
-- Unused requests of the slots of hot tokens back to their payments (migration 014).
SELECT verifier.merge_request_slots() AS merged

-- name: cleanup
SELECT cleanup_expired_x402_payments() AS expired

-- name: prune_job_runs
DELETE FROM verifier.job_runs WHERE started_at < %(before)s

-- name: prune_claims
-- Decided claims older than X402_CLAIM_RETENTION_DAYS. A claim whose token is still in
-- x402_tokens stays (a TTL longer than the retention); a revoked claim, the tombstone of a
-- reorged payment's token, goes once it is that old (consume then says unknown_token).
DELETE FROM verifier.claims c
 WHERE c.status <> 'waiting'
   AND c.decided_at < %(before)s
   AND NOT EXISTS (SELECT 1 FROM x402_tokens t WHERE t.token_hash = c.token_hash)

-- name: missing_analytics_hours
-- The whole UTC hours of the window [hour of %(now)s - %(hours)s hours, hour of %(now)s) for
-- which x402_analytics lacks the row of at least one chain (update_x402_analytics() writes one
-- per chain, zeros included). The hour %(now)s falls in is unfinished and never listed.
SELECT h.hour
  FROM generate_series(
           date_trunc('hour', %(now)s::timestamptz, 'UTC') - %(hours)s::int * interval '1 hour',
           date_trunc('hour', %(now)s::timestamptz, 'UTC') - interval '1 hour',
           interval '1 hour') AS h (hour)
 WHERE (SELECT count(*) FROM x402_analytics a WHERE a.hour_bucket = h.hour)
       < %(chains)s::int  -- one row per supported chain
 ORDER BY h.hour

-- name: update_analytics
SELECT update_x402_analytics(%(hour)s::timestamptz)

-- name: archive_usage_batch
-- Moves up to %(batch)s usage rows created before %(before)s, oldest first, in one short
-- statement (its own transaction). SKIP LOCKED: a row someone holds is taken next time. No
-- ON CONFLICT: a clash aborts the batch, so a row is never deleted without being archived.
WITH picked AS (
    SELECT id FROM x402_usage
     WHERE created_at < %(before)s
     ORDER BY created_at, id
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM x402_usage u USING picked
     WHERE u.id = picked.id
    RETURNING u.id, u.payment_id, u.endpoint, u.method, u.status_code, u.response_time_ms,
              u.ip_address, u.user_agent, u.created_at
), archived AS (
    INSERT INTO verifier.x402_usage_archive (
        id, payment_id, endpoint, method, status_code, response_time_ms, ip_address,
        user_agent, created_at)
    SELECT id, payment_id, endpoint, method, status_code, response_time_ms, ip_address,
           user_agent, created_at
      FROM moved
    RETURNING 1
)
SELECT count(*) AS moved FROM archived
