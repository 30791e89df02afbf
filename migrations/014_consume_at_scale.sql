-- 014: verifier.consume_request() at scale: fewer writes per request, and a token used by many
-- clients at once no longer waits for one row lock per commit.
--
--   * Fewer writes: x402_tokens.last_used_at is written at most once a second per token (a
--     request within the second after the last write leaves it), so a request writes its
--     allocation and its usage row, not three rows.
--   * Slots: a payment's allocation may be split into rows of verifier.request_slots. A call
--     first takes the payment row itself if nobody holds it (FOR UPDATE SKIP LOCKED); else a
--     slot with requests left that nobody holds (SKIP LOCKED); else it waits for the payment
--     row and moves up to 32 more requests into a slot besides its own (a refill); else, when
--     the payment has nothing left to move, it waits for a slot with requests left. The payment
--     row is only ever locked FOR NO KEY UPDATE, which the foreign-key check of a usage row
--     (FOR KEY SHARE) does not wait for. While the
--     row lock of one commit is held, the other clients take other rows: their commits are
--     flushed together.
--   * Exact: every allowed request either adds one to x402_payments.requests_used under that
--     row's lock (the CHECK and the WHERE keep it <= requests_allocated) or takes one from a
--     slot's requests_left under the slot's lock (CHECK >= 0); a slot's requests are added to
--     requests_used in the same transaction that creates them. So the requests allowed never
--     pass requests_allocated, whatever the interleaving.
--   * Merge: verifier.merge_request_slots(), run by the cleanup job before
--     cleanup_expired_x402_payments(), gives every slot's unused requests back to its payment
--     and deletes the slot. Until then a hot payment's requests_used counts the requests moved
--     into its slots (at most 32 per slot, one slot per client that was at it at once) and its
--     status may read 'used' while
--     slots still hold some: requests are still served from the slots.
--
-- consume_request's body is 003's with these changes (answers and reasons unchanged), and with
-- what 008 and 010 changed in it where those ran first (see the DO block).

CREATE TABLE IF NOT EXISTS verifier.request_slots (
    payment_id     BIGINT NOT NULL,  -- no foreign key: the 002 rollback drops x402_payments
    slot           INTEGER NOT NULL CHECK (slot > 0),
    requests_left  BIGINT NOT NULL CHECK (requests_left >= 0),
    PRIMARY KEY (payment_id, slot)
);
-- Rows come and go: narrow, updated in place (HOT: no index on requests_left).
ALTER TABLE verifier.request_slots SET (fillfactor = 50);

COMMENT ON TABLE verifier.request_slots IS
    'Requests of a payment moved out of x402_payments.requests_used for concurrent callers of one '
    'token; given back by cleanup_expired_x402_payments()';

-- The body is written once, here, and created by the DO block below with what the migrations
-- before this one made of the function: where 008 (least privilege) ran, it stays SECURITY
-- DEFINER, owned by x402_owner, with pg_temp last in its search_path, and logs its fields capped
-- with verifier.clip_bytes(); else it runs as its caller, as 003 made it. 010's answer for a
-- token revoked by a reorg (payment_reorged, from its claim) is in the body either way.
DO $do$
DECLARE
    v_definer  BOOLEAN;
    v_owner    TEXT;
    v_caps     BOOLEAN := to_regprocedure('verifier.clip_bytes(text,integer)') IS NOT NULL;
    v_body     TEXT := $body$
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
@SECURITY@
SET search_path = @SEARCH_PATH@
AS $fn$
DECLARE
    c_refill      CONSTANT BIGINT := 32;  -- requests a refill moves into a slot, at most
    v_token       RECORD;
    v_payment     RECORD;
    v_got         BOOLEAN;
    v_slot        INTEGER;
    v_moved       BIGINT;
    v_remaining   BIGINT;
    v_in_slots    BIGINT;
    v_pid         BIGINT;
    v_last_used   TIMESTAMPTZ;
    v_round       INTEGER := 0;
