"""`rollover tlsrpt ingest | summary` through the real entry point (rollover.cli.main, in
process), the ``imap:`` settings, the tlsrpt-failure event, and the metrics lines. SQLite in the
fast tests; PostgreSQL and Dovecot in the lab ones."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollover.config import Config, Section
from rollover.core.phases import Phase, Rollover
from rollover.errors import ConfigError
from rollover.render.tlsrpt_metrics import last_window, render_tlsrpt_metrics
from rollover.state.store import SqliteStateStore
from rollover.tlsrpt.imap import ImapSettings
from rollover.tlsrpt.report import Report, parse_report, report_digest
from rollover.tlsrpt.settings import parse_imap
from rollover.tlsrpt.sources import Limits, read_reports
from tests.test_phases import rollover

CORPUS = Path(__file__).resolve().parent / "tlsrpt_corpus"
GOOD, BAD = CORPUS / "good", CORPUS / "bad"
DANE_DAY = datetime(2026, 11, 30, tzinfo=UTC)  # good/dane-mx1.json: 14 tlsa-invalid to mx1

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``rollover ARGS`` through rollover.cli.main: (exit code, stdout, stderr)."""
    from rollover import cli as entry
    from rollover.cli import common

    monkeypatch.setitem(entry.COMMAND_MODULES, "tlsrpt", "tlsrpt_cmd")
    monkeypatch.setitem(common.LOG_FORMAT, "value", "text")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["rollover", *args])
        with pytest.raises(SystemExit) as exited:
            entry.main()
        out = capsys.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else 1), out.out, out.err

    return run


def write_config(directory: Path, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "providers": {"z": {"type": "zonefile", "path": "/dev/null", "zone": "example.test"}},
        "state_dir": str(directory / "state"),
        "services": {
            "mx1": {"host": "mx1.example.test", "provider": "z"},
            "mx2": {"host": "mx2.example.test", "provider": "z"},
        },
    }
    doc.update(extra)
    path = directory / "rollover.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def at(hours: float) -> datetime:
    return DANE_DAY + timedelta(hours=hours)


def record_rollover(state_dir: Path, service: str = "mx1") -> Rollover:
    """A rollover of ``service`` through every phase on the day of good/dane-mx1.json."""
    store = SqliteStateStore(str(state_dir))
    try:
        r = store.create(replace(rollover(Phase.PUBLISHING), service=service))
        store.append(r, at(9), "start", {})
        store.append(r, at(9.01), "provider-change", {"added": ["3 1 1 aa"]})
        steps = [
            (Phase.PROPAGATING, 9.02),
            (Phase.AGING, 9.5),
            (Phase.DEPLOYING, 10),
            (Phase.CUTTING_OVER, 10.1),
            (Phase.RETIRING, 11),
            (Phase.VERIFYING, 11.1),
            (Phase.DONE, 12),
        ]
        for phase, hours in steps:
            if phase == Phase.CUTTING_OVER:
                store.append(r, at(10.05), "deploy", {"chain": "x"})
            if phase == Phase.VERIFYING:
                store.append(r, at(11.05), "provider-change", {"removed": ["3 1 1 bb"]})
            previous = r.phase
            r = replace(r, phase=phase)
            store.append(r, at(hours), "transition", {"from": previous.value, "to": phase.value})
        return store.save(r)
    finally:
        store.close()


def expected_ingest(*sources: Path) -> tuple[int, int, int, int]:
    """(read, new, duplicate, conflicts) as ingesting ``sources`` into an empty store must
    count them: computed from the corpus itself."""
    first: dict[str, str] = {}
    read = conflicts = 0
    for _, report in read_reports([str(s) for s in sources], Limits(), lambda _line: None):
        read += 1
        digest = first.setdefault(report.report_id, report_digest(report))
        conflicts += digest != report_digest(report)
    return read, len(first), read - len(first), conflicts


def counts(line: str) -> tuple[int, int, int, int]:
    words = line.replace(",", "").split()
    assert words[0] == "tlsrpt:", line
    return int(words[1]), int(words[3]), int(words[5]), int(words[7])


