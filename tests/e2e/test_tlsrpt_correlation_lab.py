"""TLS-RPT failures beside a real rollover: a rollover run to done in the lab (BIND, unbound, a
STARTTLS server), then synthetic RFC 8460 reports, one covering its window with tlsa-invalid
failures for its host; `rollover tlsrpt summary --json` must list the rollover's phases and
point events from its history beside those failures, and exit 2."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.rollover_env import REPO, ServiceEnv

pytestmark = pytest.mark.lab

# The entry point with the tlsrpt commands registered, whether or not rollover/cli/__init__.py
# lists them yet.
ENTRY = (
    "from rollover.cli import COMMAND_MODULES, main; "
    "COMMAND_MODULES.setdefault('tlsrpt', 'tlsrpt_cmd'); main()"
)


def tlsrpt(env: ServiceEnv, *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
    result = subprocess.run(
        [sys.executable, "-c", ENTRY, "tlsrpt", *args, "--config", str(env.config)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    env.transcript.append(result.stdout + result.stderr)
    return result


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_report(
    report_id: str, org: str, host: str, start: datetime, end: datetime, failed: int
) -> dict[str, Any]:
    """An RFC 8460 section 4.4 report of a DANE sender to ``host``: ``failed`` tlsa-invalid
    sessions (the shape large senders send: ``mx-host`` as the erratum's array)."""
    return {
        "organization-name": org,
        "date-range": {"start-datetime": rfc3339(start), "end-datetime": rfc3339(end)},
        "contact-info": f"mailto:tlsrpt@{org.lower().replace(' ', '-')}.example",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "tlsa",
                    "policy-string": [f"_25._tcp.{host}. IN TLSA 3 1 1 00"],
                    "policy-domain": host,
                    "mx-host": [host],
                },
                "summary": {
                    "total-successful-session-count": 250,
                    "total-failure-session-count": failed,
                },
                "failure-details": [
                    {
                        "result-type": "tlsa-invalid",
                        "sending-mta-ip": "192.0.2.44",
                        "receiving-mx-hostname": host,
                        "receiving-ip": "127.0.0.1",
                        "failed-session-count": failed,
                        "failure-reason-code": "no TLSA record matches the presented chain",
                    }
                ],
            }
        ],
    }


def at(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_summary_puts_the_rollover_beside_the_failures(env: ServiceEnv, tmp_path: Path) -> None:
    started = env.start_rollover()
    assert started.returncode == 0, started.stderr
    run = env.rollover("run", env.name, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    assert history[0]["event"] == "start", history[0]
    done = [h for h in history if h["event"] == "transition" and h["detail"]["to"] == "done"]
    assert len(done) == 1, history
    rollover_id = history[0]["rollover"]
    began, ended = at(history[0]["at"]), at(done[0]["at"])

    # Reports as senders would send them (second resolution, as RFC 3339 dates are sent):
    # one covering the rollover with failures, one the day before with failures, one of
    # another host; gzip files as attachments carry them.
    window = (began - timedelta(minutes=1), ended + timedelta(minutes=1))
    reports = {
        "during.json.gz": synthetic_report("during-1", "Big Sender", env.host, *window, failed=14),
        "before.json.gz": synthetic_report(
            "before-1",
            "Early Sender",
            env.host,
            began - timedelta(days=2),
            began - timedelta(days=1),
            failed=3,
        ),
        "other.json.gz": synthetic_report(
            "other-1", "Big Sender", "mx-elsewhere.example.test", *window, failed=5
        ),
    }
    inbox = tmp_path / "reports"
    inbox.mkdir()
    for name, document in reports.items():
        (inbox / name).write_bytes(gzip.compress(json.dumps(document).encode()))

    ingested = tlsrpt(env, "ingest", str(inbox))
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.strip() == "tlsrpt: 3 read, 3 new, 0 duplicate, 0 warnings"
    again = tlsrpt(env, "ingest", str(inbox))
    assert again.stdout.strip() == "tlsrpt: 3 read, 0 new, 3 duplicate, 0 warnings"

    summary = tlsrpt(env, "summary", "--json")
    assert summary.returncode == 2, summary.stdout + summary.stderr
    rows = {(r["mx_host"], r["result_type"]): r for r in json.loads(summary.stdout)}
    failing = rows[(env.host, "tlsa-invalid")]
    assert failing["failed_sessions"] == 14 + 3
    assert failing["organizations"] == ["Big Sender", "Early Sender"]
    assert at(failing["first_seen"]) == (began - timedelta(days=2)).replace(microsecond=0)
    events = failing["rollover_events"]
    assert events, "the failures must be put beside the rollover"
    assert {(e["service"], e["rollover"]) for e in events} == {(env.name, rollover_id)}

    # Every phase the rollover went through, from the transition into it to the one out.
    entered = {
        h["detail"]["to"]: at(h["at"])
        for h in history
        if h["event"] == "transition" and h["detail"].get("to") != h["detail"].get("from")
    }
    entered["publishing"] = began
    phases = {e["phase"]: e for e in events if "phase" in e}
    assert set(phases) == set(entered) - {"done"}
    for phase, event in phases.items():
        assert at(event["from"]) == entered[phase], phase
        assert event["until"] is not None
        assert at(event["until"]) >= at(event["from"])
    assert at(phases["verifying"]["until"]) == entered["done"]
    # The deploy and the DNS changes, at the times the history has them.
    points = sorted((e["event"], at(e["at"])) for e in events if "event" in e)
    expected = sorted(
        (h["event"], at(h["at"]))
        for h in history
        if h["event"] in {"deploy", "provider-change", "provider-change-seen"}
    )
    assert points == expected
    assert [p for p, _ in points].count("deploy") == 1
    assert [p for p, _ in points].count("provider-change") >= 2  # publish and retire
    # (an action's event is stamped when it is done, after the decision time its transition
    # carries: the deploy may follow the deploying -> cutting_over entry by milliseconds)
    deploy = next(moment for name, moment in points if name == "deploy")
    assert at(phases["deploying"]["from"]) <= deploy <= ended

    # The successes row and the other host carry no rollover events.
    assert rows[(env.host, None)]["successful_sessions"] == 500
    assert rows[(env.host, None)]["rollover_events"] == []
    assert rows[("mx-elsewhere.example.test", "tlsa-invalid")]["rollover_events"] == []

    # --domain keeps the host's rows only; --since after every report's end leaves none.
    mine = tlsrpt(env, "summary", "--json", "--domain", env.host)
    assert mine.returncode == 2
    assert {r["mx_host"] for r in json.loads(mine.stdout)} == {env.host}
    later = (ended + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    none = tlsrpt(env, "summary", "--json", "--since", later)
    assert (none.returncode, json.loads(none.stdout)) == (0, [])

    text = tlsrpt(env, "summary", "--domain", env.host)
    assert text.returncode == 2
    assert f"rollover #{rollover_id} of {env.name}: deploy at " in text.stdout
    print("\n$ rollover tlsrpt summary --domain", env.host)
    print(text.stdout)
    print("$ rollover tlsrpt summary --json --domain", env.host)
    print(mine.stdout)
