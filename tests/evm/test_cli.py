"""The command line as an operator uses it: verify, claim, run with bad configuration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain
from verifier import client

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *args], env={**os.environ, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_verify_prints_one_verdict_as_json(chain):
    d = chain.devnet
    payer = d.accounts[1]
    d.mint(payer, 10_000_000)
    good = d.transfer(payer, PAYEE, 2_500_000)
    small = d.transfer(payer, PAYEE, 10_000)
    d.mine(3)
    env = daemon_env(chain.url)
    ok = cli("verify", "--chain", "base", "--tx", good.upper().replace("0X", "0x"), env=env)
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["verdict"] == "verified"
    assert verdict["amount_usdc"] == "2.500000" and verdict["amount_base_units"] == "2500000"
    assert verdict["tx_hash"] == good and verdict["requests_allocated"] == 2500
    assert verdict["from_address"] == payer.address.lower()

    under = cli("verify", "--chain", "base", "--tx", small, env=env)
    assert under.returncode == 1
    assert json.loads(under.stdout)["reason"] == "underpaid"

    malformed = cli("verify", "--chain", "base", "--tx", "0xnothex", env=env)
    assert malformed.returncode == 1
    assert json.loads(malformed.stdout)["reason"] == "malformed_tx_hash"


async def test_claim_prints_the_token_once_and_stores_only_its_hash(chain, database_url):
    d = chain.devnet
    payer = d.accounts[2]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    env = daemon_env(chain.url, X402_CLAIM_PROOF="none")
    async with running_daemon(env, database_url):
        done = await asyncio.to_thread(cli, "claim", "--chain", "base", "--tx", tx, "--wait",
                                       "20", env={**env, "DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "issued" and out["token"].startswith("x402_")
    [(stored,)] = query(database_url, "SELECT token_hash FROM x402_tokens")
    assert stored == hashlib.sha256(out["token"].encode()).hexdigest()
    assert out["token"] not in done.stderr


async def test_claim_submits_a_client_made_token_hash_and_proof(chain, database_url):
    d = chain.devnet
    payer = d.accounts[3]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    token, token_hash = client.make_token()
    proof = client.sign_claim_evm(payer.key, "base", tx, token_hash)
    env = {**daemon_env(chain.url, X402_CLAIM_PROOF="signature"), "DATABASE_URL": database_url}
    async with running_daemon(env, database_url):
        done = await asyncio.to_thread(cli, "claim", "--chain", "base", "--tx", tx,
                                       "--token-hash", token_hash, "--proof", proof, env=env)
        again = await asyncio.to_thread(cli, "claim", "--chain", "base", "--tx", tx,
                                        "--token-hash", token_hash, "--proof", proof, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["status"], out["reason"]) == ("issued", None) and "token" not in out
    assert json.loads(again.stdout) == out  # a retry returns the same claim
    assert token not in done.stdout + done.stderr  # the token never left the client
    assert query(database_url, "SELECT token_hash FROM x402_tokens") == [(token_hash,)]


def test_claim_refuses_a_proof_without_the_clients_token_hash(database_url):
    done = cli("claim", "--chain", "base", "--tx", "0x" + "ab" * 32, "--proof", "0x" + "cd" * 65,
               env={"DATABASE_URL": database_url})
    assert done.returncode == 2
    assert "--token-hash" in done.stderr
    assert query(database_url, "SELECT count(*) FROM verifier.claims") == [(0,)]


@pytest.mark.parametrize("key,value", [
    ("X402_BASE_PAYMENT_ADDRESS", "not-an-address"),
    ("X402_CHAINS", "base,bitcoin"),
    ("X402_WORKERS", "many"),
])
def test_run_with_a_bad_setting_exits_2_naming_it(key, value, database_url):
    env = daemon_env("http://127.0.0.1:1", **{key: value})
    done = cli("run", env={**env, "DATABASE_URL": database_url}, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]


def test_run_refuses_an_rpc_on_another_chain_naming_it(chain, database_url):
    with fresh_chain("ethereum") as eth:
        env = daemon_env(f"{chain.url},{eth.url}")
        done = cli("run", env={**env, "DATABASE_URL": database_url}, timeout=30)
    assert done.returncode == 2
    assert eth.url in done.stderr and "chain id 1" in done.stderr


def test_an_unreachable_database_is_one_line_and_exit_1():
    done = cli("migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x402"})
    assert done.returncode == 1
    assert done.stderr.strip().startswith("x402-verifier: database error:")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
