-- 008: least privilege that holds.
--
--   * The API functions (verifier.submit_claim, verifier.consume_request, verifier.claim_status)
--     run as SECURITY DEFINER, owned by x402_owner, a role that cannot log in and holds only
--     the privileges those bodies use, never ownership of a table; search_path is pinned with
--     pg_temp last. x402_api keeps EXECUTE on them and nothing else: no table, no column.
--   * x402_readonly reads the four views and x402_payments (no token hash there), nothing else.
--   * Leadership (one watcher per chain, one run of a job at a time) moves from advisory locks,
--     which any login may take, to verifier.leases, which only x402_daemon may write or lock.
--   * The claim workers listen on a channel whose name only the daemon can read: anyone may
--     NOTIFY x402_claims, and it wakes no worker.
--   * consume_request caps what it logs: endpoint and user agent at 1,024 bytes, method at 10
--     characters (truncated, whole characters; never an error).
--
-- Run as the schema's owner, like every migration. Creating x402_owner needs CREATEROLE (or a
-- DBA runs `CREATE ROLE x402_owner NOLOGIN; GRANT x402_owner TO <migrating role>;` first):
-- the migrating role must be a member of x402_owner to hand the functions over now and to
-- replace them in later migrations.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'x402_owner') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                        WHERE rolname = current_user AND (rolcreaterole OR rolsuper)) THEN
            RAISE EXCEPTION 'role x402_owner does not exist and % may not create it', current_user
                USING HINT = 'Run the migrations as a role with CREATEROLE, or have a DBA run '
                             'CREATE ROLE x402_owner NOLOGIN; GRANT x402_owner TO '
                             || quote_ident(current_user) || '; first.';
        END IF;
        CREATE ROLE x402_owner NOLOGIN;
        COMMENT ON ROLE x402_owner IS
            'x402-verifier: owns the API functions (SECURITY DEFINER); holds only what they use';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, 'x402_owner', 'USAGE') THEN
        BEGIN
            EXECUTE format('GRANT x402_owner TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION '% is not a member of x402_owner and may not grant it', current_user
                USING HINT = 'Have a DBA run GRANT x402_owner TO ' || quote_ident(current_user)
                             || '; first.';
        END;
    END IF;
END;
$$;

-- The leases ------------------------------------------------------------------------------------

-- One row per thing only one daemon may do at a time. A watcher holds 'watch:<chain>' while
-- expires_at is in the future and the session that took it (backend_pid, started at
-- backend_start) is alive; it renews the lease after every step. A job locks its row
-- (FOR UPDATE) for its run. Locking a row needs UPDATE on the table: only x402_daemon has it.
CREATE TABLE IF NOT EXISTS verifier.leases (
    name           TEXT PRIMARY KEY CHECK (name ~ '^(watch|job):[a-z]+$'),
    holder         TEXT NOT NULL DEFAULT '',
    expires_at     TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    renewed_at     TIMESTAMPTZ,
    backend_pid    INTEGER,
    backend_start  TIMESTAMPTZ
);

INSERT INTO verifier.leases (name)
VALUES ('watch:base'), ('watch:ethereum'), ('watch:solana'),
       ('job:cleanup'), ('job:analytics'), ('job:retention')
ON CONFLICT (name) DO NOTHING;

COMMENT ON TABLE verifier.leases IS
    'Leadership: the daemon instance watching each chain (until expires_at), and the job locks';

-- The claim workers' wake-up channel ---------------------------------------------------------

-- Any login may NOTIFY any channel: PostgreSQL has no privilege for it. So the workers listen on
-- a channel drawn at random here, whose name only x402_daemon and x402_owner can read, and a
-- trigger announces each new claim on it. (submit_claim's own NOTIFY x402_claims now reaches
-- nobody: a notification there, by anyone, wakes no worker.)
CREATE TABLE IF NOT EXISTS verifier.claim_channel (
    one      BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    channel  TEXT NOT NULL CHECK (channel ~ '^x402_claims_[0-9a-f]{32}$')
);

INSERT INTO verifier.claim_channel (channel)
VALUES ('x402_claims_' || replace(gen_random_uuid()::text, '-', ''))
ON CONFLICT (one) DO NOTHING;

COMMENT ON TABLE verifier.claim_channel IS
    'The secret LISTEN channel on which new claims wake the workers';

CREATE OR REPLACE FUNCTION verifier.claims_announce()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify(c.channel, NEW.id::text) FROM verifier.claim_channel c;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS claims_announce ON verifier.claims;
CREATE TRIGGER claims_announce AFTER INSERT ON verifier.claims
    FOR EACH ROW EXECUTE FUNCTION verifier.claims_announce();

-- consume_request, with its log fields capped ------------------------------------------------

-- The longest prefix of p_text of at most p_bytes bytes (UTF-8), cut between characters.
CREATE OR REPLACE FUNCTION verifier.clip_bytes(p_text TEXT, p_bytes INTEGER)
RETURNS TEXT
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v TEXT := left(p_text, p_bytes);  -- every character is at least one byte
BEGIN
    WHILE octet_length(v) > p_bytes LOOP
        -- a character is at most 4 bytes: dropping a quarter of the excess never overshoots
        v := left(v, length(v) - greatest(1, (octet_length(v) - p_bytes) / 4));
    END LOOP;
    RETURN v;
END;
$$;

CREATE OR REPLACE FUNCTION verifier.consume_request(
    p_token_hash        TEXT,
    p_endpoint          TEXT,
    p_method            TEXT,
    p_status_code       INTEGER,
    p_response_time_ms  INTEGER DEFAULT NULL,
    p_ip_address        INET DEFAULT NULL,
    p_user_agent        TEXT DEFAULT NULL
)
RETURNS TABLE (allowed BOOLEAN, requests_remaining BIGINT, reason TEXT)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_payment_id  BIGINT;
    v_remaining   BIGINT;
    v_token       RECORD;
    v_payment     RECORD;
BEGIN
    IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
        RETURN QUERY SELECT false, 0::BIGINT, 'malformed_token'::TEXT;
        RETURN;
    END IF;

    UPDATE x402_payments p
       SET requests_used = p.requests_used + 1,
           status = CASE WHEN p.requests_used + 1 = p.requests_allocated
                         THEN 'used' ELSE p.status END
      FROM x402_tokens t
     WHERE t.token_hash = p_token_hash
       AND t.payment_id = p.id
       AND t.expires_at > now()
       AND p.status = 'verified'
       AND p.expires_at > now()
       AND p.requests_used < p.requests_allocated
    RETURNING p.id, p.requests_allocated - p.requests_used
         INTO v_payment_id, v_remaining;

    IF v_payment_id IS NOT NULL THEN
        UPDATE x402_tokens SET last_used_at = now() WHERE token_hash = p_token_hash;
        -- Log fields never decide anything: too long is cut (x402_usage's covering index
        -- holds the endpoint, whose entries cannot pass about 2.7 kB), NULL is stored empty.
        INSERT INTO x402_usage (payment_id, endpoint, method, status_code, response_time_ms,
                                ip_address, user_agent)
        VALUES (v_payment_id, verifier.clip_bytes(coalesce(p_endpoint, ''), 1024),
                left(coalesce(p_method, ''), 10), p_status_code, p_response_time_ms,
                p_ip_address, verifier.clip_bytes(p_user_agent, 1024));
        RETURN QUERY SELECT true, v_remaining, NULL::TEXT;
        RETURN;
    END IF;

    SELECT t.payment_id, t.expires_at INTO v_token
      FROM x402_tokens t WHERE t.token_hash = p_token_hash;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 0::BIGINT, 'unknown_token'::TEXT;
        RETURN;
    END IF;

    SELECT p.status, p.expires_at, p.requests_allocated, p.requests_used INTO v_payment
      FROM x402_payments p WHERE p.id = v_token.payment_id;

    RETURN QUERY SELECT
        false,
        greatest(v_payment.requests_allocated - v_payment.requests_used, 0)::BIGINT,
        CASE
            WHEN v_payment.status = 'reorged' THEN 'payment_reorged'
            WHEN v_payment.status = 'expired' OR v_payment.expires_at <= now()
                 OR v_token.expires_at <= now() THEN 'expired'
            WHEN v_payment.status = 'used'
                 OR v_payment.requests_used >= v_payment.requests_allocated THEN 'exhausted'
            ELSE 'payment_not_verified'
        END;
END;
$$;

-- What an API server waits for: a claim's status and reason, by its id.
CREATE OR REPLACE FUNCTION verifier.claim_status(p_claim_id BIGINT)
RETURNS TABLE (status TEXT, reason TEXT)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT c.status, c.reason FROM verifier.claims c WHERE c.id = p_claim_id
$$;

COMMENT ON FUNCTION verifier.claim_status(BIGINT) IS
    'A claim''s (status, reason) by its id: what an API server reads while it waits';

-- The API functions: run as x402_owner, with a search_path no caller can steer. ALTER, not a
-- new body, for submit_claim: its body is another migration's.
ALTER FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT)
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;