BEGIN
    IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
        RETURN QUERY SELECT false, 0::BIGINT, 'malformed_token'::TEXT;
        RETURN;
    END IF;

    -- 1. The payment row, if nobody holds it: locked (SKIP LOCKED) together with the token's
    --    check, then updated by key (the common case: two statements and the usage row). The
    --    lock is taken first and alone: a locking subquery inside the UPDATE could lock a newer
    --    version than the one the UPDATE saw, and deadlock.
    SELECT t.payment_id, t.last_used_at INTO v_pid, v_last_used
      FROM x402_tokens t JOIN x402_payments p ON p.id = t.payment_id
     WHERE t.token_hash = p_token_hash
       AND t.expires_at > now()
       AND p.status = 'verified'
       AND p.expires_at > now()
       AND p.requests_used < p.requests_allocated
       FOR NO KEY UPDATE OF p SKIP LOCKED;
    IF v_pid IS NOT NULL THEN
        UPDATE x402_payments p
           SET requests_used = p.requests_used + 1,
               status = CASE WHEN p.requests_used + 1 = p.requests_allocated
                             THEN 'used' ELSE p.status END
         WHERE p.id = v_pid
        RETURNING p.requests_allocated - p.requests_used
                  + coalesce((SELECT sum(r.requests_left) FROM verifier.request_slots r
                               WHERE r.payment_id = p.id), 0)
             INTO v_remaining;
    END IF;

    IF v_pid IS NULL THEN
        SELECT t.payment_id, t.expires_at, t.last_used_at INTO v_token
          FROM x402_tokens t WHERE t.token_hash = p_token_hash;
        IF NOT FOUND THEN
            -- 010: a token revoked by a reorg is gone, but its claim says so.
            IF EXISTS (SELECT 1 FROM verifier.claims c
                        WHERE c.token_hash = p_token_hash AND c.status = 'revoked') THEN
                RETURN QUERY SELECT false, 0::BIGINT, 'payment_reorged'::TEXT;
                RETURN;
            END IF;
            RETURN QUERY SELECT false, 0::BIGINT, 'unknown_token'::TEXT;
            RETURN;
        END IF;
        v_pid := v_token.payment_id;
        v_last_used := v_token.last_used_at;
    END IF;

    LOOP
        EXIT WHEN v_remaining IS NOT NULL;  -- taken by 1. above
        v_round := v_round + 1;
        v_got := false;
        IF v_token.expires_at > now() AND v_round > 1 THEN
            -- 1. again, after a wait.
            PERFORM 1 FROM x402_payments q
             WHERE q.id = v_pid
               AND q.status = 'verified'
               AND q.expires_at > now()
               AND q.requests_used < q.requests_allocated
               FOR NO KEY UPDATE SKIP LOCKED;
            IF FOUND THEN
                UPDATE x402_payments p
                   SET requests_used = p.requests_used + 1,
                       status = CASE WHEN p.requests_used + 1 = p.requests_allocated
                                     THEN 'used' ELSE p.status END
                 WHERE p.id = v_pid;
                v_got := true;
            END IF;
        END IF;
        IF v_token.expires_at > now() THEN
            -- 2. A slot with requests left that nobody holds, of a payment still good.
            IF NOT v_got THEN
                SELECT r.slot INTO v_slot FROM verifier.request_slots r
                 WHERE r.payment_id = v_pid AND r.requests_left > 0
                   AND EXISTS (SELECT 1 FROM x402_payments p
                                WHERE p.id = r.payment_id
                                  AND p.status IN ('verified', 'used')
                                  AND p.expires_at > now())
                 LIMIT 1
                   FOR UPDATE OF r SKIP LOCKED;
                IF FOUND THEN
                    UPDATE verifier.request_slots s
                       SET requests_left = s.requests_left - 1
                     WHERE s.payment_id = v_pid AND s.slot = v_slot;
                    v_got := true;
                END IF;
            END IF;

            -- 3. A refill: wait for the payment row, take one request and move up to c_refill
            --    more into a slot (an empty one nobody holds, else a new one). Refills and the
            --    merge hold the payment row, so slot numbers never collide.
            IF NOT v_got THEN
                SELECT p.requests_allocated - p.requests_used - 1 AS spare INTO v_payment
                  FROM x402_payments p
                 WHERE p.id = v_token.payment_id
                   AND p.status = 'verified'
                   AND p.expires_at > now()
                   AND p.requests_used < p.requests_allocated
                   FOR NO KEY UPDATE;
                IF FOUND THEN
                    v_moved := least(c_refill, v_payment.spare);
                    UPDATE x402_payments p
                       SET requests_used = p.requests_used + 1 + v_moved,
                           status = CASE WHEN p.requests_used + 1 + v_moved = p.requests_allocated
                                         THEN 'used' ELSE p.status END
                     WHERE p.id = v_token.payment_id;
                    IF v_moved > 0 THEN
                        SELECT r.slot INTO v_slot FROM verifier.request_slots r
                         WHERE r.payment_id = v_pid AND r.requests_left = 0
                         LIMIT 1
                           FOR UPDATE SKIP LOCKED;
                        IF FOUND THEN
                            UPDATE verifier.request_slots s
                               SET requests_left = v_moved
                             WHERE s.payment_id = v_pid AND s.slot = v_slot;
                        ELSE
                            INSERT INTO verifier.request_slots (payment_id, slot, requests_left)
                            SELECT v_token.payment_id, coalesce(max(r.slot), 0) + 1, v_moved
                              FROM verifier.request_slots r
                             WHERE r.payment_id = v_token.payment_id;
                        END IF;
                    END IF;
                    v_got := true;
                END IF;
            END IF;
        END IF;
        EXIT WHEN v_got;

        -- Nothing could be taken without waiting for a slot: is anything left at all?
        SELECT p.status, p.expires_at, p.requests_allocated, p.requests_used INTO v_payment
          FROM x402_payments p WHERE p.id = v_token.payment_id;
        IF NOT FOUND THEN  -- deleted meanwhile, with its token
            RETURN QUERY SELECT false, 0::BIGINT, 'unknown_token'::TEXT;
            RETURN;
        END IF;
        SELECT coalesce(sum(r.requests_left), 0) INTO v_in_slots
          FROM verifier.request_slots r WHERE r.payment_id = v_token.payment_id;

        IF v_in_slots = 0 OR v_token.expires_at <= now() OR v_payment.expires_at <= now()
           OR v_payment.status NOT IN ('verified', 'used') THEN
            RETURN QUERY SELECT
                false,
                greatest(v_payment.requests_allocated - v_payment.requests_used + v_in_slots,
                         0)::BIGINT,
                CASE
                    WHEN v_payment.status = 'reorged' THEN 'payment_reorged'
                    WHEN v_payment.status = 'expired' OR v_payment.expires_at <= now()
                         OR v_token.expires_at <= now() THEN 'expired'
                    WHEN v_payment.status = 'used'
                         OR v_payment.requests_used >= v_payment.requests_allocated
                        THEN 'exhausted'
                    ELSE 'payment_not_verified'
                END;
            RETURN;
        END IF;

        -- 4. Every slot with requests left is held: wait for one, re-checked after its lock.
        UPDATE verifier.request_slots s
           SET requests_left = s.requests_left - 1
         WHERE s.payment_id = v_token.payment_id
           AND s.slot = (SELECT r.slot FROM verifier.request_slots r
                          WHERE r.payment_id = v_token.payment_id AND r.requests_left > 0
                          ORDER BY r.slot LIMIT 1)
           AND s.requests_left > 0;
        EXIT WHEN FOUND;
    END LOOP;

    -- Allowed. The token's last use, to the second: one write a second at most, not one a call.
    IF v_last_used IS NULL OR v_last_used < now() - interval '1 second' THEN
        UPDATE x402_tokens t SET last_used_at = now()
         WHERE t.token_hash = p_token_hash
           AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 second');
    END IF;
    INSERT INTO x402_usage (payment_id, endpoint, method, status_code, response_time_ms,
                            ip_address, user_agent)
    VALUES (v_pid, @ENDPOINT@, @METHOD@, p_status_code, p_response_time_ms,
            p_ip_address, @USER_AGENT@);

    -- What is left as this call sees it (under concurrent callers of one token, a snapshot).
    IF v_round > 0 THEN
        SELECT p.requests_allocated - p.requests_used
               + coalesce((SELECT sum(r.requests_left) FROM verifier.request_slots r
                            WHERE r.payment_id = p.id), 0)
          INTO v_remaining
          FROM x402_payments p WHERE p.id = v_pid;
    END IF;
    RETURN QUERY SELECT true, greatest(v_remaining, 0)::BIGINT, NULL::TEXT;
