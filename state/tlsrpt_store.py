"""The TLS-RPT reports `rollover tlsrpt ingest` kept, in the state store beside the rollovers
whose history they are read against: SQLite (a table in ``state.db``, on the state store's one
connection and under its lock) or PostgreSQL (``rollover_tlsrpt_reports``, migration 2 of
:mod:`rollover.state.migrations`).

One row per ``report-id``, which RFC 8460 section 4.1 makes unique per report: a report sent
twice, or ingested again from a mailbox and a file, is stored once (:meth:`add` says
``"duplicate"``). A sender that reuses an id for other content gets ``"conflict"``: the first
report is kept, and the caller warns. What is kept is the normalized report
(:func:`rollover.tlsrpt.report.report_json`: itself an RFC 8460 report), as JSON text (not
``jsonb``, which refuses a ``\\u0000`` escape a sender may have put in a string), with its
digest, organisation, date range and when it was ingested.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rollover.errors import InputError, StateError
from rollover.ports import Added, ReportStore, StoredReport
from rollover.state.files import serialized
from rollover.tlsrpt.report import Report, report_digest, report_from_json, report_json

if TYPE_CHECKING:
    from rollover.state.backends import StateBackend
    from rollover.state.postgres import PostgresStateStore
    from rollover.state.store import SqliteStateStore


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tlsrpt_reports (
    report_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    organization TEXT NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tlsrpt_reports_by_end ON tlsrpt_reports(end_at);
"""
# Fixed width, UTC: the SQLite columns compare as text in time order.
_TEXT_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def report_store(backend: StateBackend) -> ReportStore:
    """The report store of ``backend``, in the same database as its rollovers."""
    from rollover.state.postgres import PostgresStateStore
    from rollover.state.store import SqliteStateStore

    store = backend.store
    if isinstance(store, SqliteStateStore):
        return SqliteReportStore(store)
    if isinstance(store, PostgresStateStore):
        return PostgresReportStore(store)
    raise StateError(f"{backend.label}: this state backend keeps no TLS-RPT reports")


def sqlite_report_rows(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    """Every report of a SQLite state database (none if it never kept one), as the
    PostgreSQL table holds them (times as datetimes), by report id: for ``state import``."""
    if (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tlsrpt_reports'"
        ).fetchone()
        is None
    ):
        return []
    return [
        (
            r[0],
            r[1],
            r[2],
            _from_text_time(r[3]),
            _from_text_time(r[4]),
            _from_text_time(r[5]),
            r[6],
        )
        for r in db.execute(
            "SELECT report_id, digest, organization, start_at, end_at, ingested_at, report "
            "FROM tlsrpt_reports ORDER BY report_id"
        )
    ]


def _text_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TEXT_TIME)


def _from_text_time(text: str) -> datetime:
    return datetime.strptime(text, _TEXT_TIME).replace(tzinfo=UTC)


def _document(report: Report) -> str:
    return json.dumps(report_json(report), ensure_ascii=False, sort_keys=True)


def _stored(label: str, report_id: str, text: str, ingested_at: datetime) -> StoredReport:
    try:
        report = report_from_json(json.loads(text), f"{label}: stored report {report_id}")
    except (ValueError, InputError) as exc:
        raise StateError(f"{label}: a stored TLS-RPT report does not read back: {exc}") from None
    return StoredReport(report, ingested_at)


