"""Plain facts passed between the layers: chain adapters produce them, rules judge them, the
store writes them. Amounts are integers of USDC base units (6 decimals); times are aware UTC."""

from __future__ import annotations

from dataclasses import dataclass

from verifier.vocab import PaymentStatus, QuarantineReason, Reason


@dataclass(frozen=True)
class Transfer:
    """One token movement (an ERC-20 Transfer log), as the chain recorded it."""

    chain: str
    tx_hash: str
    index: int  # log index (EVM) or instruction position (Solana)
    block_number: int  # block (EVM) or slot (Solana)
    block_hash: str | None
    from_address: str
    to_address: str
    amount: int
    token: str


@dataclass(frozen=True)
class BalanceChange:
    """How much one token account's balance moved over a transaction (Solana: post minus pre).
    The net change is itself the fact: it sees every instruction, inner (CPI) ones included."""

    account: str
    owner: str | None  # the wallet owning the account; very old answers carry none
    token: str
    change: int


@dataclass(frozen=True)
class TokenMove:
    """A token instruction, top-level or inner, in execution order: who authorised which move
    between which token accounts (Solana). Names the payer when no balance fell."""

    source: str
    destination: str
    authority: str
    amount: int  # base units the instruction asked to move


@dataclass(frozen=True)
class AuthorizationUse:
    """An EIP-3009 AuthorizationUsed log (EVM): the token contract executed an authorization
    that ``authorizer`` signed (transferWithAuthorization, receiveWithAuthorization), as x402's
    "exact" scheme settles a payment."""

    tx_hash: str
    index: int  # log index
    block_number: int
    block_hash: str | None
    token: str  # the contract that emitted the log
    authorizer: str
    nonce: str  # 0x-hex, 32 bytes


@dataclass(frozen=True)
class TxFacts:
    """Everything one transaction did that the rules read, decoded from a chain's answer.

    EVM fills ``transfers`` (its Transfer logs) and ``authorizations`` (its AuthorizationUsed
    logs); Solana fills ``balances`` and ``moves``. ``signers`` lists the transaction's signers:
    EVM ``tx.from`` (from a receipt; a log carries none); Solana its required signers, fee payer
    first."""

    chain: str
    tx_hash: str
    block_number: int
    block_hash: str | None
    failed: bool = False
    transfers: tuple[Transfer, ...] = ()
    balances: tuple[BalanceChange, ...] = ()
    moves: tuple[TokenMove, ...] = ()
    signers: tuple[str, ...] = ()
    authorizations: tuple[AuthorizationUse, ...] = ()
    # Solana: the transaction has the x402 "exact" SVM layout with a fee payer other than the
    # transfer's authority (solana_decode.x402_exact_layout): an x402 payment, whoever settled it.
    svm_exact: bool = False


@dataclass(frozen=True)
class Observed:
    """A payment: everything one transaction paid to one payee, in USDC base units."""

    chain: str
    tx_hash: str
    block_number: int
    block_hash: str | None
    from_address: str
    to_address: str
    amount: int
    exact: bool = False
    """An x402 "exact" payment: every transfer in it executed an EIP-3009 authorization
    (rules.judge_transaction says when). Judged against the exact minimum."""


@dataclass(frozen=True)
class ChainView:
    """Where a chain stands now: its head, and the highest block/slot that counts as final."""

    head: int
    final: int
    head_hash: str | None = None


@dataclass(frozen=True)
class Cursor:
    """How far a watcher has scanned. EVM: one per chain (account ''), position = block.
    Solana: one per token account, position = slot, marker = the newest signature processed."""

    chain: str
    account: str
    position: int
    marker: str | None


@dataclass(frozen=True)
class Verdict:
    """What the rules decided about an observed payment."""

    status: PaymentStatus
    confirmations: int
    requests_allocated: int


@dataclass(frozen=True)
class Lookup:
    """The outcome of looking one transaction up on demand (for a claim).

    Exactly one of payment / reason is set; reason is a vocab.NotPaid code (or
    malformed_tx_hash). ``not_found`` may change later (the node may not have it yet)."""

    payment: Observed | None
    reason: Reason | None
    view: ChainView | None = None
    signers: tuple[str, ...] = ()  # the transaction's signers (TxFacts.signers), when read


@dataclass(frozen=True)
class Quarantined:
    """A transaction put aside after it could not be read (verifier.solana_quarantine).

    ``attempts`` is how many polls failed to read it: when the adapter hands one to the store,
    the polls it held the cursor for; read back from the store, the count so far."""

    chain: str
    account: str
    signature: str
    slot: int
    reason: QuarantineReason
    code: int | None = None
    attempts: int = 1