END;
$fn$
$body$;
BEGIN
    SELECT p.prosecdef, pg_catalog.pg_get_userbyid(p.proowner) INTO v_definer, v_owner
      FROM pg_catalog.pg_proc p
     WHERE p.oid = 'verifier.consume_request(text,text,text,integer,integer,inet,text)'
                   ::regprocedure;
    v_body := replace(v_body, '@SECURITY@',
                      CASE WHEN v_definer THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END);
    v_body := replace(v_body, '@SEARCH_PATH@', CASE WHEN v_definer
                      THEN 'pg_catalog, public, pg_temp' ELSE 'pg_catalog, public' END);
    -- 008's caps: endpoint and user agent 1,024 bytes, method 10 characters, NULL stored empty.
    v_body := replace(v_body, '@ENDPOINT@', CASE WHEN v_caps
                      THEN 'verifier.clip_bytes(coalesce(p_endpoint, ''''), 1024)'
                      ELSE 'p_endpoint' END);
    v_body := replace(v_body, '@METHOD@', CASE WHEN v_caps
                      THEN 'left(coalesce(p_method, ''''), 10)' ELSE 'p_method' END);
    v_body := replace(v_body, '@USER_AGENT@', CASE WHEN v_caps
                      THEN 'verifier.clip_bytes(p_user_agent, 1024)' ELSE 'p_user_agent' END);
    EXECUTE v_body;  -- CREATE OR REPLACE keeps the owner and the grants

    IF v_definer THEN
        -- 008: the owner holds what the body uses; x402_api holds no table at all.
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON verifier.request_slots TO %I', v_owner);
    ELSE
        -- 006: the function runs as its caller (x402_api, x402_daemon).
        GRANT SELECT, INSERT, UPDATE ON verifier.request_slots TO x402_api;
        GRANT SELECT (last_used_at) ON x402_tokens TO x402_api;
    END IF;
