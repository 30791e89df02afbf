"""ops/grafana/x402-verifier.json: every SQL panel reads only what x402_readonly may SELECT, and
runs (Grafana's macros expanded as Grafana does) on a migrated database logged in as a LOGIN
member of x402_readonly, with the figures expected of the rows put there; every Prometheus
expression parses (promtool) and names only metrics the daemon exports."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.db import data
from tests.ops.exported_metrics import exported_names, promql_metrics
from tests.ops.test_alert_rules import promtool

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "ops" / "grafana" / "x402-verifier.json"
PG_TYPE, PROM_TYPE = "grafana-postgresql-datasource", "prometheus"
# What migrations 006 and 008 let x402_readonly read; nothing else may appear in a panel.
READABLE = {"x402_payments", "v_x402_active_payments", "v_x402_stats_24h", "v_x402_top_payers",
            "v_x402_endpoint_stats"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel["datasource"]
            if source["type"] == kind:
                found.append((panel["title"], target))
    return found


def sql_panels() -> list[tuple[str, str]]:
    return [(title, t["rawSql"]) for title, t in targets(PG_TYPE)]


def prom_exprs() -> list[tuple[str, str]]:
    return [(title, t["expr"]) for title, t in targets(PROM_TYPE)]


def relations(statement: str) -> set[str]:
    """The tables and views a panel's SQL reads: every name after FROM or JOIN (the panels use
    neither comma joins nor functions in FROM; a test below keeps it so)."""
    assert not re.search(r"\bFROM\s+[\w.\"]+(?:\s+(?:AS\s+)?\w+)?\s*,", statement, re.I), statement
    return {m.lower().replace('"', '') for m in re.findall(r"\b(?:FROM|JOIN)\s+([\w.\"]+)", statement,
                                                     re.I)}


def expand(statement: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros, as the data source expands them."""
    def stamp(at: datetime) -> str:
        return "'" + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def seconds(interval: str) -> int:
        n, unit = re.fullmatch(r"(\d+)([smhd])", interval).groups()  # type: ignore[union-attr]
        return int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]

    statement = re.sub(
        r"\$__timeGroupAlias\(\s*(\w+)\s*,\s*'(\w+)'\s*\)",
        lambda m: f"floor(extract(epoch from {m[1]})/{seconds(m[2])})*{seconds(m[2])} AS \"time\"",
        statement)
    statement = re.sub(r"\$__timeFilter\(\s*(\w+)\s*\)",
                       lambda m: f"{m[1]} BETWEEN {stamp(start)} AND {stamp(end)}", statement)
    statement = statement.replace("$__timeFrom()", stamp(start)).replace("$__timeTo()", stamp(end))
    assert "$" not in statement, statement  # a macro or variable this test does not know
    return statement


