-- 004: the daemon's own state: chain cursors, block hashes for reorg checks, claims, and
-- verifier.submit_claim(), the one call an API server makes to turn a payment into a token.

CREATE TABLE IF NOT EXISTS verifier.cursors (
    chain       TEXT NOT NULL CHECK (chain IN ('base', 'ethereum', 'solana')),
    account     TEXT NOT NULL DEFAULT '',   -- '' on EVM; the token account on Solana
    position    BIGINT NOT NULL,            -- last block (EVM) or slot (Solana) fully processed
    marker      TEXT,                       -- its block hash (EVM) or newest signature (Solana)
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, account)
);

-- Hashes of blocks the watcher relied on (scan ends and payment blocks), re-checked each poll.
CREATE TABLE IF NOT EXISTS verifier.blocks (
    chain         TEXT NOT NULL,
    block_number  BIGINT NOT NULL,
    block_hash    TEXT NOT NULL,
    seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, block_number)
);

CREATE TABLE IF NOT EXISTS verifier.claims (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain            TEXT NOT NULL,
    tx_hash          TEXT NOT NULL,
    token_hash       TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    proof            TEXT CHECK (length(proof) <= 1024),
    status           TEXT NOT NULL DEFAULT 'waiting'
                     CHECK (status IN ('waiting', 'issued', 'rejected', 'expired')),
    reason           TEXT,
    payment_id       BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at       TIMESTAMPTZ
);

-- Workers take waiting claims in order with FOR UPDATE SKIP LOCKED.
CREATE INDEX IF NOT EXISTS claims_waiting_idx
    ON verifier.claims (next_attempt_at, id) WHERE status = 'waiting';
-- Status and lookups by transaction.
CREATE INDEX IF NOT EXISTS claims_tx_idx ON verifier.claims (chain, tx_hash);

-- Validates a claim and queues it for the workers. Bad input is refused at once with a reason
-- and writes nothing. Submitting the same token hash for the same transaction again returns the
-- existing claim (a retry), for another transaction it is refused.
CREATE OR REPLACE FUNCTION verifier.submit_claim(
    p_chain       TEXT,
    p_tx_hash     TEXT,
    p_token_hash  TEXT,
    p_proof       TEXT DEFAULT NULL
)
RETURNS TABLE (claim_id BIGINT, status TEXT, reason TEXT)
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_tx     TEXT;
    v_found  RECORD;
    v_id     BIGINT;
BEGIN
    IF p_chain IS NULL OR p_chain NOT IN ('base', 'ethereum', 'solana') THEN
        RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'unsupported_chain'::TEXT;
        RETURN;
    END IF;
    IF p_chain IN ('base', 'ethereum') THEN
        IF p_tx_hash IS NULL OR p_tx_hash !~ '^0x[0-9a-fA-F]{64}$' THEN
            RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'malformed_tx_hash'::TEXT;
            RETURN;
        END IF;
        v_tx := lower(p_tx_hash);
    ELSE
        IF p_tx_hash IS NULL OR p_tx_hash !~ '^[1-9A-HJ-NP-Za-km-z]{64,88}$' THEN
            RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'malformed_tx_hash'::TEXT;
            RETURN;
        END IF;
        v_tx := p_tx_hash;  -- base58 is case-sensitive
    END IF;
    IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
        RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'malformed_token_hash'::TEXT;
        RETURN;
    END IF;
    IF p_proof IS NOT NULL AND (length(p_proof) > 1024 OR p_proof !~ '^[0-9A-Za-z]+$') THEN
        RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'malformed_proof'::TEXT;
        RETURN;
    END IF;

    INSERT INTO verifier.claims (chain, tx_hash, token_hash, proof)
    VALUES (p_chain, v_tx, p_token_hash, p_proof)
    ON CONFLICT (token_hash) DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT c.id, c.chain, c.tx_hash, c.status, c.reason INTO v_found
          FROM verifier.claims c WHERE c.token_hash = p_token_hash;
        IF v_found.chain = p_chain AND v_found.tx_hash = v_tx THEN
            RETURN QUERY SELECT v_found.id, v_found.status, v_found.reason;
        ELSE
            RETURN QUERY SELECT NULL::BIGINT, 'rejected'::TEXT, 'token_hash_in_use'::TEXT;
        END IF;
        RETURN;
    END IF;

    PERFORM pg_notify('x402_claims', v_id::TEXT);
    RETURN QUERY SELECT v_id, 'waiting'::TEXT, NULL::TEXT;
END;
$$;

COMMENT ON FUNCTION verifier.submit_claim(TEXT, TEXT, TEXT, TEXT) IS
    'Queues a claim of a payment for a token (by its SHA-256); returns (claim_id, status, reason)';