@serialized
class SqliteReportStore:
    """The ``tlsrpt_reports`` table of ``state.db``, created when absent."""

    def __init__(self, store: SqliteStateStore) -> None:
        self.lock = store.lock
        self.label = str(store.path)
        self._db = store.connection
        with self.lock:
            try:
                self._db.executescript(SQLITE_SCHEMA)
            except sqlite3.Error as exc:
                raise StateError(f"{self.label}: cannot open the report store: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"{self.label}: state store busy or locked: {exc}") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StateError(f"{self.label}: cannot write a report: {exc}") from None

    def add(self, report: Report, ingested_at: datetime) -> Added:
        digest = report_digest(report)
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT digest FROM tlsrpt_reports WHERE report_id = ?", (report.report_id,)
                ).fetchone()
                if row is not None:
                    return "duplicate" if row[0] == digest else "conflict"
                db.execute(
                    "INSERT INTO tlsrpt_reports (report_id, digest, organization, start_at, "
                    "end_at, ingested_at, report) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        report.report_id,
                        digest,
                        report.organization_name,
                        _text_time(report.start),
                        _text_time(report.end),
                        _text_time(ingested_at),
                        _document(report),
                    ),
                )
        except sqlite3.Error as exc:
            raise StateError(f"{self.label}: cannot write a report: {exc}") from None
        return "new"

    def reports(self, since: datetime | None = None) -> list[StoredReport]:
        sql = "SELECT report_id, report, ingested_at FROM tlsrpt_reports"
        params: tuple[str, ...] = ()
        if since is not None:
            sql, params = sql + " WHERE end_at > ?", (_text_time(since),)
        try:
            rows = self._db.execute(sql + " ORDER BY start_at, report_id", params).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"{self.label}: cannot read the reports: {exc}") from None
        return [_stored(self.label, r[0], r[1], _from_text_time(r[2])) for r in rows]

    def newest_end(self) -> datetime | None:
        try:
            row = self._db.execute("SELECT max(end_at) FROM tlsrpt_reports").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"{self.label}: cannot read the reports: {exc}") from None
        return None if row is None or row[0] is None else _from_text_time(row[0])

    def count(self) -> int:
        try:
            row = self._db.execute("SELECT count(*) FROM tlsrpt_reports").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"{self.label}: cannot read the reports: {exc}") from None
        return int(row[0]) if row else 0


@serialized
class PostgresReportStore:
    """``rollover_tlsrpt_reports`` (migration 2), on the state store's connection and lock."""

    def __init__(self, store: PostgresStateStore) -> None:
        self.lock = store.lock
        self.label = store.source
        self._session = store._session

    def add(self, report: Report, ingested_at: datetime) -> Added:
        digest = report_digest(report)
        with self._session.transaction("cannot write a report") as cursor:
            # A concurrent insert of the same id: ON CONFLICT waits for it, and the SELECT
            # (a new statement under READ COMMITTED) reads what it committed.
            cursor.execute(
                "INSERT INTO rollover_tlsrpt_reports (report_id, digest, organization, "
                "start_at, end_at, ingested_at, report) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (report_id) DO NOTHING RETURNING report_id",
                (
                    report.report_id,
                    digest,
                    report.organization_name,
                    report.start,
                    report.end,
                    ingested_at,
                    _document(report),
                ),
            )
            if cursor.fetchone() is not None:
                return "new"
            cursor.execute(
                "SELECT digest FROM rollover_tlsrpt_reports WHERE report_id = %s",
                (report.report_id,),
            )
            row = cursor.fetchone()
        return "duplicate" if row is not None and row[0] == digest else "conflict"

    def reports(self, since: datetime | None = None) -> list[StoredReport]:
        sql = "SELECT report_id, report, ingested_at FROM rollover_tlsrpt_reports"
        params: tuple[datetime, ...] = ()
        if since is not None:
            sql, params = sql + " WHERE end_at > %s", (since,)
        rows = self._session.query(
            "cannot read the reports", sql + " ORDER BY start_at, report_id", params
        )
        return [_stored(self.label, r[0], r[1], r[2].astimezone(UTC)) for r in rows]

    def newest_end(self) -> datetime | None:
        rows = self._session.query(
            "cannot read the reports", "SELECT max(end_at) FROM rollover_tlsrpt_reports"
        )
        moment = rows[0][0] if rows else None
        return moment.astimezone(UTC) if isinstance(moment, datetime) else None

    def count(self) -> int:
        rows = self._session.query(
            "cannot read the reports", "SELECT count(*) FROM rollover_tlsrpt_reports"
        )
        return int(rows[0][0]) if rows else 0
