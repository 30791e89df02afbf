"""Shared pieces of the reliability tests: payments on a proxied anvil, and claims with proofs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from eth_account.signers.local import LocalAccount

from tests.daemon import query
from tests.evm.chain import PAYEE, Chain, fresh_chain
from verifier import api, rules
from verifier.devnet.evm import sign_claim
from verifier.devnet.faults import Fault, FaultProxy


@dataclass(frozen=True)
class Paid:
    tx_hash: str
    signer: LocalAccount  # who signs the claim (the payer, or the owner of a contract wallet)
    amount: int  # USDC base units


@contextmanager
def proxied_chain(*, seed: int = 1, rate: float = 0.0, faults: Sequence[Fault] = tuple(Fault),
                  hang: float = 1.5, retry_after: float = 1) -> Iterator[tuple[Chain, FaultProxy]]:
    """A fresh anvil (Base, chain id 8453) behind a FaultProxy."""
    with fresh_chain() as chain, FaultProxy(chain.url, seed=seed, rate=rate, faults=faults,
                                            hang=hang, retry_after=retry_after) as proxy:
        yield chain, proxy


def pay_many(chain: Chain, count: int, *, seed: str, first_amount: int = 150_000,
             per_block: int = 2) -> list[Paid]:
    """`count` USDC payments to PAYEE from keyed payers, distinct amounts, `per_block` a block."""
    d = chain.devnet
    payers = d.new_accounts(max(1, min(count, 8)), seed=seed)
    d.mint_many([(p, 10**12) for p in payers])
    wanted = [(payers[i % len(payers)], first_amount + 1_001 * i) for i in range(count)]
    hashes = d.bulk_transfers([(p, PAYEE, a) for p, a in wanted], per_block=per_block)
    return [Paid(h, p, a) for h, (p, a) in zip(hashes, wanted, strict=True)]


def pay_from_wallet(chain: Chain, owner: LocalAccount, amount: int) -> Paid:
    """A payment sent by an EIP-1271 contract wallet; its owner signs the claim."""
    d = chain.devnet
    wallet = d.wallet_1271(owner)
    d.mint(wallet, amount)
    return Paid(d.wallet_pay(wallet, owner, PAYEE, amount), owner, amount)


def pay_exact(chain: Chain, amount: int, *, seed: str) -> Paid:
    """An x402 "exact" payment (EIP-3009 transferWithAuthorization, submitted by a dev account
    as a facilitator would): verified only if the daemon sees its AuthorizationUsed log, for an
    amount below X402_MIN_PAYMENT_USDC."""
    d = chain.devnet
    [payer] = d.new_accounts(1, seed=seed)
    d.mint(payer, amount)
    return Paid(d.pay_with_authorization(payer, PAYEE, amount, sender=d.accounts[2]), payer,
                amount)


def proof(signer: LocalAccount, tx_hash: str, token_hash: str, chain: str = "base") -> str:
    return sign_claim(signer.key, rules.claim_message(chain, tx_hash, token_hash))


def claim_sync(url: str, tx_hash: str, token_hash: str, proof_: str | None, *,
               chain: str = "base", wait: float = 60) -> api.ClaimResult:
    with psycopg.connect(url, autocommit=True) as conn:
        submitted = api.submit_claim(conn, chain, tx_hash, token_hash, proof_)
        if submitted.claim_id is None or submitted.status != "waiting":
            return submitted
        return api.wait_for_claim(conn, submitted.claim_id, timeout=wait)


async def claim(url: str, tx_hash: str, token_hash: str, proof_: str | None, *,
                chain: str = "base", wait: float = 60) -> api.ClaimResult:
    return await asyncio.to_thread(claim_sync, url, tx_hash, token_hash, proof_, chain=chain,
                                   wait=wait)


async def claim_all(url: str, paid: Sequence[Paid]) -> dict[str, tuple[api.ClaimResult, str]]:
    """Claims every payment with a valid proof, all at once; tx -> (result, token)."""

    async def one(p: Paid) -> tuple[str, tuple[api.ClaimResult, str]]:
        token, token_hash = api.new_token()
        result = await claim(url, p.tx_hash, token_hash, proof(p.signer, p.tx_hash, token_hash))
        return p.tx_hash, (result, token)

    return dict(await asyncio.gather(*(one(p) for p in paid)))


def payments(url: str, chain: str = "base") -> dict[str, tuple[str, int]]:
    """tx_hash -> (status, amount in base units) as recorded."""
    rows = query(url, "SELECT tx_hash, status, amount_usdc FROM x402_payments "
                      "WHERE chain = %(chain)s", {"chain": chain})
    return {tx: (status, int(amount * 10**6)) for tx, status, amount in rows}


def verified_count(url: str) -> int:
    return query(url, "SELECT count(*) FROM x402_payments WHERE status = 'verified'")[0][0]


def usdc(units: int) -> Decimal:
    return Decimal(units).scaleb(-6)
