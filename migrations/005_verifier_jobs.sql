-- 005: scheduled jobs. verifier.job_runs records every run (ok, skipped or failed) so that
-- `x402-verifier status` can show the last ones; verifier.x402_usage_archive receives the
-- x402_usage rows older than X402_USAGE_RETENTION_DAYS.
--
-- Both live in schema "verifier" so that the migration guide's checks (public tables LIKE
-- 'x402_%', functions LIKE '%x402%') still list only the guide's objects. Nothing here
-- references a public object, so the 002 rollback can still drop and recreate those.

CREATE TABLE IF NOT EXISTS verifier.job_runs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          TEXT NOT NULL CHECK (job IN ('cleanup', 'analytics', 'retention')),
    -- The scheduled fire time the run belongs to; NULL for a run started by hand
    -- (`x402-verifier jobs run`).
    slot         TIMESTAMPTZ,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'skipped', 'failed')),
    detail       JSONB NOT NULL DEFAULT '{}'::jsonb,
    instance     TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT job_runs_finished_check CHECK (finished_at >= started_at)
);

-- Several daemons fire the same schedule: one successful run per job and fire time, enforced
-- here as well as checked under the job's advisory lock.
CREATE UNIQUE INDEX IF NOT EXISTS job_runs_once_per_slot
    ON verifier.job_runs (job, slot) WHERE status = 'ok' AND slot IS NOT NULL;
-- `status`: the last runs of each job.
CREATE INDEX IF NOT EXISTS job_runs_recent ON verifier.job_runs (job, started_at DESC);

-- Same columns as x402_usage, plus when the row was moved. No foreign key: an archived row
-- outlives nothing and must not block deleting a payment.
CREATE TABLE IF NOT EXISTS verifier.x402_usage_archive (
    id                BIGINT PRIMARY KEY,
    payment_id        BIGINT NOT NULL,
    endpoint          TEXT NOT NULL,
    method            VARCHAR(10) NOT NULL,
    status_code       INTEGER NOT NULL,
    response_time_ms  INTEGER,
    ip_address        INET,
    user_agent        TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    archived_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS x402_usage_archive_created_at
    ON verifier.x402_usage_archive (created_at);

COMMENT ON TABLE verifier.job_runs IS
    'One row per scheduled-job run (cleanup, analytics, retention): ok, skipped or failed';
COMMENT ON TABLE verifier.x402_usage_archive IS
    'x402_usage rows older than X402_USAGE_RETENTION_DAYS, moved by the retention job';
