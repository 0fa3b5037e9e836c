"""`rollover metrics` and the on_event hook, after a real rollover against the lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.lab import Lab
from tests.rollover_env import ServiceEnv

pytestmark = pytest.mark.lab


def test_metrics_and_on_event_after_a_rollover(lab: Lab, tmp_path: Path) -> None:
    env = ServiceEnv(lab, tmp_path)
    env.setup()
    try:
        events = tmp_path / "events.txt"
        doc = yaml.safe_load(env.config.read_text())
        doc["on_event"] = (
            f'echo "$ROLLOVER_SERVICE $ROLLOVER_EVENT $ROLLOVER_PHASE '
            f'$ROLLOVER_MESSAGE" >> {events}'
        )
        doc["on_event_shell"] = True
        env.config.write_text(yaml.safe_dump(doc))
        before = env.rollover("metrics")
        assert before.returncode == 0, before.stderr
        assert f'rollover_verify_status{{service="{env.name}"}} 0' in before.stdout
        assert f'rollover_phase{{service="{env.name}",phase="done"}} 0' in before.stdout
        assert env.start_rollover().returncode == 0
        mid = env.rollover("metrics", "--no-verify")
        assert (
            f'rollover_phase{{service="{env.name}",phase="aging"}} 1' in mid.stdout
            or f'rollover_phase{{service="{env.name}",phase="propagating"}} 1' in mid.stdout
        )
        assert (
            "rollover_verify_status"
            not in mid.stdout.split("# TYPE rollover_verify_status gauge")[1].split("#")[0]
        )
        assert env.rollover("run", env.name).returncode == 0
        out = tmp_path / "rollover.prom"
        after = env.rollover("metrics", "--output", str(out))
        assert after.returncode == 0
        assert after.stdout == ""
        text = out.read_text()
        assert f'rollover_phase{{service="{env.name}",phase="done"}} 1' in text
        assert f'rollover_verify_status{{service="{env.name}"}} 0' in text
        days = [
            line
            for line in text.splitlines()
            if line.startswith("rollover_certificate_expiry_days")
        ]
        assert days
        assert 80 <= int(days[0].split()[-1]) <= 90
        # The lab signs for 14 days (BIND's default sig-validity-interval is longer; the lab
        # sets it): the earliest TLSA or DNSKEY signature expires within that.
        left = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(f'rollover_signatures_seconds_left{{service="{env.name}"}}')
        ]
        assert left, text
        assert 3600 < left[0] <= 15 * 86400, left
        assert events.read_text().split()[:3] == [env.name, "done", "done"]
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] == "done"
    finally:
        env.stop_server()
