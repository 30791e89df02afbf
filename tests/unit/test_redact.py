"""RPC URLs are shown as '#<position> scheme://host[:port]': no password, no key in the path or
the query, in names, labels, error messages (ours, and the transport's) and log lines."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest
import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from verifier import logs, redact
from verifier.errors import RetriableRpcError
from verifier.rpc import classify
from verifier.rpc.failover import EndpointPool

KEYED = "https://alice:Pa55w0rd-s3cret@base-mainnet.example.com:8443/v2/KEY0123456789abcdef?apikey=QUERYKEY98765&x=1"
SECRETS = ("Pa55w0rd-s3cret", "KEY0123456789abcdef", "QUERYKEY98765", "alice")


def test_origin_name_and_label_keep_only_scheme_host_and_port():
    assert redact.origin(KEYED) == "https://base-mainnet.example.com:8443"
    assert redact.name(0, KEYED) == "#1 https://base-mainnet.example.com:8443"
    assert redact.label(1, KEYED) == "1:base-mainnet.example.com:8443"
    assert redact.origin("http://[::1]:8545/rpc?k=v") == "http://[::1]:8545"
    assert redact.origin("HTTP://key@host") == "http://host"
    assert redact.origin("no url at all") == "<not a URL>"


def test_the_endpoint_pool_names_and_labels_its_endpoints_by_origin():
    [first, second] = EndpointPool("base", [KEYED, "http://127.0.0.1:8545"], concurrency=1).endpoints
    assert (first.name, first.label) == ("#1 https://base-mainnet.example.com:8443",
                                         "0:base-mainnet.example.com:8443")
    assert (second.name, second.label) == ("#2 http://127.0.0.1:8545", "1:127.0.0.1:8545")


def test_scrub_removes_every_url_credential_and_every_remembered_secret():
    redact.remember([KEYED])
    text = (f"POST {KEYED} failed; url='{KEYED.replace('alice:Pa55w0rd-s3cret@', '')}'; "
            "the node says: invalid key KEY0123456789abcdef; "
            "postgresql://x402:dbpassw0rd@db.internal/x402")
    out = redact.scrub(text)
    for secret in (*SECRETS, "dbpassw0rd"):
        assert secret not in out
    assert "https://base-mainnet.example.com:8443 failed" in out
    assert "postgresql://x402:***@db.internal/x402" in out


def _client_response_error(url: str) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(url), "POST", CIMultiDictProxy(CIMultiDict()), URL(url))
    return aiohttp.ClientResponseError(info, (), status=500, message="boom")


@pytest.mark.parametrize("exc", [
    aiohttp.InvalidURL(KEYED),
    "response",
    aiohttp.ClientConnectionError(f"Cannot connect to {KEYED}"),
])
def test_transport_errors_that_embed_the_url_are_scrubbed(exc):
    if exc == "response":
        exc = _client_response_error(KEYED)
    assert any(s in str(exc) for s in SECRETS)  # the transport does put the URL in its text
    err = classify.transport_error(exc, "eth_getLogs", redact.name(0, KEYED))
    assert isinstance(err, RetriableRpcError)
    assert err.endpoint == "#1 https://base-mainnet.example.com:8443"
    for secret in SECRETS:
        assert secret not in str(err)


def test_rpc_errors_scrub_their_message_and_endpoint():
    err = RetriableRpcError(f"eth_call: request failed at {KEYED}", endpoint=KEYED)
    assert err.endpoint == "https://base-mainnet.example.com:8443"
    for secret in SECRETS:
        assert secret not in str(err) and secret not in err.endpoint


def test_every_log_line_is_scrubbed_structlog_and_standard_logging(capsys):
    redact.remember([KEYED])
    logs.configure("json")
    try:
        log = structlog.get_logger("test.redact")
        log.warning("rpc_retriable_error", endpoint=KEYED, error=f"oops {KEYED}",
                    nested={"urls": [KEYED]})
        try:
            raise RuntimeError(f"failed talking to {KEYED}")
        except RuntimeError:
            log.exception("task_failed")
        logging.getLogger("aiohttp.client").error("Unclosed session for %s", KEYED)
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("{")]
    assert [json.loads(line)["event"] for line in lines] == ["rpc_retriable_error", "task_failed"]
    assert "failed talking to https://base-mainnet.example.com:8443" in err
    assert "Unclosed session for https://base-mainnet.example.com:8443" in err
    for secret in SECRETS:
        assert secret not in err, secret


def test_scrubbing_leaves_plain_text_alone():
    assert redact.scrub("chain base: head 123, cursor 120") == "chain base: head 123, cursor 120"
    assert logs.scrub_event(None, "info", {"n": 3, "ok": True, "x": None}) == {
        "n": 3, "ok": True, "x": None}
