"""ops/prometheus/x402-verifier.rules.yml: `promtool check rules` accepts it, `promtool test
rules` passes its cases (x402-verifier.rules.test.yml: the chain-unwatched, verifier-absent,
watcher-behind and wrong-chain alerts fire on the series that should and not on the others),
and every metric a rule reads is one the daemon exports. promtool comes from the Debian package
`prometheus` (`make install` puts it there as root): without it these tests fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.ops.exported_metrics import PROBE_METRICS, exported_names, promql_metrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "ops" / "prometheus" / "x402-verifier.rules.yml"
CASES = REPO / "ops" / "prometheus" / "x402-verifier.rules.test.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (or make install, as root)"
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=60,
                          check=False)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
            for r in g["rules"]]


def test_promtool_checks_the_rules():
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_runs_the_alert_cases():
    done = promtool("test", "rules", CASES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    tested = {t["alertname"] for case in cases["tests"] for t in case["alert_rule_test"]}
    assert {"X402ChainUnwatched", "X402WatcherBehind"} <= tested


def test_a_wrong_expectation_fails(tmp_path):
    """The cases are really compared: the unwatched chain named wrongly is a failure."""
    text = CASES.read_text(encoding="utf-8")
    assert "chain: ethereum" in text
    bad = tmp_path / CASES.name
    bad.write_text(text.replace("chain: ethereum", "chain: base")
                   .replace("- x402-verifier.rules.yml", f"- {RULES}"), encoding="utf-8")
    done = promtool("test", "rules", bad)
    assert done.returncode != 0 and "X402ChainUnwatched" in done.stdout + done.stderr


def test_every_rule_reads_metrics_the_daemon_exports():
    exported = exported_names() | PROBE_METRICS
    for rule in rules():
        names = promql_metrics(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], names - exported)


def test_the_readme_points_to_the_rules_file():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "ops/prometheus/x402-verifier.rules.yml" in readme
    for rule in rules():  # the README's example rule is the file's, word for word
        if f"alert: {rule['alert']}" in readme:
            assert rule["expr"].strip() in readme, rule["alert"]
