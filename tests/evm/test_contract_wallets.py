"""Contract wallets claim on a real anvil: a Safe-like multisig (n x 65 bytes), a wallet with
~700-byte signatures, a counterfactual ERC-6492 wallet, and an RPC that fails while
isValidSignature is asked (never bad_proof)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.daemon import query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain
from tests.evm.test_claims import claim
from verifier import api, rules
from verifier.chains import evm_signatures
from verifier.devnet import solc
from verifier.devnet.evm import call_data, eip191_hash
from verifier.devnet.faults import ErrorAnswer, Fault, FaultProxy

SUFFIX = bytes.fromhex("6492" * 16)
VALIDATOR_SOURCE = Path(evm_signatures.__file__).with_name("Erc6492Validator.sol")


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def digest_of(tx: str, token_hash: str) -> bytes:
    return eip191_hash(rules.claim_message("base", tx, token_hash))


def raw_sign(account, digest: bytes) -> bytes:
    return bytes(Account.unsafe_sign_hash(digest, account.key).signature)


def multisig_proof(owners, digest: bytes, descending: bool = False) -> str:
    """Safe's layout: one 65-byte signature per owner, ordered by owner address."""
    ordered = sorted(owners, key=lambda a: int(a.address, 16), reverse=descending)
    return "0x" + b"".join(raw_sign(o, digest) for o in ordered).hex()


def long_proof(owner, digest: bytes, client_data: bytes) -> bytes:
    inner = keccak(digest + keccak(client_data))
    return raw_sign(owner, inner) + client_data


def client_data(digest: bytes) -> bytes:
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=")
    text = b'{"type":"webauthn.get","challenge":"' + challenge + b'","origin":"https://x402.test"'
    return text + b',"pad":"' + b"p" * (634 - len(text) - 10) + b'"}'


def pay_from(chain, wallet: str, owner, amount: int = 2_000_000) -> str:
    d = chain.devnet
    d.mint(wallet, 10_000_000)
    tx = d.wallet_pay(wallet, owner, PAYEE, amount)
    d.mine(3)
    return tx


def counterfactual(chain, owner) -> tuple[str, str, bytes]:
    """(factory, wallet address, factory call data) of a Wallet1271 not deployed yet."""
    d = chain.devnet
    factory = d.deploy("WalletFactory")
    salt = secrets.token_bytes(32)
    wallet = d.contract("WalletFactory", factory).functions.addressOf(
        to_checksum_address(owner.address), salt).call().lower()
    calldata = call_data("deploy(address,bytes32)", ["address", "bytes32"],
                         [to_checksum_address(owner.address), salt])
    return factory, wallet, bytes.fromhex(calldata[2:])


def pay_undeployed(chain, wallet: str, amount: int) -> str:
    """A USDC payment whose Transfer is from an address with no code. Anvil sends it as that
    address; its nonce is then set back to 0, as a wallet never deployed has (CREATE2 cannot
    deploy over a used nonce). In the world: a payment settled by the wallet's signature."""
    d = chain.devnet
    d.fund([wallet], 10**18)
    d.mint(wallet, 10_000_000)
    tx = d.transfer(wallet, PAYEE, amount)
    d.rpc("anvil_setNonce", wallet, "0x0")
    d.mine(3)
    return tx


def wrap_6492(factory: str, calldata: bytes, inner: bytes) -> str:
    return "0x" + (abi_encode(["address", "bytes", "bytes"], [factory, calldata, inner])
                   + SUFFIX).hex()


def test_the_embedded_validator_is_its_source_compiled():
    compiled = solc.compile_sources({VALIDATOR_SOURCE.name: VALIDATOR_SOURCE.read_text()})
    assert compiled["Erc6492Validator"].bytecode == evm_signatures.VALIDATOR_CREATION_CODE


async def test_a_safe_like_multisig_claims_with_n_times_65_bytes(chain, database_url):
    d = chain.devnet
    owners, stranger = d.accounts[1:4], d.accounts[7]
    wallet = d.deploy("MultisigWallet", [to_checksum_address(o.address) for o in owners], 2)
    tx = pay_from(chain, wallet, owners[0])
    hashes = [api.new_token()[1] for _ in range(4)]
    good, one_only, with_stranger, unsorted = hashes
    proofs = {
        good: multisig_proof(owners[:2], digest_of(tx, good)),  # 130 bytes
        # owners[0] sent the transaction, so its own signature is a signer's proof (the payer
        # rule): one signature of another owner is the case that must be refused.
        one_only: multisig_proof(owners[1:2], digest_of(tx, one_only)),
        with_stranger: multisig_proof([owners[1], stranger], digest_of(tx, with_stranger)),
        unsorted: multisig_proof(owners[:2], digest_of(tx, unsorted), descending=True),
    }
    async with running_daemon(daemon_env(chain.url), database_url):
        results = {h: await claim(database_url, tx, h, proofs[h]) for h in hashes[1:]}
        results[good] = await claim(database_url, tx, good, proofs[good])
    assert (results[good].status, results[good].reason) == ("issued", None)
    for bad in hashes[1:]:
        assert (results[bad].status, results[bad].reason) == ("rejected", "bad_proof")
    assert query(database_url, "SELECT p.from_address FROM x402_tokens t JOIN x402_payments p "
                               "ON p.id = t.payment_id") == [(wallet,)]