# -- ingest ----------------------------------------------------------------------------------
def test_ingest_the_corpus_then_again(cli: Run, config: Path) -> None:
    read, new, duplicate, conflicts = expected_ingest(GOOD)
    assert conflicts  # the corpus reuses one report-id for two senders' reports
    code, out, err = cli("tlsrpt", "ingest", str(GOOD), "--config", str(config))
    assert code == 0, err
    assert counts(out.strip()) == (read, new, duplicate, conflicts)
    warnings = err.splitlines()
    assert len(warnings) == conflicts
    assert all("is stored with other content; the first report kept" in w for w in warnings)
    code, out, err = cli("tlsrpt", "ingest", str(GOOD), "--config", str(config))
    assert code == 0
    assert counts(out.strip()) == (read, 0, read, conflicts)


def test_ingest_warns_once_per_bad_input_and_goes_on(cli: Run, config: Path) -> None:
    names = sorted(p.name for p in BAD.iterdir())
    code, out, err = cli(
        "tlsrpt", "ingest", str(BAD), str(GOOD / "dane-mx1.json"), "--config", str(config)
    )
    assert code == 0, err
    assert counts(out.strip()) == (1, 1, 0, len(names))
    lines = err.splitlines()
    assert len(lines) == len(names)
    for name in names:
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert all(line.startswith("rollover: warning: ") for line in lines)


