"""One root for every error the verifier raises on purpose.

Where an error arrives (an RPC answer, a psycopg exception, a bad setting) it is turned into one
of these once, so the code above can tell "retry it" from "it is final" without guessing.
"""

from verifier import redact


class VerifierError(Exception):
    """Root of the verifier's own errors."""


class ConfigError(VerifierError):
    """A setting is missing or invalid. The message names the variable."""


class MigrationError(VerifierError):
    """The migrations cannot be applied as they stand."""


class DatabaseError(VerifierError):
    """PostgreSQL refused or failed an operation."""


class RpcError(VerifierError):
    """A chain RPC call failed. Never means "not paid".

    ``endpoint`` names it as verifier.redact.name does; the message and the endpoint are
    scrubbed of credentials here, whatever the transport or the node put in them."""

    retriable = False

    def __init__(self, message: str, *, endpoint: str | None = None, code: int | None = None):
        super().__init__(redact.scrub(message))
        self.endpoint = redact.scrub(endpoint) if endpoint else endpoint
        self.code = code


class RetriableRpcError(RpcError):
    """A fault that may pass: time-out, connection error, 429, 5xx, node behind."""

    retriable = True

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, endpoint=endpoint, code=code)
        self.retry_after = retry_after


class WrongChainError(RetriableRpcError):
    """The endpoint answers for another chain (EVM chain id, Solana genesis hash) than the one
    configured. Retriable on another endpoint; this one is used again only by calls that check
    the chain in the same request, and only once it answers for the right chain."""


class RangeTooLargeError(RpcError):
    """The provider refused an eth_getLogs range or result size; a smaller range will do."""


class FinalRpcError(RpcError):
    """The node answered with an error that retrying will not change."""


class ExecutionReverted(FinalRpcError):
    """EVM: the call ran and reverted (an eth_call's own answer, e.g. a wallet refusing a
    signature). Its own type so that only a revert, never another refusal of the request
    (invalid params, payload too large...), can count as "not valid"."""


class UnreadableAnswer(VerifierError):
    """A chain answer (a log, a receipt, a transaction) is not in a shape the decoders read.
    Raised by the pure decoders; each adapter maps it to its RpcError."""


class SlotSkippedError(FinalRpcError):
    """Solana -32007 / -32009: the node has no block for that slot (skipped, or missing in
    long-term storage). Final, and its own type so that a scan can pass over that slot."""


class BatchRefusedError(FinalRpcError):
    """The endpoint answered a JSON-RPC batch with a single error: it does not take batches."""


class WrongAnswerError(RetriableRpcError):
    """The node answered another question than the one asked (Solana: a getTransaction answer
    whose ``transaction.signatures[0]`` is another signature). A fault of that endpoint:
    retried, failed over, never read as a fact."""


class NotServedError(RetriableRpcError):
    """The node answered null for a transaction it listed itself as finalized: not yet, never
    "not paid"."""


class UnreadableTransactionError(RetriableRpcError):
    """A transaction answer in a shape the decoders cannot read: retried on another endpoint,
    never skipped unread."""
