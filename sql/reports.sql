-- What reports on the daemon reads (verifier/store/reports.py: status, metrics, doctor).

-- name: chain_status
SELECT c.chain, max(c.position) AS position, max(c.updated_at) AS updated_at,
       (SELECT count(*) FROM x402_payments p
         WHERE p.chain = c.chain AND p.status = 'pending') AS pending_payments,
       (SELECT count(*) FROM verifier.claims w
         WHERE w.chain = c.chain AND w.status = 'waiting') AS waiting_claims
  FROM verifier.cursors c
 GROUP BY c.chain
 ORDER BY c.chain

-- name: last_job_runs
-- The newest run of each job, and when it last succeeded.
SELECT DISTINCT ON (r.job)
       r.job, r.status, r.slot, r.started_at, r.finished_at, r.detail, r.instance,
       (SELECT max(o.finished_at) FROM verifier.job_runs o
         WHERE o.job = r.job AND o.status = 'ok') AS last_ok_at
  FROM verifier.job_runs r
 ORDER BY r.job, r.started_at DESC, r.id DESC

-- name: payments_by_status
SELECT chain, status, count(*) AS n FROM x402_payments GROUP BY chain, status

-- name: claims_by_status
SELECT chain, status, count(*) AS n FROM verifier.claims GROUP BY chain, status

-- name: ping
SELECT 1

-- name: server_version
SELECT current_setting('server_version') AS version

-- name: quarantined
-- Solana transactions put aside (migration 009), the longest quarantined first.
SELECT chain, account, signature, slot, reason, error_code, attempts, first_seen, last_seen,
       next_retry_at
  FROM verifier.solana_quarantine
 ORDER BY first_seen, signature
 LIMIT 1000

-- name: quarantined_by_reason
SELECT chain, reason, count(*) AS n FROM verifier.solana_quarantine GROUP BY chain, reason
