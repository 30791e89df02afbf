"""Base and Ethereum answers turned into facts, with no I/O: Transfer logs into Transfer facts,
AuthorizationUsed logs (EIP-3009) into AuthorizationUse facts, a receipt into the facts of its
transaction.

An answer that is not what was asked for raises UnreadableAnswer: the adapter reads it again
(RetriableRpcError) rather than skip a log, which would move a cursor past a payment for good.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from verifier.errors import UnreadableAnswer
from verifier.models import AuthorizationUse, Transfer, TxFacts

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
# keccak256("AuthorizationUsed(address,bytes32)"): EIP-3009's event, topics [sig, authorizer,
# nonce], no data. USDC emits it right before the Transfer of the authorization it executes.
AUTHORIZATION_USED_TOPIC = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
_WORD = re.compile(r"^0x[0-9a-fA-F]{64}$")
# A trillion USDC in base units, over ten times all the USDC there is: a USDC log moving more
# is a corrupt answer. Stored, it could not even be (a BIGINT of requests), and set aside it
# would be lost.
MAX_USDC_UNITS = 10**18

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def topic_for(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def address_of(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def transfers_from_logs(chain: str, logs: Sequence[Any]) -> list[Transfer]:
    """ERC-20 Transfer facts from raw eth_getLogs / receipt logs; anything malformed is skipped."""
    out = []
    for entry in logs:
        transfer = _transfer(chain, entry)
        if transfer is not None:
            out.append(transfer)
    return out


def _transfer(chain: str, entry: Any) -> Transfer | None:
    if not isinstance(entry, dict) or entry.get("removed"):
        return None
    topics = entry.get("topics") or []
    data = entry.get("data") or ""
    if (len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC
            or not all(isinstance(t, str) and _WORD.match(t) for t in topics)
            or not isinstance(data, str) or not _WORD.match(data)):
        return None
    try:
        return Transfer(
            chain=chain,
            tx_hash=entry["transactionHash"].lower(),
            index=int(entry["logIndex"], 16),
            block_number=int(entry["blockNumber"], 16),
            block_hash=entry["blockHash"].lower(),
            from_address=address_of(topics[1]),
            to_address=address_of(topics[2]),
            amount=int(data, 16),
            token=entry["address"].lower(),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def authorizations_from_logs(logs: Sequence[Any]) -> list[AuthorizationUse]:
    """AuthorizationUsed facts from raw logs (of any contract); anything else is skipped."""
    out = []
    for entry in logs:
        found = _authorization(entry)
        if found is not None:
            out.append(found)
    return out


def _authorization(entry: Any) -> AuthorizationUse | None:
    if not isinstance(entry, dict) or entry.get("removed"):
        return None
    topics = entry.get("topics") or []
    if (len(topics) != 3 or str(topics[0]).lower() != AUTHORIZATION_USED_TOPIC
            or not all(isinstance(t, str) and _WORD.match(t) for t in topics)):
        return None
    try:
        return AuthorizationUse(
            tx_hash=entry["transactionHash"].lower(),
            index=int(entry["logIndex"], 16),
            block_number=int(entry["blockNumber"], 16),
            block_hash=entry["blockHash"].lower(),
            token=entry["address"].lower(),
            authorizer=address_of(topics[1]),
            nonce=topics[2].lower(),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def logged_authorizations(logs: Any, first: int, last: int) -> list[AuthorizationUse]:
    """eth_getLogs was asked for AuthorizationUsed logs of blocks first..last: an entry that is
    not one, or lies outside the range, means the answer is corrupt."""
    found = authorizations_from_logs(logs) if isinstance(logs, list) else []
    if not isinstance(logs, list) or len(found) != len(logs) \
            or any(not first <= a.block_number <= last for a in found):
        raise UnreadableAnswer(f"eth_getLogs {first}-{last} answered a malformed or "
                               "out-of-range AuthorizationUsed log")
    return found


def logged_transfers(chain: str, logs: Any, first: int, last: int) -> list[Transfer]:
    """eth_getLogs was asked for USDC Transfer logs of blocks first..last: an entry that is not
    one, lies outside the range, or moves more USDC in one transaction than exists, means the
    answer is corrupt."""
    transfers = transfers_from_logs(chain, logs) if isinstance(logs, list) else []
    if not isinstance(logs, list) or len(transfers) != len(logs) \
            or any(not first <= t.block_number <= last for t in transfers):
        raise UnreadableAnswer(f"{chain}: eth_getLogs {first}-{last} answered a malformed or "
                               "out-of-range log")
    moved: dict[str, int] = {}
    for t in transfers:
        moved[t.tx_hash] = moved.get(t.tx_hash, 0) + t.amount
        if moved[t.tx_hash] > MAX_USDC_UNITS:
            raise UnreadableAnswer(f"{chain}: eth_getLogs {first}-{last} has {t.tx_hash} moving "
                                   f"{moved[t.tx_hash]} base units, more USDC than exists")
    return transfers


def receipt_facts(chain: str, receipt: Any, tx_hash: str, token: str) -> TxFacts:
    """The facts of ``tx_hash`` from its eth_getTransactionReceipt answer (not null)."""
    if not isinstance(receipt, dict) or str(receipt.get("transactionHash", "")).lower() != tx_hash:
        raise UnreadableAnswer(f"{chain}: receipt returned for another transaction")
    failed = hex_quantity(receipt.get("status")) != 1
    transfers = () if failed else tuple(receipt_transfers(chain, receipt.get("logs"), token))
    authorizations = () if failed else tuple(receipt_authorizations(receipt["logs"], token))
    block_hash = receipt.get("blockHash")
    return TxFacts(chain, tx_hash, hex_quantity(receipt.get("blockNumber")),
                   block_hash.lower() if isinstance(block_hash, str) else None,
                   failed=failed, transfers=transfers, signers=sender_of(receipt),
                   authorizations=authorizations)


def sender_of(answer: Any) -> tuple[str, ...]:
    """The transaction's signer (``from``) of a receipt or eth_getTransactionByHash answer, as
    a one-item tuple; () when the answer names none (it only narrows who may claim)."""
    sender = answer.get("from") if isinstance(answer, dict) else None
    if isinstance(sender, str) and _ADDRESS.match(sender):
        return (sender.lower(),)
    return ()


def receipt_transfers(chain: str, logs: Any, token: str) -> list[Transfer]:
    """A receipt holds every log of the transaction; a ``token`` Transfer log among them that
    cannot be read means the answer is corrupt, never "no transfer"."""
    if not isinstance(logs, list):
        raise UnreadableAnswer(f"{chain}: receipt logs are not a list")
    transfers = transfers_from_logs(chain, logs)
    token_logs = sum(1 for e in logs if isinstance(e, dict) and not e.get("removed")
                     and str(e.get("address", "")).lower() == token
                     and isinstance(e.get("topics"), list) and e["topics"]
                     and str(e["topics"][0]).lower() == TRANSFER_TOPIC)
    if token_logs != sum(1 for t in transfers if t.token == token):
        raise UnreadableAnswer(f"{chain}: receipt has a malformed USDC Transfer log")
    return transfers


def receipt_authorizations(logs: list[Any], token: str) -> list[AuthorizationUse]:
    """The receipt's AuthorizationUsed logs; one of ``token``'s that cannot be read means the
    answer is corrupt (taken for "not authorized", it would judge an x402 payment underpaid)."""
    found = authorizations_from_logs(logs)
    token_logs = sum(1 for e in logs if isinstance(e, dict) and not e.get("removed")
                     and str(e.get("address", "")).lower() == token
                     and isinstance(e.get("topics"), list) and e["topics"]
                     and str(e["topics"][0]).lower() == AUTHORIZATION_USED_TOPIC)
    if token_logs != sum(1 for a in found if a.token == token):
        raise UnreadableAnswer("receipt has a malformed USDC AuthorizationUsed log")
    return found


def hex_quantity(value: Any) -> int:
    """A JSON-RPC quantity (0x-hex; an int is taken as it is)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise UnreadableAnswer(f"expected a hex quantity, got {value!r:.80}")
