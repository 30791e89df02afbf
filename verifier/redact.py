"""RPC URLs as they may be shown: ``scheme://host[:port]``, never a password or an API key.

Providers put the credential in the URL: ``https://user:password@host``, ``/v2/<key>`` in the
path, ``?apikey=<key>`` in the query. Every log line, printed check and error message names an
endpoint by ``name(rank, url)`` ("#1 https://base-mainnet.example.com", #1 being the first URL
of X402_<CHAIN>_RPC_URLS); the metrics label it ``label(rank, url)`` ("0:host[:port]").

``scrub(text)`` takes whatever text an exception carries (aiohttp puts URLs in some of its
messages) and strips credentials from every URL in it, plus every secret part of the RPC URLs
this process was configured with (``remember``), wherever they appear. verifier.logs runs it on
every log event; the commands that print run it on what they print. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_WEB_SCHEMES = ("http", "https", "ws", "wss")
# A URL in free text: up to a blank, a quote or an angle bracket.
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s'\"<>`]*)")
# Fragments shorter than this are words, not keys ("v2", "rpc"): not looked for on their own.
_MIN_SECRET = 6

_secrets: set[str] = set()


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: no user, password, path, query or fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    return f"{scheme.lower()}://{host}"


def name(rank: int, url: str) -> str:
    """How logs, errors and `doctor` name an endpoint: '#<position> scheme://host[:port]'."""
    return f"#{rank + 1} {origin(url)}"


def label(rank: int, url: str) -> str:
    """The metrics' endpoint label, '<rank>:host[:port]' (rank from 0)."""
    return f"{rank}:{origin(url).partition('://')[2]}"


def remember(urls: Iterable[str]) -> None:
    """Notes the secret parts of these URLs, so that ``scrub`` removes them from any text."""
    for url in urls:
        _secrets.update(secret_parts(url))


def secret_parts(url: str) -> set[str]:
    """The parts of a URL that may be credentials: user, password, path segments, query values,
    as written and decoded. Those that are part of its host are left out (they are shown)."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:  # not even parseable: everything after the host may be secret
        return {url} - {""}
    found = {user or "", password or "", parts.path, parts.query, parts.fragment}
    found.update(s for s in parts.path.split("/"))
    found.update(v for _k, v in parse_qsl(parts.query, keep_blank_values=True))
    found |= {unquote(f) for f in found}
    shown = origin(url)
    return {f for f in found if len(f) >= _MIN_SECRET and f not in shown}


def scrub(text: str) -> str:
    """``text`` with the credentials of every URL in it, and every remembered secret, masked."""
    if not text:
        return text
    text = _URL.sub(_safe_url, text)
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a key in a path
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _safe_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    if scheme.lower() in _WEB_SCHEMES:
        return origin(f"{scheme}://{rest}")
    # Another scheme (postgresql://...): its path is no credential, its password is.
    authority, sep, tail = rest.partition("@")
    if sep and "/" not in authority:
        user = authority.partition(":")[0]
        return f"{scheme}://{user}:{MASK}@{tail}" if ":" in authority else match.group(0)
    return match.group(0)
