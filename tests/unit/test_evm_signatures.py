"""verifier.chains.evm_signatures: how proofs are read and the wallets' answers judged (pure)."""

from __future__ import annotations

import base64

import pytest

from verifier.chains import evm_signatures as sigs

RAW = bytes(range(256)) * 3  # 768 bytes, a long contract-wallet signature


@pytest.mark.parametrize("proof,expected", [
    ("0x" + RAW.hex(), RAW),
    ("0X" + RAW.hex(), None),
    (base64.b64encode(RAW).decode(), RAW),
    (base64.b64encode(RAW[:65]).decode(), RAW[:65]),
    ("ab" * 65, bytes([0xAB]) * 65),  # 130 digits without 0x: a 65-byte signature
    ("0x" + "ab" * 65 + "a", None),  # odd number of digits
    ("0x", None),
    ("", None),
    (None, None),
    (base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode(), None),
    ("q83v+/=", None),  # not padded to a multiple of 4
    ("q8==3v+/", None),
])
def test_proof_forms(proof, expected):
    assert sigs.decode_proof(proof) == expected


def test_the_6492_suffix_is_recognised_only_at_the_end():
    assert sigs.is_erc6492(b"\x01" * 40 + sigs.ERC6492_SUFFIX)
    assert not sigs.is_erc6492(sigs.ERC6492_SUFFIX)  # nothing wrapped
    assert not sigs.is_erc6492(sigs.ERC6492_SUFFIX + b"\x01")


@pytest.mark.parametrize("answer,approves", [
    ("0x1626ba7e" + "00" * 28, True),
    ("0x1626BA7E" + "00" * 28, True),
    ("0x1626ba7e", False),  # not a whole word
    ("0xffffffff" + "00" * 28, False),
    ("0x", False),
])
def test_erc1271_answers(answer, approves):
    assert sigs.erc1271_approves(answer) is approves


@pytest.mark.parametrize("answer,verdict", [("0x01", True), ("0x00", False), ("0x", None),
                                            ("0x02", None), ("0x" + "00" * 32, None)])
def test_validator_answers(answer, verdict):
    assert sigs.validator_verdict(answer) is verdict


def test_the_validator_call_is_its_creation_code_then_the_arguments():
    data = sigs.validator_call("0x" + "12" * 20, b"\x34" * 32, b"\x56" * 3)
    assert data.startswith(sigs.VALIDATOR_CREATION_CODE)
    args = bytes.fromhex(data[len(sigs.VALIDATOR_CREATION_CODE):])
    assert args[12:32] == b"\x12" * 20 and args[32:64] == b"\x34" * 32
    assert int.from_bytes(args[96:128], "big") == 3 and args[128:131] == b"\x56" * 3
