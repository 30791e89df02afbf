from __future__ import annotations

import os

import pytest

from verifier import embedded


@pytest.fixture(scope="session")
def pg_env() -> dict[str, str]:
    """The environment for psql/pg_dump: the embedded server's client programs come first, since
    an older system pg_dump refuses a newer server."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["PATH"] = f"{embedded.bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env