async def test_a_wallet_with_700_byte_signatures_claims_in_hex_or_base64(chain, database_url):
    d = chain.devnet
    owner = d.accounts[2]
    wallet = d.deploy("LongSigWallet", owner.address)
    first, second = pay_from(chain, wallet, owner), pay_from(chain, wallet, owner)
    h1, h2, h_tampered = (api.new_token()[1] for _ in range(3))
    proof1 = long_proof(owner, digest_of(first, h1), client_data(digest_of(first, h1)))
    proof2 = long_proof(owner, digest_of(second, h2), client_data(digest_of(second, h2)))
    tampered = bytearray(long_proof(owner, digest_of(first, h_tampered),
                                    client_data(digest_of(first, h_tampered))))
    tampered[100] ^= 1
    assert 690 <= len(proof1) <= 710
    async with running_daemon(daemon_env(chain.url), database_url):
        refused = await claim(database_url, first, h_tampered, "0x" + bytes(tampered).hex())
        as_hex = await claim(database_url, first, h1, "0x" + proof1.hex())
        as_base64 = await claim(database_url, second, h2, base64.b64encode(proof2).decode())
    assert (refused.status, refused.reason) == ("rejected", "bad_proof")
    assert (as_hex.status, as_hex.reason) == ("issued", None)
    assert (as_base64.status, as_base64.reason) == ("issued", None)


async def test_a_counterfactual_wallet_claims_with_erc6492(chain, database_url):
    d = chain.devnet
    owner, stranger, eoa = d.accounts[3], d.accounts[8], d.accounts[4]
    factory, wallet, calldata = counterfactual(chain, owner)
    tx = pay_undeployed(chain, wallet, 3_000_000)
    assert d.code(wallet) == "0x"
    # An EOA's payment, and a 6492 proof whose factory deploys a wallet elsewhere.
    d.mint(eoa, 10_000_000)
    eoa_tx = d.transfer(eoa, PAYEE, 1_000_000)
    d.mine(3)
    good, by_stranger, for_eoa = (api.new_token()[1] for _ in range(3))
    proofs = {
        good: wrap_6492(factory, calldata, raw_sign(owner, digest_of(tx, good))),
        by_stranger: wrap_6492(factory, calldata, raw_sign(stranger, digest_of(tx, by_stranger))),
        for_eoa: wrap_6492(factory, calldata, raw_sign(owner, digest_of(eoa_tx, for_eoa))),
    }
    malformed = "0x" + (b"\x01" * 40 + SUFFIX).hex()
    async with running_daemon(daemon_env(chain.url), database_url):
        stolen = await claim(database_url, eoa_tx, for_eoa, proofs[for_eoa])
        forged = await claim(database_url, tx, by_stranger, proofs[by_stranger])
        broken = await claim(database_url, tx, api.new_token()[1], malformed)
        issued = await claim(database_url, tx, good, proofs[good])
    assert (stolen.status, stolen.reason) == ("rejected", "bad_proof")
    assert (forged.status, forged.reason) == ("rejected", "bad_proof")
    assert (broken.status, broken.reason) == ("rejected", "bad_proof")
    assert (issued.status, issued.reason) == ("issued", None)
    assert d.code(wallet) == "0x"  # validated inside eth_call: nothing was deployed


async def test_an_rpc_failing_while_the_wallet_is_asked_is_retried_never_bad_proof(
        chain, database_url):
    d = chain.devnet
    owners = d.accounts[1:3]
    wallet = d.deploy("MultisigWallet", [to_checksum_address(o.address) for o in owners], 2)
    tx = pay_from(chain, wallet, owners[0])
    owner = d.accounts[5]
    factory, cf_wallet, calldata = counterfactual(chain, owner)
    cf_tx = pay_undeployed(chain, cf_wallet, 1_000_000)
    h_multi, h_6492 = api.new_token()[1], api.new_token()[1]
    with FaultProxy(chain.url) as proxy:
        async with running_daemon(daemon_env(proxy.url), database_url):
            refusal = ErrorAnswer(-32602, "invalid params: request body too large")
            proxy.rewrite("eth_call", lambda result, params: refusal, times=2)
            proxy.schedule(Fault.NULL, method="eth_call", times=2)
            proxy.schedule(Fault.HTTP_502, method="eth_call")
            proxy.schedule(Fault.RPC_32603, method="eth_getCode")
            multi = await claim(database_url, tx, h_multi,
                                multisig_proof(owners, digest_of(tx, h_multi)))
            proxy.rewrite("eth_call", lambda result, params: refusal, times=1)
            proxy.schedule(Fault.RPC_32005, method="eth_call")
            cf = await claim(database_url, cf_tx, h_6492,
                             wrap_6492(factory, calldata, raw_sign(owner, digest_of(cf_tx, h_6492))))
        assert proxy.rewritten["eth_call"] == 3 and proxy.scheduled_left() == 0
    assert (multi.status, multi.reason) == ("issued", None)
    assert (cf.status, cf.reason) == ("issued", None)
