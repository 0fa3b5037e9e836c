"""The Prometheus rendering: one gauge per service and phase, the wait, the held flag."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rollover.core.phases import Phase, Rollover
from rollover.render.metrics import ServiceMetrics, render_metrics

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BASE = Rollover(
    service="mx1",
    owner="_25._tcp.mx1.example.test.",
    phase=Phase.PROPAGATING,
    old=frozenset(),
    new=frozenset(),
    staged_chain="/s/chain.pem",
    staged_key="/s/key.pem",
    staged_spki="00",
    started_at=NOW - timedelta(minutes=5),
    since=NOW - timedelta(minutes=1),
)


def gauge(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            return line.rsplit(" ", 1)[1]
    return None


@pytest.mark.parametrize(
    ("rollover", "held"),
    [
        (BASE, "0"),
        (replace(BASE, error="resolver 127.0.0.1:53 (bogus: SERVFAIL)"), "1"),
        (replace(BASE, phase=Phase.DEPLOYING, error="reload command exited 1"), "1"),
        (replace(BASE, phase=Phase.FAILED, error="the server still presents another key"), "0"),
        (replace(BASE, phase=Phase.DONE), "0"),
    ],
)
def test_held(rollover: Rollover, held: str) -> None:
    text = render_metrics([ServiceMetrics("mx1", rollover)], NOW)
    assert gauge(text, "rollover_held") == held
    assert f'rollover_phase{{service="mx1",phase="{rollover.phase}"}} 1' in text


def test_wait_and_age() -> None:
    waiting = replace(BASE, waiting_until=NOW + timedelta(seconds=90))
    entry = ServiceMetrics("mx1", waiting, verify_exit=2, expiry_days=30, signatures_seconds=864e3)
    text = render_metrics([entry], NOW)
    assert gauge(text, "rollover_signatures_seconds_left") == "864000"
    assert gauge(text, "rollover_seconds_until_next_step") == "90"
    assert gauge(text, "rollover_seconds_since_last_step") == "60"
    assert gauge(text, "rollover_verify_status") == "2"
    assert gauge(text, "rollover_certificate_expiry_days") == "30"
    assert gauge(text, "rollover_metrics_timestamp_seconds") == f"{NOW.timestamp():.0f}"


def test_no_rollover_and_odd_names() -> None:
    text = render_metrics([ServiceMetrics('m"x\\1', None)], NOW)
    assert gauge(text, "rollover_held") is None  # no rollover: nothing to hold
    assert gauge(text, "rollover_signatures_seconds_left") is None  # nothing known
    assert 'service="m\\"x\\\\1"' in text
