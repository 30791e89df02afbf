"""x402-verifier: verifies USDC payments on Base, Ethereum and Solana for pay-per-request APIs."""

__version__ = "0.1.0"