@pytest.fixture
def readonly_url(database_url: str) -> Iterator[str]:
    """A new LOGIN role, member of x402_readonly (as tests/reliability/test_roles.py makes them):
    what Grafana's data source logs in as."""
    name = f"t_grafana_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE x402_readonly").format(
            sql.Identifier(name)))
    yield make_conninfo(database_url, user=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_the_dashboard_has_both_sources_and_the_three_hourly_panels():
    board = dashboard()
    kinds = {v["query"] for v in board["templating"]["list"] if v["type"] == "datasource"}
    assert kinds == {PG_TYPE, PROM_TYPE}
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["type"] in (PG_TYPE, PROM_TYPE), panel["title"]
    titles = {title for title, _ in sql_panels()}
    assert {"Revenue per chain per hour", "Payments per chain per hour",
            "Requests per chain per hour (bought, and used so far)"} <= titles
    assert len(prom_exprs()) >= 10
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_reads_only_what_x402_readonly_may_select(database_url):
    named = set()
    for title, statement in sql_panels():
        found = relations(statement)
        assert found, title
        assert found <= READABLE, (title, found - READABLE)
        named |= found
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in sorted(READABLE):  # the list above is the database's, not a wish
            assert conn.execute("SELECT has_table_privilege('x402_readonly', %s, 'SELECT')",
                                [name]).fetchone() == (True,), name
        for name in ("x402_usage", "x402_analytics", "x402_tokens"):
            assert conn.execute("SELECT has_table_privilege('x402_readonly', %s, 'SELECT')",
                                [name]).fetchone() == (False,), name
    assert named == READABLE  # every view the role may read is on the dashboard


def test_the_relations_parser_sees_what_a_panel_would_read():
    assert relations("SELECT 1 FROM x402_usage u JOIN x402_payments p ON true") == {
        "x402_usage", "x402_payments"}
    assert relations('SELECT * FROM public."x402_tokens"') == {"public.x402_tokens"}
    with pytest.raises(AssertionError):
        relations("SELECT 1 FROM x402_payments p, x402_tokens t")


def test_every_panel_runs_as_a_readonly_login(database_url, readonly_url):
    # The data sits at half past the hour (the latest such time not after now); the dashboard's
    # range ends just after now, so rows stamped now (created_at) are inside it at any minute.
    now = datetime.now(UTC)
    anchor = now.replace(minute=30, second=0, microsecond=0)
    if anchor > now:
        anchor -= timedelta(hours=1)
    end = now + timedelta(minutes=1)
    start = anchor - timedelta(days=7)
    two_hours_ago, last_hour = anchor - timedelta(hours=2), anchor - timedelta(hours=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        data.payment(conn, chain="base", verified_at=two_hours_ago, amount_units=1_500_000,
                     requests_allocated=100, requests_used=40)
        data.payment(conn, chain="base", verified_at=two_hours_ago, status="used",
                     amount_units=500_000, requests_allocated=10, requests_used=10)
        data.payment(conn, chain="ethereum", verified_at=last_hour, amount_units=2_000_000,
                     requests_allocated=50)
        data.payment(conn, chain="base", verified_at=last_hour, status="underpaid",
                     amount_units=100_000, requests_allocated=0)
        data.payment(conn, chain="base", verified_at=start - timedelta(hours=1),
                     amount_units=9_000_000)  # outside the time range
        paid = conn.execute("SELECT id FROM x402_payments WHERE chain = 'ethereum'").fetchone()
        data.usage(conn, paid[0], endpoint="/api/weather")
    results: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(readonly_url) as conn:
        assert conn.execute("SELECT current_user <> 'x402_readonly' AND pg_has_role("
                            "current_user, 'x402_readonly', 'MEMBER')").fetchone() == (True,)
        conn.execute("SET TRANSACTION READ ONLY")
        for title, statement in sql_panels():
            results[title] = conn.execute(expand(statement, start, end)).fetchall()
    hour = {two_hours_ago.replace(minute=0).timestamp(): "2h",
            last_hour.replace(minute=0).timestamp(): "1h"}

    def series(title: str) -> set[tuple[str, str, Any]]:
        return {(hour[float(t)], metric, value) for t, metric, value in results[title]}

    assert series("Revenue per chain per hour") == {
        ("2h", "base", Decimal("2.000000")), ("1h", "ethereum", Decimal("2.000000"))}
    assert series("Payments per chain per hour") == {("2h", "base", 2), ("1h", "ethereum", 1)}
    assert series("Requests per chain per hour (bought, and used so far)") == {
        ("2h", "base bought", 110), ("2h", "base used", 50),
        ("1h", "ethereum bought", 50), ("1h", "ethereum used", 0)}
    assert [r[:2] for r in results["Last 24 hours per chain"]] == [("base", 2), ("ethereum", 1)]
    assert [r[:2] for r in results["Endpoints, last 24 hours"]] == [("/api/weather", 1)]
    assert results["Top payers"][0][1] == 4  # one payer address, four counted payments (all time)
    assert {(r[0], r[1]) for r in results["Active payments per chain"]} == {
        ("base", 2), ("ethereum", 1)}  # unexpired with requests left, whenever verified
    assert ("base", "underpaid", 1, Decimal("0.100000")) in results[
        "Payments by status, in the time range"]


def test_the_expansion_is_grafanas():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert expand("SELECT $__timeGroupAlias(verified_at, '1h') WHERE $__timeFilter(created_at)",
                  at, at) == ("SELECT floor(extract(epoch from verified_at)/3600)*3600 AS \"time\""
                              " WHERE created_at BETWEEN '2026-01-02T03:04:05Z' AND "
                              "'2026-01-02T03:04:05Z'")


def test_every_prometheus_expression_names_exported_metrics_and_parses(tmp_path):
    exported = exported_names()
    for title, expr in prom_exprs():
        names = promql_metrics(expr)
        assert names, title
        assert names <= exported, (title, names - exported)
    # Grafana's $__rate_interval as a duration, each expression a recording rule: promtool parses.
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"x402_dashboard:expr{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(prom_exprs())]}]}), encoding="utf-8")
    done = promtool("check", "rules", rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_metric_the_daemon_does_not_export_is_caught():
    names: Callable[[str], set[str]] = promql_metrics
    assert names("max by (chain) (x402_chain_lag_secs)") - exported_names() == {
        "x402_chain_lag_secs"}