def test_a_missing_source_is_exit_3_and_nothing_stored(
    cli: Run, config: Path, tmp_path: Path
) -> None:
    code, out, err = cli(
        "tlsrpt",
        "ingest",
        str(GOOD / "dane-mx1.json"),
        str(tmp_path / "nope.json"),
        "--config",
        str(config),
    )
    assert code == 3
    assert "nope.json" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = cli("tlsrpt", "summary", "--json", "--config", str(config))
    assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        ((), 3, "give a SOURCE"),
        (("--imap",), 4, "imap: not configured"),
    ],
)
def test_ingest_usage_errors(
    cli: Run, config: Path, args: tuple[str, ...], status: int, needle: str
) -> None:
    code, _, err = cli("tlsrpt", "ingest", *args, "--config", str(config))
    assert code == status
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_tlsrpt_failure_event_for_new_dane_failures_only(cli: Run, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    script = (
        "import json, os, sys; "
        "keep = {k: v for k, v in os.environ.items() if k.startswith('ROLLOVER_')}; "
        "open(sys.argv[1], 'a').write(json.dumps(keep) + '\\n')"
    )
    config = write_config(tmp_path, on_event=[sys.executable, "-c", script, str(events)])
    record_rollover(tmp_path / "state")
    # the DANE report (mx1: tlsa-invalid) and one of non-DANE failures only (Google, sts)
    sources = [str(GOOD / "dane-mx1.json"), str(GOOD / "google-sts.json")]
    code, _, err = cli("tlsrpt", "ingest", *sources, "--config", str(config))
    assert code == 0, err
    fired = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(fired) == 1
    event = fired[0]
    assert event["ROLLOVER_EVENT"] == "tlsrpt-failure"
    assert event["ROLLOVER_SERVICE"] == "mx1"
    assert event["ROLLOVER_PHASE"] == "done"
    assert event["ROLLOVER_OWNER"] == "_25._tcp.mx1.example.test."
    assert event["ROLLOVER_TLSRPT_MX_HOST"] == "mx1.example.test"
    assert event["ROLLOVER_TLSRPT_RESULT_TYPES"] == "tlsa-invalid"
    assert event["ROLLOVER_TLSRPT_FAILED_SESSIONS"] == "14"
    assert event["ROLLOVER_TLSRPT_START"] == "2026-11-30T00:00:00Z"
    assert "14 tlsa-invalid sessions to mx1.example.test" in event["ROLLOVER_MESSAGE"]
    code, _, _ = cli("tlsrpt", "ingest", *sources, "--config", str(config))
    assert code == 0
    assert len(events.read_text().splitlines()) == 1  # a duplicate fires nothing


def test_a_failing_on_event_command_is_a_warning(cli: Run, tmp_path: Path) -> None:
    config = write_config(tmp_path, on_event=[sys.executable, "-c", "import sys; sys.exit(5)"])
    code, out, err = cli("tlsrpt", "ingest", str(GOOD / "dane-mx1.json"), "--config", str(config))
    assert code == 0
    assert counts(out.strip()) == (1, 1, 0, 0)  # the command's warning is not the ingest's
    assert "on_event command exited 5" in err


# -- summary ---------------------------------------------------------------------------------
def test_summary_json_correlates_the_rollover(cli: Run, config: Path, tmp_path: Path) -> None:
    done = record_rollover(tmp_path / "state")
    code, _, err = cli("tlsrpt", "ingest", str(GOOD), "--config", str(config))
    assert code == 0, err
    code, out, err = cli(
        "tlsrpt", "summary", "--json", "--since", "2026-11-30", "--config", str(config)
    )
    assert code == 2, err
    rows = json.loads(out)
    failing = [r for r in rows if r["result_type"] == "tlsa-invalid"]
    assert len(failing) == 1
    row = failing[0]
    assert (row["policy_domain"], row["policy_type"], row["mx_host"]) == (
        "mx1.example.test",
        "tlsa",
        "mx1.example.test",
    )
    assert (row["failed_sessions"], row["organizations"]) == (14, ["DANE Sender Example"])
    assert (row["first_seen"], row["last_seen"]) == ("2026-11-30T00:00:00Z", "2026-11-30T23:59:59Z")
    events = row["rollover_events"]
    assert {e["rollover"] for e in events} == {done.id}
    phases = [(e["phase"], e["from"], e["until"]) for e in events if "phase" in e]
    assert phases[0] == ("publishing", "2026-11-30T09:00:00Z", "2026-11-30T09:01:12Z")
    assert [p[0] for p in phases] == [
        "publishing",
        "propagating",
        "aging",
        "deploying",
        "cutting_over",
        "retiring",
        "verifying",
    ]
    points = [(e["event"], e["at"]) for e in events if "event" in e]
    assert points == [
        ("provider-change", "2026-11-30T09:00:36Z"),
        ("deploy", "2026-11-30T10:03:00Z"),
        ("provider-change", "2026-11-30T11:03:00Z"),
    ]
    successes = [r for r in rows if r["mx_host"] == "mx1.example.test" and r["result_type"] is None]
    assert successes[0]["successful_sessions"] == 640
    assert successes[0]["rollover_events"] == []
    # mx2 has no rollover; reports before --since are left out
    assert all(r["last_seen"] > "2026-11-30" for r in rows)


@pytest.mark.parametrize(
    ("args", "status", "any_rows"),
    [
        (("--since", "2026-12-01"), 0, False),  # nothing ends after it
        (("--since", "2026-11-28T12:00:00+00:00", "--domain", "example.org"), 0, False),
        (("--domain", "company-y.example"), 1, True),  # RFC 8460 Appendix B: non-DANE only
        (("--since", "2026-11-29", "--domain", "mx2.example.test"), 1, True),  # non-DANE only
        (("--since", "2026-11-29", "--domain", "mx1.example.test"), 2, True),  # tlsa-invalid
        ((), 2, True),
    ],
)
def test_summary_exit_codes(
    cli: Run, config: Path, args: tuple[str, ...], status: int, any_rows: bool
) -> None:
    assert cli("tlsrpt", "ingest", str(GOOD), "--config", str(config))[0] == 0
    code, out, err = cli("tlsrpt", "summary", "--json", *args, "--config", str(config))
    assert code == status, err
    assert bool(json.loads(out)) == any_rows


def test_summary_text(cli: Run, config: Path, tmp_path: Path) -> None:
    number = record_rollover(tmp_path / "state").id
    assert cli("tlsrpt", "ingest", str(GOOD / "dane-mx1.json"), "--config", str(config))[0] == 0
    code, out, _ = cli("tlsrpt", "summary", "--config", str(config))
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == (
        "mx1.example.test tlsa mx1.example.test: 640 successful; "
        "2026-11-30T00:00:00Z to 2026-11-30T23:59:59Z; reported by DANE Sender Example"
    )
    assert lines[1].startswith("mx1.example.test tlsa mx1.example.test tlsa-invalid: 14 failed;")
    assert f"  rollover #{number} of mx1: deploy at 2026-11-30T10:03:00Z" in lines
    assert (
        f"  rollover #{number} of mx1: deploying from 2026-11-30T10:00:00Z to 2026-11-30T10:06:00Z"
    ) in lines


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "30/11/2026"])
def test_a_bad_since_is_exit_3(cli: Run, config: Path, since: str) -> None:
    code, _, err = cli("tlsrpt", "summary", "--since", since, "--config", str(config))
    assert code == 3
    assert "--since" in err


# -- the imap: section -------------------------------------------------------------------------
@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "imap.password"
    path.write_text("secret\n")
    path.chmod(0o600)
    return path


