"""x402 facilitator: the official SDK's wire and EVM "exact" verification, our policy, and
exactly-once settlement through the PostgreSQL ledger (see verifier.x402.facilitator)."""
