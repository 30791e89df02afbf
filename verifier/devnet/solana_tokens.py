"""SPL token scenarios for tests, executed for real by the LiteSVM behind SolanaServer.

Instructions are built here from their documented layouts (spl-token: Transfer = 3,
TransferChecked = 12, MintTo = 7; associated-token-account: Create = empty/0,
CreateIdempotent = 1, RecoverNested = 2). Mints are written with ``set_account`` so that the
USDC-like one sits at the canonical mainnet address.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from solders.account import Account
from solders.address_lookup_table_account import ID as ALT_PROGRAM
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.system_program import CreateAccountParams, create_account

from verifier.devnet.solana_server import SolanaServer

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
USDC_MINT = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
MINT_LEN = 82


def ata(owner: Pubkey, mint: Pubkey = USDC_MINT) -> Pubkey:
    return Pubkey.find_program_address([bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)],
                                       ATA_PROGRAM)[0]


def mint_data(authority: Pubkey, decimals: int, supply: int = 0) -> bytes:
    return struct.pack("<I32sQBBI32s", 1, bytes(authority), supply, decimals, 1, 0, bytes(32))


def transfer_ix(source: Pubkey, destination: Pubkey, authority: Pubkey, amount: int,
                extra: Sequence[Pubkey] = ()) -> Instruction:
    """spl-token Transfer; ``extra`` read-only accounts appended (Solana Pay reference keys)."""
    metas = [AccountMeta(source, False, True), AccountMeta(destination, False, True),
             AccountMeta(authority, True, False)]
    metas += [AccountMeta(key, False, False) for key in extra]
    return Instruction(TOKEN_PROGRAM, bytes([3]) + struct.pack("<Q", amount), metas)


def approve_ix(source: Pubkey, delegate: Pubkey, owner: Pubkey, amount: int) -> Instruction:
    return Instruction(TOKEN_PROGRAM, bytes([4]) + struct.pack("<Q", amount), [
        AccountMeta(source, False, True), AccountMeta(delegate, False, False),
        AccountMeta(owner, True, False)])


def transfer_checked_ix(source: Pubkey, mint: Pubkey, destination: Pubkey, authority: Pubkey,
                        amount: int, decimals: int) -> Instruction:
    return Instruction(TOKEN_PROGRAM, bytes([12]) + struct.pack("<QB", amount, decimals), [
        AccountMeta(source, False, True), AccountMeta(mint, False, False),
        AccountMeta(destination, False, True), AccountMeta(authority, True, False)])


def mint_to_ix(mint: Pubkey, destination: Pubkey, authority: Pubkey, amount: int) -> Instruction:
    return Instruction(TOKEN_PROGRAM, bytes([7]) + struct.pack("<Q", amount), [
        AccountMeta(mint, False, True), AccountMeta(destination, False, True),
        AccountMeta(authority, True, False)])


def create_ata_ix(payer: Pubkey, owner: Pubkey, mint: Pubkey = USDC_MINT, *,
                  idempotent: bool = False) -> Instruction:
    return Instruction(ATA_PROGRAM, bytes([1]) if idempotent else b"", [
        AccountMeta(payer, True, True), AccountMeta(ata(owner, mint), False, True),
        AccountMeta(owner, False, False), AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])


def recover_nested_ix(wallet: Pubkey, owner_mint: Pubkey, nested_mint: Pubkey) -> Instruction:
    """ATA RecoverNested: the ATA program moves the tokens of ATA(ATA(wallet, owner_mint),
    nested_mint) into ATA(wallet, nested_mint) by a CPI TransferChecked that it signs for the
    owner ATA (a PDA of the ATA program), then closes the nested account."""
    owner_ata = ata(wallet, owner_mint)
    return Instruction(ATA_PROGRAM, bytes([2]), [
        AccountMeta(ata(owner_ata, nested_mint), False, True),
        AccountMeta(nested_mint, False, False),
        AccountMeta(ata(wallet, nested_mint), False, True),
        AccountMeta(owner_ata, False, False),
        AccountMeta(owner_mint, False, False),
        AccountMeta(wallet, True, True),
        AccountMeta(TOKEN_PROGRAM, False, False)])


class TokenKit:
    """Wallets, mints and payments on a SolanaServer."""

    def __init__(self, server: SolanaServer):
        self.server = server
        self.svm = server.svm
        self.authority = self.wallet()

    def wallet(self, lamports: int = 10_000_000_000) -> Keypair:
        key = Keypair()
        self.svm.airdrop(key.pubkey(), lamports)
        return key

    def create_mint(self, address: Pubkey | None = None, decimals: int = 6) -> Pubkey:
        """A mint at ``address`` (a fresh one when None), minted by ``self.authority``."""
        address = address or Keypair().pubkey()
        self.svm.set_account(address, Account(
            lamports=self.svm.minimum_balance_for_rent_exemption(MINT_LEN),
            data=mint_data(self.authority.pubkey(), decimals), owner=TOKEN_PROGRAM,
            executable=False, rent_epoch=0))
        return address

    def create_usdc(self) -> Pubkey:
        return self.create_mint(USDC_MINT, 6)

    def create_ata(self, owner: Pubkey, mint: Pubkey = USDC_MINT,
                   payer: Keypair | None = None) -> Pubkey:
        payer = payer or self.authority
        self.server.send([payer], [create_ata_ix(payer.pubkey(), owner, mint)])
        return ata(owner, mint)

    def create_token_account(self, owner: Pubkey, mint: Pubkey = USDC_MINT) -> Pubkey:
        """A plain (non-associated) token account: CreateAccount, then InitializeAccount3."""
        account = Keypair()
        payer = self.authority
        self.server.send([payer, account], [
            create_account(CreateAccountParams(
                from_pubkey=payer.pubkey(), to_pubkey=account.pubkey(),
                lamports=self.svm.minimum_balance_for_rent_exemption(165), space=165,
                owner=TOKEN_PROGRAM)),
            Instruction(TOKEN_PROGRAM, bytes([18]) + bytes(owner), [
                AccountMeta(account.pubkey(), False, True), AccountMeta(mint, False, False)]),
        ])
        return account.pubkey()

    def fund(self, owner: Pubkey, amount: int, mint: Pubkey = USDC_MINT) -> str:
        """Mints ``amount`` base units to the owner's ATA, creating it when needed."""
        a = self.authority.pubkey()
        return self.server.send([self.authority], [
            create_ata_ix(a, owner, mint, idempotent=True),
            mint_to_ix(mint, ata(owner, mint), a, amount)])

    def transfer(self, sender: Keypair, recipient: Pubkey, amount: int, *,
                 mint: Pubkey = USDC_MINT, references: Sequence[Pubkey] = ()) -> str:
        """A plain Transfer between the two owners' ATAs."""
        s = sender.pubkey()
        return self.server.send([sender], [
            transfer_ix(ata(s, mint), ata(recipient, mint), s, amount, references)])

    def transfer_checked(self, sender: Keypair, recipient: Pubkey, amount: int, *,
                         mint: Pubkey = USDC_MINT, decimals: int = 6) -> str:
        s = sender.pubkey()
        return self.server.send([sender], [
            transfer_checked_ix(ata(s, mint), mint, ata(recipient, mint), s, amount, decimals)])

    def delegated_transfer(self, owner: Keypair, delegate: Keypair, recipient: Pubkey,
                           amount: int) -> str:
        """The owner approves ``delegate``, who then moves the owner's tokens (the authority of
        the transfer is the delegate; the balance that falls is the owner's)."""
        o = owner.pubkey()
        self.server.send([owner], [approve_ix(ata(o), delegate.pubkey(), o, amount)])
        return self.server.send([delegate], [
            transfer_ix(ata(o), ata(recipient), delegate.pubkey(), amount)])

    def create_ata_and_transfer(self, sender: Keypair, recipient: Pubkey, amount: int,
                                mint: Pubkey = USDC_MINT) -> str:
        """CreateIdempotent for the recipient's ATA, then TransferChecked, in one transaction."""
        s = sender.pubkey()
        return self.server.send([sender], [
            create_ata_ix(s, recipient, mint, idempotent=True),
            transfer_checked_ix(ata(s, mint), mint, ata(recipient, mint), s, amount, 6)])

    def transfers_in_one_tx(self, sender: Keypair, recipient: Pubkey,
                            amounts: Sequence[int]) -> str:
        s = sender.pubkey()
        return self.server.send([sender], [
            transfer_ix(ata(s), ata(recipient), s, amount) for amount in amounts])

    def failed_transfer(self, sender: Keypair, recipient: Pubkey, amount: int) -> str:
        """A Transfer of more than the balance: it lands with meta.err (InsufficientFunds)."""
        return self.transfer(sender, recipient, amount)

    def self_transfer(self, owner: Keypair, amount: int) -> str:
        """The owner's ATA to itself."""
        o = owner.pubkey()
        return self.server.send([owner], [transfer_ix(ata(o), ata(o), o, amount)])

    def send_to_token_account(self, sender: Keypair, recipient: Pubkey, amount: int) -> str:
        """The classic mistake: treat the recipient's USDC *token account* as a wallet and pay
        the ATA derived from it (a "nested" ATA owned by the recipient's ATA)."""
        s = sender.pubkey()
        owner_ata = ata(recipient)
        return self.server.send([sender], [
            create_ata_ix(s, owner_ata, USDC_MINT, idempotent=True),
            transfer_ix(ata(s), ata(owner_ata), s, amount)])

    def recover_nested(self, wallet: Keypair) -> str:
        """The recipient recovers nested USDC: a transfer made by the ATA program through CPI."""
        return self.server.send([wallet], [recover_nested_ix(wallet.pubkey(), USDC_MINT,
                                                             USDC_MINT)])

    def lookup_table(self, addresses: Sequence[Pubkey]) -> AddressLookupTableAccount:
        """An active address lookup table holding ``addresses`` (written, not created by tx)."""
        key = Keypair().pubkey()
        meta = struct.pack("<IQQB", 1, 2**64 - 1, 0, 0) + b"\x01" + bytes(
            self.authority.pubkey()) + b"\0\0"
        data = meta + b"".join(bytes(a) for a in addresses)
        self.svm.set_account(key, Account(
            lamports=self.svm.minimum_balance_for_rent_exemption(len(data)), data=data,
            owner=ALT_PROGRAM, executable=False, rent_epoch=0))
        return AddressLookupTableAccount(key, list(addresses))

    def transfer_v0(self, sender: Keypair, recipient: Pubkey, amount: int,
                    table: AddressLookupTableAccount, references: Sequence[Pubkey] = ()) -> str:
        """A v0 transaction: keys found in ``table`` (the recipient's token account, read-only
        reference keys) are loaded from it rather than listed in the message."""
        s = sender.pubkey()
        return self.server.send([sender], [
            transfer_ix(ata(s), ata(recipient), s, amount, references)], lookup_tables=[table])

    def move(self, owner: Keypair, source: Pubkey, destination: Pubkey, amount: int) -> str:
        """A Transfer between two accounts of the same owner."""
        return self.server.send([owner], [
            transfer_ix(source, destination, owner.pubkey(), amount)])
