-- 009: Solana transactions put aside so that one bad transaction cannot stall an account.
--
-- A signature listed on a watched token account whose transaction cannot be read after a few
-- polls (the node refuses it with a final error such as -32015, keeps answering null, answers
-- in a shape the decoder cannot read, or with another signature's transaction) is written here
-- in the same transaction as the cursor that moves past it. The watcher asks for it again at
-- next_retry_at (backing off), records its payment if it then reads fine and deletes the row.
-- `x402-verifier status` and /metrics (x402_quarantined_transactions) show what is here.

CREATE TABLE IF NOT EXISTS verifier.solana_quarantine (
    chain          TEXT        NOT NULL CHECK (chain = 'solana'),
    signature      TEXT        NOT NULL CHECK (length(signature) BETWEEN 32 AND 128),
    account        TEXT        NOT NULL,           -- the watched token account that listed it
    slot           BIGINT      NOT NULL CHECK (slot >= 0),
    reason         TEXT        NOT NULL CHECK (reason IN ('final_error', 'not_served',
                                                          'unreadable', 'wrong_transaction')),
    error_code     INTEGER,                        -- the JSON-RPC code of the last error, if any
    attempts       INTEGER     NOT NULL CHECK (attempts >= 1),
    first_seen     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen      TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_retry_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, signature)
);

CREATE INDEX IF NOT EXISTS solana_quarantine_due
    ON verifier.solana_quarantine (chain, next_retry_at);

COMMENT ON TABLE verifier.solana_quarantine IS
    'x402-verifier: Solana transactions that could not be read, retried later (migration 009)';

GRANT SELECT, INSERT, UPDATE, DELETE ON verifier.solana_quarantine TO x402_daemon;
