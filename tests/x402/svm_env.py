"""A Solana x402 setup on the LiteSVM node: USDC, a payee with its ATA, a funded payer, the
fee payer's keypair file; the daemon's environment for it; HTTP helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from solders.keypair import Keypair

from verifier.devnet import svm_payments as sp
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import USDC_MINT, TokenKit, ata

TOKEN = "s" * 32
PRICE_UNITS = 10_000  # $0.01


@dataclass
class SvmSetup:
    node: SolanaServer
    kit: TokenKit
    fee_payer: Keypair
    payer: Keypair
    payee: Keypair
    key_file: Path
    token_file: Path

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "X402_CHAINS": "solana",
            "X402_SOLANA_RPC_URLS": self.node.url,
            "X402_SOLANA_PAYMENT_ADDRESS": str(self.payee.pubkey()),
            "X402_SOLANA_START_BLOCK": str(self.node.slot),
            "X402_SOLANA_NETWORK": sp.NETWORK,
            "X402_SOLANA_SETTLER_KEY_FILE": str(self.key_file),
            "X402_POLL_INTERVAL": "0.1",
            "X402_METRICS_ADDR": "127.0.0.1:0",
            "X402_WORKERS": "1",
            "X402_CLEANUP_CRON": "0 0 1 1 *",
            "X402_ANALYTICS_CRON": "0 0 1 1 *",
            "X402_LOG_FORMAT": "console",
            "X402_PRICE_PER_REQUEST_USDC": "0.001",
            "X402_FACILITATOR_ADDR": "127.0.0.1:0",
            "X402_FACILITATOR_TOKEN_FILE": str(self.token_file),
            "X402_FACILITATOR_SETTLE_TIMEOUT": "10",
        }
        env.update(overrides)
        return env

    def payment(self, amount: int = PRICE_UNITS, *, ixs: list[Any] | None = None,
                signers: list[Keypair] | None = None, **reqs: Any) -> bytes:
        """A /settle body as @x402/svm's client makes it, on the node's latest blockhash."""
        p = self.payer.pubkey()
        blockhash = self.node.svm.latest_blockhash()
        with self.node._lock:
            self.node._blockhashes.setdefault(str(blockhash), self.node.slot)
        tx = sp.transaction(self.fee_payer.pubkey(), signers or [self.payer],
                            ixs if ixs is not None else sp.instructions(
                                p, self.payee.pubkey(), amount), blockhash)
        required = reqs.pop("required", amount)
        return sp.body(tx, sp.requirements(self.payee.pubkey(), required,
                                           self.fee_payer.pubkey(), **reqs))

    def usdc(self, owner: Keypair) -> int:
        account = self.node.svm.get_account(ata(owner.pubkey(), USDC_MINT))
        return int.from_bytes(bytes(account.data)[64:72], "little") if account else 0


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def svm_setup(tmp_path: Path) -> Iterator[SvmSetup]:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    with SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        fee_payer = kit.wallet(5_000_000_000)
        payee = kit.wallet()
        kit.create_ata(payee.pubkey())
        payer = kit.wallet()
        kit.fund(payer.pubkey(), 10_000_000)
        key_file = write_secret(folder / "fee-payer.json", json.dumps(list(bytes(fee_payer))))
        token_file = write_secret(folder / "token", TOKEN)
        yield SvmSetup(node, kit, fee_payer, payer, payee, key_file, token_file)


async def post(url: str, path: str, body: bytes) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(url + path, content=body, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


async def get(url: str, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return r.json()
