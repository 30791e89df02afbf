-- 010: the claim lifecycle.
--
--   * A claim whose token a reorg revoked becomes status 'revoked', reason 'payment_reorged'
--     (sql/watch.sql revoke_tokens), and stays as the tombstone of that token:
--     verifier.consume_request() answers payment_reorged for it instead of unknown_token, and
--     re-submitting the token hash returns the revoked claim.
--   * Decided claims are deleted by the cleanup job after X402_CLAIM_RETENTION_DAYS
--     (sql/jobs.sql prune_claims); the index below finds them by decision time.
--
-- consume_request's body is 008's (SECURITY DEFINER, owned by x402_owner, which may read
-- verifier.claims; log fields capped) with one change: the NOT FOUND branch looks for a revoked
-- claim. Nothing here touches a public (002) object, so the 002 rollback still works.

ALTER TABLE verifier.claims DROP CONSTRAINT IF EXISTS claims_status_check;
ALTER TABLE verifier.claims ADD CONSTRAINT claims_status_check
    CHECK (status IN ('waiting', 'issued', 'rejected', 'expired', 'revoked'));

-- The cleanup job's retention: decided claims by decision time.
CREATE INDEX IF NOT EXISTS claims_decided_idx
    ON verifier.claims (decided_at) WHERE status <> 'waiting';

COMMENT ON COLUMN verifier.claims.status IS
    'waiting | issued | rejected | expired | revoked (issued, then its payment was reorged)';
COMMENT ON COLUMN verifier.claims.decided_at IS
    'When it was decided, or revoked; the retention of the cleanup job counts from here';

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
        -- 010: a token revoked by a reorg is gone, but its claim says so.
        IF EXISTS (SELECT 1 FROM verifier.claims c
                    WHERE c.token_hash = p_token_hash AND c.status = 'revoked') THEN
            RETURN QUERY SELECT false, 0::BIGINT, 'payment_reorged'::TEXT;
            RETURN;
        END IF;
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

COMMENT ON FUNCTION verifier.consume_request(TEXT, TEXT, TEXT, INTEGER, INTEGER, INET, TEXT) IS
    'Checks a token and takes one paid request atomically; returns (allowed, requests_remaining, reason)';
