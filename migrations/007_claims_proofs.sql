-- 007: proofs for contract wallets. A Safe's signature is n x 65 bytes, a passkey wallet's or
-- an ERC-6492 (not yet deployed) wallet's several hundred to a few thousand: proofs may now be
-- up to 16,386 characters (8 KiB as 0x-hex) and written in standard base64 as well as in hex or
-- base58. verifier.submit_claim is otherwise unchanged (same signature, SECURITY INVOKER).

ALTER TABLE verifier.claims DROP CONSTRAINT claims_proof_check;
ALTER TABLE verifier.claims ADD CONSTRAINT claims_proof_check CHECK (length(proof) <= 16386);

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
    IF p_proof IS NOT NULL AND (length(p_proof) > 16386 OR p_proof !~ '^[0-9A-Za-z+/]+={0,2}$') THEN
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
