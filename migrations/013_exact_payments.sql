-- 013: x402 "exact" payments. A payment whose every USDC transfer executed an EIP-3009
-- authorization (an AuthorizationUsed log of the same contract, right before the Transfer, in
-- the same transaction) is judged against X402_EXACT_MIN_PAYMENT_USDC instead of
-- X402_MIN_PAYMENT_USDC, whoever settled it. The watcher learns it when it finds the payment and
-- must still know it when the payment becomes final: it is recorded here, per transaction.
--
-- In schema "verifier", keyed by (chain, tx_hash) with no foreign key, like 005's tables: the
-- guide's checks still list only the guide's objects, and the 002 rollback can still drop and
-- recreate x402_payments (a row here is a fact about a transaction, true again if it is found
-- again). A column on x402_payments would be lost by that rollback.

CREATE TABLE IF NOT EXISTS verifier.exact_payments (
    chain    TEXT NOT NULL CHECK (chain IN ('base', 'ethereum', 'solana')),
    tx_hash  TEXT NOT NULL,
    seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, tx_hash)
);

COMMENT ON TABLE verifier.exact_payments IS
    'x402-verifier: transactions whose payment is an x402 "exact" (EIP-3009) transfer';

GRANT SELECT, INSERT, DELETE ON verifier.exact_payments TO x402_daemon;
