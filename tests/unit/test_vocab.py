"""The typed vocabulary and what is written about it."""

from __future__ import annotations

import re
from pathlib import Path

from verifier import metrics, vocab

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_reasons() -> set[str]:
    """Every code in the first column of the README's "Reason codes" table."""
    section = README.read_text().split("### Reason codes", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines()[1:] if line.startswith("|")][2:]
    found: set[str] = set()
    for row in rows:
        found.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return found


def test_the_readme_lists_exactly_the_reason_codes() -> None:
    assert readme_reasons() == set(vocab.REASONS)


def test_every_not_paid_reason_is_a_reason() -> None:
    assert set(vocab.NOT_PAID) <= set(vocab.REASONS)


def test_metrics_label_the_typed_statuses() -> None:
    assert metrics.PAYMENT_STATUSES == vocab.PAYMENT_STATUSES
    assert metrics.CLAIM_STATUSES == vocab.CLAIM_STATUSES
    assert "verified" in vocab.PAYMENT_STATUSES and "issued" in vocab.CLAIM_STATUSES