-- A new owner needs CREATE on the schema at the moment it takes a function over, not after.
GRANT USAGE, CREATE ON SCHEMA verifier TO x402_owner;
ALTER FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT) OWNER TO x402_owner;
ALTER FUNCTION verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT)
    OWNER TO x402_owner;
ALTER FUNCTION verifier.claim_status(BIGINT) OWNER TO x402_owner;
REVOKE CREATE ON SCHEMA verifier FROM x402_owner;

-- What those bodies use, and only that. Reading is by whole table (a later body may read
-- another column); writing is by column.
GRANT SELECT ON verifier.claims, verifier.claim_channel, x402_payments, x402_tokens
    TO x402_owner;
GRANT INSERT (chain, tx_hash, token_hash, proof) ON verifier.claims TO x402_owner;
GRANT UPDATE (status, requests_used) ON x402_payments TO x402_owner;
GRANT UPDATE (last_used_at) ON x402_tokens TO x402_owner;
GRANT INSERT (payment_id, endpoint, method, status_code, response_time_ms, ip_address, user_agent)
    ON x402_usage TO x402_owner;
GRANT EXECUTE ON FUNCTION verifier.clip_bytes(TEXT, INTEGER) TO x402_owner;

-- Functions are executable by PUBLIC unless revoked.
REVOKE EXECUTE ON FUNCTION verifier.claim_status(BIGINT) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION verifier.clip_bytes(TEXT, INTEGER) FROM PUBLIC;
-- A trigger fires whatever EXECUTE says; nobody needs to call one.
REVOKE EXECUTE ON FUNCTION verifier.payments_before_write() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION verifier.claims_announce() FROM PUBLIC;

-- x402_api: EXECUTE on its functions, no table or column privilege at all ---------------------

REVOKE ALL ON ALL TABLES IN SCHEMA verifier FROM x402_api;  -- column privileges go with it
REVOKE ALL ON x402_payments, x402_tokens, x402_usage, x402_analytics FROM x402_api;
GRANT EXECUTE ON FUNCTION verifier.claim_status(BIGINT) TO x402_api;

-- x402_readonly: the views and the payments ---------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA verifier FROM x402_readonly;
REVOKE ALL ON x402_tokens, x402_usage, x402_analytics FROM x402_readonly;
GRANT SELECT ON x402_payments TO x402_readonly;

-- x402_daemon: the leases, and the claim status for `x402-verifier claim` ---------------------

GRANT SELECT, INSERT, UPDATE ON verifier.leases TO x402_daemon;
GRANT SELECT ON verifier.claim_channel TO x402_daemon;
GRANT EXECUTE ON FUNCTION verifier.claim_status(BIGINT) TO x402_daemon;
