"""migrations/006_roles.sql and 008_least_privilege.sql: x402_api, x402_readonly and x402_daemon
(and x402_owner, who owns the API functions), proven by logging in as a member of each and trying
what it may and may not do."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.daemon import eventually, query, running_daemon
from tests.db import data
from tests.evm.chain import PAYEE, daemon_env, fresh_chain
from tests.reliability.support import claim_sync, pay_many, proof
from verifier import api, migrate
from verifier.sqlfiles import migrations_dir

ROLES = ("x402_api", "x402_readonly", "x402_daemon")
VIEWS = ("v_x402_active_payments", "v_x402_stats_24h", "v_x402_top_payers",
         "v_x402_endpoint_stats")
DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture
def login_as(database_url: str) -> Iterator[Callable[[str], str]]:
    """login_as("x402_api") -> the URL of a new login role that is a member of it."""
    made: list[str] = []

    def make(group: str) -> str:
        name = f"t_{group}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(group)))
        made.append(name)
        return make_conninfo(database_url, user=name)

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def refused(url: str, statement: str, params: dict | None = None) -> bool:
    with connect(url) as conn:
        try:
            conn.execute(statement, params)  # type: ignore[arg-type]
        except DENIED:
            return True
    return False


def test_the_roles_exist_cannot_log_in_and_the_migration_runs_again(database_url):
    rows = query(database_url, "SELECT rolname, rolcanlogin FROM pg_roles "
                               "WHERE rolname = ANY(%(r)s) ORDER BY 1", {"r": list(ROLES)})
    assert rows == sorted((r, False) for r in ROLES)
    again = (migrations_dir() / "006_roles.sql").read_text(encoding="utf-8")
    with connect(database_url) as conn:
        conn.execute(again)  # idempotent: by hand after a 002 rollback, or twice by mistake
    assert query(database_url, "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%(r)s)",
                 {"r": list(ROLES)}) == [(3,)]
    assert query(database_url, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'x402_owner'"
                 ) == [(False,)]


def test_an_owner_without_createrole_migrates_once_the_roles_exist(pg_admin_url):
    """The DBA path: the four roles exist (created by a DBA, here by the template's migration)
    and the DBA made the database's owner a member of x402_owner; the owner, who may not create
    roles, applies every migration."""
    owner, name = f"t_owner_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:12]}"
    with connect(pg_admin_url) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE x402_owner").format(
            sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                  sql.Identifier(owner)))
    try:
        url = make_conninfo(pg_admin_url, user=owner, dbname=name)
        applied = migrate.run(url, say=lambda _msg: None)
        assert applied == [m.filename for m in migrate.discover()]
        assert "008_least_privilege.sql" in applied
        assert query(url, "SELECT has_function_privilege('x402_api', "
                          "'verifier.submit_claim(text, text, text, text)', 'EXECUTE'), "
                          "has_table_privilege('x402_readonly', 'v_x402_stats_24h', 'SELECT'), "
                          "'verifier.consume_request'::regproc::oid IN "
                          "(SELECT oid FROM pg_proc WHERE proowner = 'x402_owner'::regrole)"
                     ) == [(True, True, True)]
    finally:
        with connect(pg_admin_url) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


def test_x402_api_submits_claims_and_consumes_requests_and_nothing_else(database_url, login_as):
    token = "x402_" + uuid.uuid4().hex
    with connect(database_url) as admin:
        data.token(admin, data.payment(admin, requests_allocated=5), name=token)
    url = login_as("x402_api")
    with connect(url) as conn:
        claim = api.submit_claim(conn, "base", "0x" + "ab" * 32, api.new_token()[1], None)
        assert (claim.status, claim.reason) == ("waiting", None)
        assert api.wait_for_claim(conn, claim.claim_id, timeout=0).status == "waiting"
        use = api.consume(conn, token, "/v1/x", "GET", 200, 5, "203.0.113.1", "ua")
        assert (use.allowed, use.requests_remaining) == (True, 4)
        refusal = api.submit_claim(conn, "dogecoin", "0x" + "ab" * 32, api.new_token()[1], None)
        assert refusal.reason == "unsupported_chain"
    forbidden = [
        "SELECT * FROM x402_payments",
        "SELECT from_address, amount_usdc FROM x402_payments",
        "SELECT * FROM x402_tokens",
        "SELECT * FROM x402_usage",
        "SELECT proof FROM verifier.claims",
        "SELECT * FROM verifier.cursors",
        "SELECT * FROM v_x402_stats_24h",
        "UPDATE x402_payments SET requests_allocated = 1000000",
        "UPDATE x402_payments SET expires_at = now() + interval '10 years'",
        "INSERT INTO x402_tokens (token_hash, payment_id, expires_at) "
        "VALUES (repeat('a', 64), 1, now() + interval '1 day')",
        "DELETE FROM x402_tokens",
        "UPDATE verifier.claims SET status = 'issued'",
        "DELETE FROM verifier.claims",
        "SELECT cleanup_expired_x402_payments()",
        "SELECT update_x402_analytics()",
        "CREATE TABLE x402_mine (id int)",
    ]
    assert [s for s in forbidden if not refused(url, s)] == []


# What stolen API (or analyst) credentials tried before 008, each of which worked then.
ATTACKS = {
    "read every token hash": "SELECT token_hash FROM x402_tokens",
    "read the claims' token hashes": "SELECT token_hash FROM verifier.claims",
    "read claims at all": "SELECT id, status, reason FROM verifier.claims",
    "read payments' columns the API once had": "SELECT id, status, expires_at FROM x402_payments",
    "spend anyone's credit": "UPDATE x402_payments SET requests_used = requests_used + 1",
    "use a payment up": "UPDATE x402_payments SET status = 'used'",
    "set a reorged payment back to verified":
        "UPDATE x402_payments SET status = 'verified' WHERE status = 'reorged'",
    "extend an expiry (pending: the watcher rewrites expires_at)":
        "UPDATE x402_payments SET status = 'pending'",
    "expire everything for the next cleanup": "UPDATE x402_payments SET status = 'expired'",
    "touch a token": "UPDATE x402_tokens SET last_used_at = now()",
    "insert usage rows":
        "INSERT INTO x402_usage (payment_id, endpoint, method, status_code) "
        "SELECT id, '/forged', 'GET', 200 FROM (VALUES (1::bigint)) v(id)",
    "insert a raw claim":
        "INSERT INTO verifier.claims (chain, tx_hash, token_hash, proof) "
        "VALUES ('base', '0x' || repeat('ab', 32), repeat('d', 64), NULL)",
    "lock every payment row": "SELECT 1 FROM x402_payments FOR UPDATE",
    "share-lock every payment row": "SELECT 1 FROM x402_payments FOR KEY SHARE",
    "read the leases": "SELECT * FROM verifier.leases",
    "take a watcher's lease": "UPDATE verifier.leases SET holder = 'me', expires_at = 'infinity'",
    "lock a job's lease row": "SELECT 1 FROM verifier.leases WHERE name = 'job:analytics' "
                              "FOR UPDATE",
    "insert a lease": "INSERT INTO verifier.leases (name) VALUES ('watch:mine')",
    "call the owner's helper": "SELECT verifier.clip_bytes('x', 1)",
    "learn the workers' channel": "SELECT channel FROM verifier.claim_channel",
}


@pytest.mark.parametrize("group", ["x402_api", "x402_readonly"])
def test_every_attack_of_stolen_credentials_is_refused(database_url, login_as, group):
    with connect(database_url) as admin:
        pid = data.payment(admin, requests_allocated=5)
        data.payment(admin, requests_allocated=5, status="reorged")
        data.token(admin, pid)
        admin.execute("INSERT INTO verifier.claims (chain, tx_hash, token_hash) "
                      "VALUES ('base', '0x' || repeat('cd', 32), repeat('e', 64))")
    before = query(database_url, "SELECT id, status, requests_used, expires_at "
                                 "FROM x402_payments ORDER BY id")
    url = login_as(group)
    allowed = {"read payments' columns the API once had"} if group == "x402_readonly" else set()
    worked = [what for what, statement in ATTACKS.items()
              if what not in allowed and not refused(url, statement)]
    assert worked == []
    assert query(database_url, "SELECT id, status, requests_used, expires_at "
                               "FROM x402_payments ORDER BY id") == before
    assert query(database_url, "SELECT count(*) FROM x402_usage") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM verifier.claims") == [(1,)]


def test_no_login_but_the_daemon_can_wake_the_claim_workers(database_url, login_as):
    """NOTIFY needs no privilege in PostgreSQL: the workers listen where only the daemon can
    look. Notifications on the old channel, or guessed ones, reach nobody; a claim does."""
    daemon_url, api_url = login_as("x402_daemon"), login_as("x402_api")
    analyst_url = login_as("x402_readonly")
    with connect(daemon_url) as listener:
        channel = listener.execute("SELECT channel FROM verifier.claim_channel").fetchone()[0]
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        for url in (api_url, analyst_url):
            with connect(url) as conn:
                conn.execute("NOTIFY x402_claims, '1'")
                conn.execute("SELECT pg_notify('x402_claims', '2'), pg_notify('x402_claims_', '3')")
                seen = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE query ILIKE 'listen%%'").fetchone()
                assert seen == (0,)  # another role's statements are hidden from it
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        with connect(api_url) as conn:
            claim = api.submit_claim(conn, "base", "0x" + "ab" * 32, api.new_token()[1], None)
        [woken] = listener.notifies(timeout=5, stop_after=1)
        assert woken.payload == str(claim.claim_id)


def test_x402_api_holds_no_table_or_column_privilege_and_runs_the_functions_as_their_owner(
        database_url):
    grants = query(database_url, """
        SELECT table_schema || '.' || table_name, privilege_type
          FROM information_schema.role_table_grants WHERE grantee = 'x402_api'
        UNION ALL
        SELECT table_schema || '.' || table_name || '.' || column_name, privilege_type
          FROM information_schema.column_privileges WHERE grantee = 'x402_api'""")
    assert grants == []
    owners = query(database_url, """
        SELECT p.proname, p.proowner::regrole::text, p.prosecdef, p.proconfig
          FROM pg_proc p WHERE p.pronamespace = 'verifier'::regnamespace
           AND has_function_privilege('x402_api', p.oid, 'EXECUTE') ORDER BY 1""")
    path = ["search_path=pg_catalog, public, pg_temp"]
    assert owners == [(name, "x402_owner", True, path)
                      for name in ("claim_status", "consume_request", "submit_claim")]
    owner = query(database_url, "SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls "
                                "FROM pg_roles WHERE rolname = 'x402_owner'")
    assert owner == [(False, False, False, False)]
    # It owns no table: it could otherwise alter or drop one from inside a function.
    assert query(database_url, "SELECT count(*) FROM pg_class "
                               "WHERE relowner = 'x402_owner'::regrole") == [(0,)]


def test_x402_readonly_reads_the_views_and_the_payments_only(database_url, login_as):
    with connect(database_url) as admin:
        data.payment(admin, requests_allocated=5)
    url = login_as("x402_readonly")
    with connect(url) as conn:
        for view in VIEWS:
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(view))).fetchall()
        active = conn.execute("SELECT count(*) FROM v_x402_active_payments").fetchone()
        paid = conn.execute("SELECT count(*), sum(requests_allocated) FROM x402_payments"
                            ).fetchone()
    assert active == (1,) and paid == (1, 5)
    forbidden = [
        "SELECT * FROM x402_tokens",
        "SELECT * FROM x402_usage",
        "SELECT * FROM x402_analytics",
        "SELECT * FROM verifier.claims",
        "SELECT verifier.submit_claim('base', '0x' || repeat('ab', 32), repeat('c', 64), NULL)",
        "SELECT * FROM verifier.consume_request(repeat('c', 64), '/', 'GET', 200)",
        "SELECT * FROM verifier.claim_status(1)",
        "SELECT cleanup_expired_x402_payments()",
        "UPDATE x402_payments SET status = 'verified'",
        "DELETE FROM x402_usage",
    ]
    assert [s for s in forbidden if not refused(url, s)] == []


async def test_x402_daemon_runs_the_daemon_with_an_api_role_beside_it(database_url, login_as):
    daemon_url, api_url = login_as("x402_daemon"), login_as("x402_api")
    with fresh_chain() as chain:
        [paid] = pay_many(chain, 1, seed="roles")
        [exact_payer] = chain.devnet.new_accounts(1, seed="roles-exact")
        chain.devnet.mint(exact_payer, 1_000)
        # An x402 "exact" payment: the daemon's role records that too (verifier.exact_payments).
        exact = chain.devnet.pay_with_authorization(exact_payer, PAYEE, 1_000)
        chain.devnet.mine(3)
        async with running_daemon(daemon_env(chain.url), daemon_url):
            await eventually(lambda: query(database_url, "SELECT status FROM x402_payments")
                             == [("verified",), ("verified",)])
            assert query(database_url, "SELECT tx_hash FROM verifier.exact_payments") \
                == [(exact,)]
            token, token_hash = api.new_token()
            result = await _to_thread(claim_sync, api_url, paid.tx_hash, token_hash,
                                      proof(paid.signer, paid.tx_hash, token_hash))
            assert (result.status, result.reason) == ("issued", None)
            # The scheduler ran its start-up back-fill as this role too.
            await eventually(lambda: query(database_url, "SELECT count(*) FROM "
                                                          "verifier.job_runs")[0][0] > 0)
    with connect(api_url) as conn:
        assert api.consume(conn, token, "/v1/x", "GET", 200).allowed
    assert query(database_url, "SELECT job, status FROM verifier.job_runs "
                               "WHERE status <> 'ok'") == []
    forbidden = [
        "DROP TABLE x402_payments",
        "ALTER TABLE x402_payments ADD COLUMN x int",
        "INSERT INTO verifier.schema_migrations (filename, sha256) VALUES ('x', repeat('0', 64))",
        "CREATE TABLE x402_mine (id int)",
        "CREATE TABLE verifier.mine (id int)",
    ]
    assert [s for s in forbidden if not refused(daemon_url, s)] == []


async def _to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)
