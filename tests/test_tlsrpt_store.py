"""The TLS-RPT report store (rollover.state.tlsrpt_store) on both backends: SQLite (a table in
state.db, on the state store's connection) and PostgreSQL (migration 2, against a real
PostgreSQL: tests/postgres.py)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollover.core.phases import Phase
from rollover.errors import StateError
from rollover.ports import ReportStore
from rollover.state import migrations
from rollover.state.backends import StateBackend
from rollover.state.ownership import OwnershipStore
from rollover.state.postgres import PostgresOwnership, PostgresStateStore, migrate
from rollover.state.store import SqliteStateStore
from rollover.state.tlsrpt_store import PostgresReportStore, SqliteReportStore, report_store
from rollover.tlsrpt.report import Report, parse_report, report_from_json
from tests.postgres import PostgresCluster
from tests.test_phases import rollover

CORPUS = Path(__file__).resolve().parent / "tlsrpt_corpus" / "good"
SOURCE = "/etc/rollover/pg.dsn"
INGESTED = datetime(2026, 12, 1, 6, 30, 15, 123456, tzinfo=UTC)


def corpus(name: str) -> Report:
    return parse_report((CORPUS / name).read_bytes(), name)


def shifted(report: Report, report_id: str, days: int) -> Report:
    """``report`` under another id, its date range ``days`` later."""
    from rollover.tlsrpt.report import report_json

    document: dict[str, Any] = copy.deepcopy(report_json(report))
    document["report-id"] = report_id
    for key in ("start-datetime", "end-datetime"):
        moment = datetime.fromisoformat(document["date-range"][key]) + timedelta(days=days)
        document["date-range"][key] = moment.isoformat()
    return report_from_json(document)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.lab)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    if request.param == "sqlite":
        sqlite = SqliteStateStore(str(tmp_path / "state"))
        ownership = OwnershipStore(
            str(tmp_path / "state"), connection=sqlite.connection, lock=sqlite.lock
        )
        yield StateBackend(sqlite, ownership, str(sqlite.path))
        sqlite.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    cluster.start()
    _, dsn = cluster.fresh_schema()
    assert migrate(dsn, SOURCE) == (0, 2)
    store = PostgresStateStore(dsn, source=SOURCE)
    yield StateBackend(store, PostgresOwnership(store), SOURCE)
    store.close()


def test_add_read_back_and_deduplicate(backend: StateBackend) -> None:
    reports = report_store(backend)
    kind = SqliteReportStore if isinstance(backend.store, SqliteStateStore) else PostgresReportStore
    assert isinstance(reports, kind)
    assert (reports.count(), reports.newest_end(), reports.reports()) == (0, None, [])
    dane = corpus("dane-mx1.json")
    microsoft = corpus("microsoft-sts.json")  # deviations kept with the report
    assert reports.add(dane, INGESTED) == "new"
    assert reports.add(microsoft, INGESTED + timedelta(seconds=1)) == "new"
    assert reports.add(dane, INGESTED + timedelta(hours=1)) == "duplicate"
    assert reports.count() == 2
    stored = reports.reports()
    assert [s.report for s in stored] == sorted([dane, microsoft], key=lambda r: r.start)
    assert {s.report.report_id: s.ingested_at for s in stored}[dane.report_id] == INGESTED
    assert next(s.report for s in stored if s.report == microsoft).deviations
    assert reports.newest_end() == max(dane.end, microsoft.end)


def test_a_reused_id_keeps_the_first(backend: StateBackend) -> None:
    reports = report_store(backend)
    first = corpus("dane-mx1.json")
    document = json.loads((CORPUS / "dane-mx1.json").read_text())
    document["policies"][0]["summary"]["total-failure-session-count"] = 99
    other = parse_report(json.dumps(document).encode(), "other")
    assert other.report_id == first.report_id
    assert reports.add(first, INGESTED) == "new"
    assert reports.add(other, INGESTED) == "conflict"
    assert [s.report for s in reports.reports()] == [first]


def test_since_reads_reports_ending_after_it(backend: StateBackend) -> None:
    reports = report_store(backend)
    base = corpus("rfc8460-appendix-b.json")
    days = [shifted(base, f"day-{n}", n) for n in (2, 0, 1)]
    for report in days:
        assert reports.add(report, INGESTED) == "new"
    ordered = sorted(days, key=lambda r: r.start)
    assert [s.report for s in reports.reports()] == ordered
    assert [s.report for s in reports.reports(since=ordered[1].start)] == ordered[1:]
    assert [s.report for s in reports.reports(since=ordered[1].end)] == ordered[2:]
    assert reports.reports(since=ordered[2].end) == []
    assert reports.newest_end() == ordered[2].end


def test_reports_live_beside_the_rollovers(tmp_path: Path) -> None:
    """One state.db: the rollovers' tables untouched, the reports there after a reopen, the
    file still 0600."""
    directory = tmp_path / "state"
    store = SqliteStateStore(str(directory))
    created = store.create(rollover(Phase.PUBLISHING))
    backend = StateBackend(
        store, OwnershipStore(str(directory), connection=store.connection, lock=store.lock), "x"
    )
    assert report_store(backend).add(corpus("dane-mx1.json"), INGESTED) == "new"
    store.close()
    again = SqliteStateStore(str(directory))
    reopened: ReportStore = SqliteReportStore(again)
    assert [s.report.report_id for s in reopened.reports()] == [corpus("dane-mx1.json").report_id]
    current = again.current("mx1")
    assert current is not None
    assert current.id == created.id
    tables = {
        r[0]
        for r in again.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"rollovers", "history", "tlsrpt_reports"} <= tables
    again.close()
    assert (directory / "state.db").stat().st_mode & 0o777 == 0o600


def test_an_unknown_backend_has_no_report_store() -> None:
    with pytest.raises(StateError, match="keeps no TLS-RPT reports"):
        report_store(StateBackend(object(), object(), "memory"))  # type: ignore[arg-type]


# -- PostgreSQL only -------------------------------------------------------------------------
@pytest.mark.lab
def test_migration_2_upgrades_a_version_1_schema(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.start()
    schema, dsn = postgres.fresh_schema()
    with monkeypatch.context() as patch:  # this rollover as it was before migration 2
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        patch.setattr(migrations, "LATEST", 1)
        assert migrate(dsn, SOURCE) == (0, 1)
        old = PostgresStateStore(dsn, source=SOURCE)
        created = old.create(rollover(Phase.PUBLISHING))
        old.close()
    with pytest.raises(StateError, match=r"version 1 is older than this rollover needs \(2\)"):
        PostgresStateStore(dsn, source=SOURCE)
    assert migrate(dsn, SOURCE) == (1, 2)
    assert postgres.psql(
        "SELECT version FROM rollover_schema_version ORDER BY 1", schema=schema
    ) == [(1,), (2,)]
    store = PostgresStateStore(dsn, source=SOURCE)
    current = store.current("mx1")
    assert current is not None
    assert current.id == created.id
    reports = PostgresReportStore(store)
    assert reports.add(corpus("dane-mx1.json"), INGESTED) == "new"
    rows = postgres.psql(
        "SELECT report_id, organization, start_at, end_at FROM rollover_tlsrpt_reports",
        schema=schema,
    )
    dane = corpus("dane-mx1.json")
    assert rows == [(dane.report_id, dane.organization_name, dane.start, dane.end)]
    store.close()


@pytest.mark.lab
def test_concurrent_ingests_of_one_report_store_it_once(postgres: PostgresCluster) -> None:
    postgres.start()
    _, dsn = postgres.fresh_schema()
    migrate(dsn, SOURCE)
    stores = [PostgresStateStore(dsn, source=SOURCE) for _ in range(4)]
    dane = corpus("dane-mx1.json")
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def add(store: PostgresStateStore) -> None:
        barrier.wait()
        outcomes.append(PostgresReportStore(store).add(dane, INGESTED))

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["duplicate"] * 3 + ["new"]
    assert PostgresReportStore(stores[0]).count() == 1
    for store in stores:
        store.close()