def imap_section(password: Path, **changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "host": "imap.example.net",
        "user": "tlsrpt",
        "password_file": str(password),
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_imap_defaults(password: Path) -> None:
    warnings: list[str] = []
    settings = parse_imap(Section(imap_section(password), "imap", "c.yaml"), warnings)
    assert settings == ImapSettings("imap.example.net", 993, "implicit", "tlsrpt", str(password))
    assert warnings == []
    password.chmod(0o644)
    parse_imap(
        Section(imap_section(password, port=143, tls="starttls"), "imap", "c.yaml"), warnings
    )
    assert len(warnings) == 1
    assert "imap.password_file" in warnings[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": None}, "c.yaml: imap.host: is required"),
        ({"tls": "none"}, "imap.tls: 'none': TLS is required"),
        ({"port": 0}, "imap.port: 0 is out of range"),
        ({"password_file": "/nonexistent/pw"}, "imap.password_file: /nonexistent/pw: no such file"),
        ({"flag": "two words"}, "imap.flag: 'two words'"),
        ({"flag": "\\Deleted"}, "imap.flag"),
        ({"done_folder": "INBOX"}, "imap.done_folder: is the folder read"),
        ({"ca_file": "/nonexistent/ca.pem"}, "imap.ca_file: /nonexistent/ca.pem: no such file"),
        ({"passwd": "x"}, "imap.passwd: unknown key"),
    ],
)
def test_imap_errors_name_the_key(password: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_imap(Section(imap_section(password, **changes), "imap", "c.yaml"), [])
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


# -- metrics ---------------------------------------------------------------------------------
def gauge(lines: list[str], prefix: str) -> str | None:
    found = [line.rsplit(" ", 1)[1] for line in lines if line.startswith(prefix)]
    assert len(found) <= 1, found
    return found[0] if found else None


def corpus_reports(*names: str) -> list[Report]:
    return [parse_report((GOOD / name).read_bytes(), name) for name in names]


def test_metrics_of_the_last_window() -> None:
    reports = corpus_reports(
        "dane-mx1.json", "provider-dane-all-types.json", "rfc8460-appendix-b.json"
    )
    newest = max(r.end for r in reports)
    now = newest + timedelta(hours=3)
    lines = render_tlsrpt_metrics(reports, now)
    assert [r.report_id for r in last_window(reports)] == [reports[0].report_id]  # the 30th only
    mx1 = 'policy_domain="mx1.example.test",policy_type="tlsa",mx_host="mx1.example.test"'
    assert gauge(lines, f"rollover_tlsrpt_successful_sessions{{{mx1}}}") == "640"
    assert (
        gauge(lines, f'rollover_tlsrpt_failed_sessions{{{mx1},result_type="tlsa-invalid"}}') == "14"
    )
    assert (
        gauge(lines, "rollover_tlsrpt_failed_sessions{" + mx1 + ',result_type="dnssec-invalid"}')
        is None
    )
    assert gauge(lines, "rollover_tlsrpt_reports ") == "1"
    assert gauge(lines, "rollover_tlsrpt_newest_report_age_seconds ") == str(3 * 3600)
    wide = render_tlsrpt_metrics(reports, now, window=timedelta(days=2))
    assert gauge(wide, f"rollover_tlsrpt_successful_sessions{{{mx1}}}") == str(640 + 9120)
    assert (
        gauge(wide, "rollover_tlsrpt_failed_sessions{" + mx1 + ',result_type="dnssec-invalid"}')
        == "12"
    )
    assert gauge(wide, "rollover_tlsrpt_reports ") == "2"
    for line in lines:
        assert line.startswith(("# ", "rollover_tlsrpt_"))


def test_metrics_without_reports() -> None:
    lines = render_tlsrpt_metrics([], datetime(2026, 12, 1, tzinfo=UTC))
    assert gauge(lines, "rollover_tlsrpt_reports ") == "0"
    assert gauge(lines, "rollover_tlsrpt_newest_report_age_seconds") is None
    assert any(line == "# TYPE rollover_tlsrpt_failed_sessions gauge" for line in lines)


def test_metrics_labels_are_escaped() -> None:
    document = json.loads((GOOD / "dane-mx1.json").read_text())
    document["policies"][0]["failure-details"][0]["result-type"] = 'x"\\y'
    report = parse_report(json.dumps(document).encode(), "x")
    lines = render_tlsrpt_metrics([report], report.end)
    assert any('result_type="x\\"\\\\y"} 14' in line for line in lines)


# -- PostgreSQL and IMAP (lab) ---------------------------------------------------------------
@pytest.mark.lab
def test_ingest_and_summary_on_postgresql(cli: Run, tmp_path: Path, postgres: Any) -> None:
    from rollover.state.postgres import migrate

    postgres.start()
    _, dsn = postgres.fresh_schema()
    dsn_file = tmp_path / "pg.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    migrate(dsn, str(dsn_file))
    config = write_config(tmp_path, state={"backend": "postgresql", "dsn_file": str(dsn_file)})
    read, new, duplicate, conflicts = expected_ingest(GOOD)
    code, out, err = cli("tlsrpt", "ingest", str(GOOD), "--config", str(config))
    assert code == 0, err
    assert counts(out.strip()) == (read, new, duplicate, conflicts)
    code, out, _ = cli("tlsrpt", "ingest", str(GOOD / "dane-mx1.json"), "--config", str(config))
    assert counts(out.strip()) == (1, 0, 1, 0)
    code, out, _ = cli(
        "tlsrpt", "summary", "--json", "--domain", "mx1.example.test", "--config", str(config)
    )
    assert code == 2
    rows = {(r["result_type"], r["first_seen"]): r for r in json.loads(out)}
    assert rows[("tlsa-invalid", "2026-11-29T00:00:00Z")]["failed_sessions"] == 31 + 14
    assert rows[(None, "2026-11-29T00:00:00Z")]["successful_sessions"] == 9120 + 640
    assert dsn not in out + err


@pytest.fixture
def dovecot() -> Iterator[Any]:
    from tests.dovecot import running_dovecot

    with running_dovecot() as server:
        yield server


def imap_for(server: Any) -> ImapSettings:
    from tests.dovecot import HOST

    return ImapSettings(
        host=HOST,
        port=server.imaps_port,
        tls="implicit",
        user=server.user,
        password_file=str(server.password_file),
        ca_file=str(server.ca_file),
        timeout=10,
    )


@pytest.mark.lab
def test_ingest_from_imap_marks_what_was_stored(dovecot: Any, tmp_path: Path) -> None:
    from rollover.cli.tlsrpt_cmd import ingest_reports
    from rollover.state.tlsrpt_store import SqliteReportStore

    for name in ("dane-report.eml", "microsoft-report.eml"):
        dovecot.append((GOOD / name).read_bytes())
    dovecot.append((BAD / "non-report-attachment.eml").read_bytes())
    store = SqliteStateStore(str(tmp_path / "state"))
    reports = SqliteReportStore(store)
    warnings: list[str] = []
    # the DANE report also as a file: the IMAP copy is a duplicate, and marked all the same
    counted = ingest_reports(
        reports, [str(GOOD / "dane-mx1.json")], imap_for(dovecot), Limits(), warnings.append
    )
    assert (counted.read, counted.new, counted.duplicate, counted.warnings) == (3, 2, 1, 1)
    assert "no TLS-RPT report in the message" in warnings[0]
    flags = [flag for flag, _ in dovecot.messages()]
    assert ["rollover-ingested" in f for f in flags] == [True, True, False]
    again = ingest_reports(reports, [], imap_for(dovecot), Limits(), warnings.append)
    assert (again.read, again.new) == (0, 0)
    assert reports.count() == 2
    store.close()


WIRED = "imap" in {f.name for f in dataclasses.fields(Config)}


@pytest.mark.lab
@pytest.mark.skipif(not WIRED, reason="rollover/config.py does not parse imap: yet")
def test_ingest_imap_from_the_configuration(cli: Run, dovecot: Any, tmp_path: Path) -> None:
    dovecot.append((GOOD / "dane-report.eml").read_bytes())
    settings = imap_for(dovecot)
    section = {
        "host": settings.host,
        "port": settings.port,
        "tls": "implicit",
        "user": settings.user,
        "password_file": settings.password_file,
        "ca_file": settings.ca_file,
    }
    config = write_config(tmp_path, imap=section)
    code, out, err = cli("tlsrpt", "ingest", "--imap", "--config", str(config))
    assert code == 0, err
    assert counts(out.strip()) == (1, 1, 0, 0)
    assert dovecot.password not in out + err
