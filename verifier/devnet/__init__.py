"""Local chains and tools for the demo, the benchmarks, the chaos soak and the tests, offline.

anvil (EVM node) and solc-js with the contracts it deploys (`anvil`, `solc`, `evm`); the LiteSVM
Solana ledger, its JSON-RPC server and token helpers (`solana_*`); a fault-injecting JSON-RPC
proxy (`faults`); a PostgreSQL that can be stopped and started (`postgres`); the chaos soak and
its audit (`soak`). The npm tools live in `.tools/` (see `tools`).

Shipped in the wheel so that an installed operator can run the demo, but the daemon never
imports it: nothing in `verifier` outside this package may.
"""
