"""Each RPC fault alone, against the running daemon: nothing lost, nothing twice, and "the RPC
failed" never becomes the rejection of a valid claim.

Every case runs the same story through a FaultProxy that serves one fault kind on a share of
the requests: payments before the watcher's start block (found only when claimed, through the
on-demand lookup), payments the watcher scans, an x402 "exact" payment of each kind (below
X402_MIN_PAYMENT_USDC: verified only when its AuthorizationUsed log was read right), and one
payment from an EIP-1271 contract wallet (its claim needs eth_getCode and eth_call). Every
payment must end verified once with its exact amount and every claim issued.
"""

from __future__ import annotations

import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import daemon_env
from tests.reliability.support import (
    claim_all,
    pay_exact,
    pay_from_wallet,
    pay_many,
    payments,
    proxied_chain,
)
from verifier.devnet.faults import HEAD_METHODS, NULLABLE_METHODS, Fault

RPC_TIMEOUT = "0.5"  # the proxy's hang lasts longer than this
# Every call the daemon makes on an EVM chain: start-up checks, watcher, lookups, EIP-1271.
METHODS = ("eth_chainId", "eth_getCode", "eth_blockNumber", "eth_getLogs",
           "eth_getBlockByNumber", "eth_getTransactionReceipt", "eth_call")


def aimed_at(fault: Fault) -> list[str]:
    """The methods a fault can hit: a lagging head only eth_blockNumber, null only answers that
    may be null, the others any call."""
    if fault is Fault.LAGGING_HEAD:
        return [m for m in METHODS if m in HEAD_METHODS]
    if fault is Fault.NULL:
        return [m for m in METHODS if m in NULLABLE_METHODS]
    return list(METHODS)


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
async def test_one_fault_kind_loses_nothing_and_rejects_no_valid_claim(fault, database_url):
    with proxied_chain(seed=6, rate=0.25, faults=[fault], hang=1.5) as (chain, proxy):
        d = chain.devnet
        early = pay_many(chain, 3, seed=f"early-{fault.value}", first_amount=500_000)
        early.append(pay_exact(chain, 1_000, seed=f"early-exact-{fault.value}"))
        start = d.head() + 1
        late = pay_many(chain, 8, seed=f"late-{fault.value}")
        late.append(pay_exact(chain, 2_000, seed=f"late-exact-{fault.value}"))
        wallet = pay_from_wallet(chain, d.accounts[1], 2_345_678)
        d.mine(3)
        everything = [*early, *late, wallet]
        for method in aimed_at(fault):  # at least once on each call, on top of the 25%
            proxy.schedule(fault, method=method)
        env = daemon_env(proxy.url, X402_BASE_START_BLOCK=str(start),
                         X402_BASE_RPC_TIMEOUT=RPC_TIMEOUT,
                         X402_CLAIM_NOT_FOUND_GRACE_SECONDS="60")
        async with running_daemon(env, database_url):
            scanned = {p.tx_hash for p in [*late, wallet]}
            await eventually(lambda: scanned <= {tx for tx, (s, _) in payments(database_url).items()
                                                 if s == "verified"}, within=60)
            claims = await claim_all(database_url, everything)

    assert proxy.scheduled_left() == 0
    assert {m for f, m in proxy.hits if f is fault} >= set(aimed_at(fault)), proxy.hits
    assert {tx: (r.status, r.reason) for tx, (r, _) in claims.items()} == {
        p.tx_hash: ("issued", None) for p in everything}
    assert payments(database_url) == {p.tx_hash: ("verified", p.amount) for p in everything}
    tokens = query(database_url, "SELECT p.tx_hash FROM x402_tokens t "
                                 "JOIN x402_payments p ON p.id = t.payment_id")
    assert sorted(tx for (tx,) in tokens) == sorted(p.tx_hash for p in everything)


async def test_a_null_block_in_the_reorg_check_is_not_a_reorg(database_url):
    """The watcher re-reads the hashes of recent blocks each poll. A node answering null for one
    of them has not shown another chain: it failed. The payment stays verified, its token
    keeps working."""
    from tests.reliability.support import claim
    from tests.reliability.support import proof as proof_for
    from verifier import api

    with proxied_chain() as (chain, proxy):
        [paid] = pay_many(chain, 1, seed="null-block")
        chain.devnet.mine(3)
        async with running_daemon(daemon_env(proxy.url), database_url):
            await eventually(lambda: payments(database_url).get(paid.tx_hash, ("",))[0]
                             == "verified")
            token, token_hash = api.new_token()
            result = await claim(database_url, paid.tx_hash, token_hash,
                                 proof_for(paid.signer, paid.tx_hash, token_hash))
            assert result.status == "issued"
            # Caught up, the watcher's only block reads are the reorg check's.
            block = chain.devnet.receipt(paid.tx_hash)["blockNumber"]
            proxy.rewrite("eth_getBlockByNumber",
                          lambda found, params: None if params[0] == block else found, times=5)
            await eventually(lambda: proxy.rewritten["eth_getBlockByNumber"] >= 5)
            chain.devnet.mine(1)  # one more poll that scans, after the nulls
            head = chain.devnet.head()
            await eventually(lambda: query(database_url, "SELECT position FROM verifier.cursors")
                             == [(head,)])
    assert payments(database_url) == {paid.tx_hash: ("verified", paid.amount)}
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        use = api.consume(conn, token, "/v1/x", "GET", 200)
    assert use.allowed, use