END;
$do$;

COMMENT ON FUNCTION verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT) IS
    'Checks a token and takes one paid request atomically (from its payment or one of its '
    'slots); returns (allowed, requests_remaining, reason)';

-- verifier.merge_request_slots(): gives every slot's unused requests back to its payment and
-- deletes the slot (slots someone holds are left for the next run); the cleanup job runs it
-- just before cleanup_expired_x402_payments(). Returns the number of slots merged. (Not in
-- public, and not in 002's cleanup function: the 002 rollback re-creates that one.)
CREATE OR REPLACE FUNCTION verifier.merge_request_slots()
RETURNS INTEGER
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_payment  BIGINT;
    v_back     BIGINT;
    v_slots    INTEGER;
    v_merged   INTEGER := 0;
    v_free     INTEGER[];
BEGIN
    FOR v_payment IN SELECT DISTINCT r.payment_id FROM verifier.request_slots r LOOP
        -- The payment row first, as a refill does: no new slot appears meanwhile.
        PERFORM 1 FROM x402_payments p WHERE p.id = v_payment FOR NO KEY UPDATE;
        IF NOT FOUND THEN  -- the payment is gone
            DELETE FROM verifier.request_slots r WHERE r.payment_id = v_payment;
            CONTINUE;
        END IF;
        -- Locked first and alone (SKIP LOCKED: a slot in use is merged next time), then deleted.
        SELECT array_agg(q.slot) INTO v_free FROM (
            SELECT q.slot FROM verifier.request_slots q
             WHERE q.payment_id = v_payment
               FOR UPDATE SKIP LOCKED) q;
        WITH gone AS (
            DELETE FROM verifier.request_slots r
             WHERE r.payment_id = v_payment AND r.slot = ANY(v_free)
            RETURNING r.requests_left
        )
        SELECT coalesce(sum(requests_left), 0), count(*) INTO v_back, v_slots FROM gone;
        v_merged := v_merged + v_slots;
        IF v_back > 0 THEN
            UPDATE x402_payments p
               SET requests_used = p.requests_used - v_back,
                   status = CASE WHEN p.status = 'used' THEN 'verified' ELSE p.status END
             WHERE p.id = v_payment;
        END IF;
    END LOOP;
    RETURN v_merged;
END;
$$;

REVOKE EXECUTE ON FUNCTION verifier.merge_request_slots() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION verifier.merge_request_slots() TO x402_daemon;

GRANT SELECT, INSERT, UPDATE, DELETE ON verifier.request_slots TO x402_daemon;
