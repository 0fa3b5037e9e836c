"""The PostgreSQL state store (psycopg 3): the :class:`rollover.ports.StateStore` and the
ownership ledger of several hosts at once, for coordinators that must not be one machine.

What it keeps, as the SQLite store does: rollovers with a compare-and-swap version, one
active rollover per service (a partial unique index), an append-only history (a trigger
refuses UPDATE, DELETE and TRUNCATE), the ownership rows, and leases. The schema is made by
:func:`migrate` (:mod:`rollover.state.migrations`); a store opens only a schema at the version
this code knows.

- **Leases are judged by the database's clock** (``clock_timestamp()``), never a host's: the
  ``now`` the engine passes is its host's monotonic clock, meaningless on another host, and a
  host whose wall clock is an hour off must neither take a live lease nor keep an expired one.
  The term (``ttl``) is the caller's.
- **Every call is one transaction** on one connection (autocommit outside them): a
  connection lost mid-write rolls the whole write back (PostgreSQL commits atomically), and
  the next call opens a new connection. Nothing is cached between calls, so after a reconnect
  every read comes from the server.
- **Durable on commit**: with ``synchronous_commit`` on (the default; the store turns it on for
  its session if the server's default is off), COMMIT returns only once the commit's WAL is
  flushed (https://www.postgresql.org/docs/15/wal-async-commit.html), so :meth:`durable` has
  nothing left to do.
- **Errors** are one-line :class:`StateError` (exit 11) naming the ``source`` (the DSN file),
  never the DSN or its password: libpq's messages name the host, port and user, and every
  message is scrubbed of the password anyway.

psycopg is imported only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import os
import re
import select
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollover.core.phases import FINAL, Rollover
from rollover.errors import ConflictError, StateError
from rollover.ports import HistoryEvent
from rollover.state.files import serialized
from rollover.state.migrations import LATEST, apply, require_current, schema_version
from rollover.state.ownership import OwnershipRecord, OwnershipStore
from rollover.state.store import (
    SqliteStateStore,
    _decode,
    _encode,
    _from_root,
    history_entry,
    history_row,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]
    Cursor = psycopg.Cursor[TupleRow]

__all__ = [
    "LATEST",
    "PostgresOwnership",
    "PostgresStateStore",
    "import_sqlite",
    "migrate",
    "read_dsn_file",
]

# pg_advisory_xact_lock(int, int): one owner's ownership row, edited by one transaction at a
# time (a row lock cannot cover a row not yet inserted). "roll" in ASCII, then the owner.
OWNER_LOCK = 0x726F6C6C
CONNECT_TIMEOUT = 10  # seconds, unless the DSN or PGCONNECT_TIMEOUT says otherwise
# A silent network cut (a peer gone without a FIN or RST) is noticed by TCP, not left to hang
# a timer's run until systemd kills it: keepalive probes on an idle wait for a reply, and
# transmitted data unacknowledged for 30 s closes the connection. Each unless the DSN sets it.
TCP_LIMITS = {
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",  # milliseconds
}
# Per session, where the server leaves them off: a store stuck behind a lock or a hung
# statement fails with a one-line error rather than hanging a timer's run.
SESSION_LIMITS = {
    "statement_timeout": "60s",
    "lock_timeout": "30s",
    "idle_in_transaction_session_timeout": "5min",
}


_INHERITED: list[object] = []  # connections a forked child inherited: see _Session.connection


def read_dsn_file(path: str) -> str:
    """The DSN kept in ``path`` (libpq key=value or a ``postgresql://`` URI, with its
    password); surrounding whitespace dropped. Its text never appears in an error."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StateError(f"{path}: cannot read the PostgreSQL DSN: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StateError(f"{path}: the PostgreSQL DSN is not UTF-8 text") from None
    if not text:
        raise StateError(f"{path}: the PostgreSQL DSN file is empty")
    return text


def _insert_history(cursor: Cursor, rollover: Rollover, events: Sequence[HistoryEvent]) -> None:
    for e in events:
        cursor.execute(
            "INSERT INTO rollover_history (rollover_id, service, at, event, phase, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            history_row(rollover, e.at, e.event, e.detail),
        )


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", "; ".join(p.strip() for p in text.splitlines() if p.strip()))


class _Session:
    """One connection to the state database, opened on first use and again after it is
    lost. Used under the owning store's lock only."""

    def __init__(self, dsn: str, source: str, *, check_schema: bool = True) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        self.source = source
        self._check_schema = check_schema
        self._connection: Connection | None = None
        self._pid = os.getpid()  # the process the connection was opened in
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            # Its message may quote the text: never shown.
            raise StateError(
                f"{source}: not a PostgreSQL connection string (libpq key=value or a "
                "postgresql:// URI)"
            ) from None
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        extra |= {key: value for key, value in TCP_LIMITS.items() if key not in params}
        if "application_name" not in params and "PGAPPNAME" not in os.environ:
            extra["application_name"] = "rollover"
        # The primary only: a standby's reads may lag (a stale read), and it refuses writes.
        if "target_session_attrs" not in params and "PGTARGETSESSIONATTRS" not in os.environ:
            extra["target_session_attrs"] = "read-write"
        self._conninfo = make_conninfo(dsn, **extra)
        hidden = {dsn.strip(), self._conninfo}
        for password in (str(params.get("password") or ""), os.environ.get("PGPASSWORD", "")):
            if password:
                hidden |= {
                    password,
                    urllib.parse.quote(password),
                    urllib.parse.quote(password, safe=""),
                    urllib.parse.quote_plus(password),
                }
        self._hidden = sorted((h for h in hidden if h), key=len, reverse=True)

    def __repr__(self) -> str:
        return f"<PostgreSQL state session {self.source}>"

    def scrub(self, text: str) -> str:
        """``text`` without the DSN or its password (a short one only where it stands
        alone: a password ``p`` must not turn ``port`` into ``***ort``)."""
        for secret in self._hidden:
            if len(secret) >= 8:
                text = text.replace(secret, "***")
            else:
                alone = r"(?<![A-Za-z0-9])" + re.escape(secret) + r"(?![A-Za-z0-9])"
                text = re.sub(alone, "***", text)
        return _one_line(text)

    def failure(self, exc: Exception, what: str) -> StateError:
        """``exc`` (a psycopg error) as one line; a connection it broke is dropped, so the
        next call opens a new one."""
        import psycopg

        connection = self._connection
        if connection is not None and (
            connection.closed or connection.broken or isinstance(exc, psycopg.OperationalError)
        ):
            self.drop()
        state = getattr(exc, "sqlstate", None)
        detail = self.scrub(str(exc)) or type(exc).__name__
        if state and state not in detail:
            detail += f" (SQLSTATE {state})"
        return StateError(f"{self.source}: {what}: {detail}")

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):  # already broken: closing may fail too
                connection.close()

    def close(self) -> None:
        self.drop()

    def connection(self) -> Connection:
        if self._connection is not None and self._pid != os.getpid():
            # A forked child: the socket is its parent's. Never used nor closed here (closing
            # would end the parent's session); kept from the garbage collector, which would.
            _INHERITED.append(self._connection)
            self._connection = None
        if self._connection is not None and not _usable(self._connection):
            self.drop()
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _open(self) -> Connection:
        import psycopg

        try:
            connection = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self.failure(exc, "cannot connect to the PostgreSQL state store") from None
        self._connection, self._pid = connection, os.getpid()
        try:
            with connection.cursor() as cursor:
                _limit_session(cursor)
                version = schema_version(cursor) if self._check_schema else LATEST
        except psycopg.Error as exc:
            raise self.failure(exc, "cannot open the PostgreSQL state store") from None
        if self._check_schema:
            try:
                require_current(version, self.source)
            except StateError:
                self.drop()  # checked again on the next call (after a migrate)
                raise
        return connection

    @contextmanager
    def transaction(self, what: str) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back if it raises (a lost
        connection included: the server rolls back what it never saw committed)."""
        import psycopg

        connection = self.connection()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                yield cursor
        except psycopg.errors.TransactionRollback as exc:  # serialization failure, deadlock
            raise ConflictError(
                f"{self.source}: a concurrent write to the state store won "
                f"({self.scrub(str(exc))}); nothing was written"
            ) from None
        except psycopg.Error as exc:
            raise self.failure(exc, what) from None

    def query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[TupleRow]:
        """One statement outside a transaction (autocommit): a read of what is committed."""
        import psycopg

        connection = self.connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except psycopg.Error as exc:
            raise self.failure(exc, what) from None


def _usable(connection: Connection) -> bool:
    """Not known dead: open, idle, and nothing arrived from the server since the last
    reply. An idle connection that has something to read was sent the server's goodbye (a
    restart, an administrator's termination) or its end of file: a new one is opened
    rather than failing the next call on it."""
    from psycopg.pq import TransactionStatus

    if connection.closed or connection.broken:
        return False
    if connection.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _limit_session(cursor: Cursor) -> None:
    names = ("synchronous_commit", *SESSION_LIMITS)
    cursor.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in names))
    found = dict(zip(names, cursor.fetchone() or (), strict=False))
    if found.get("synchronous_commit") == "off":
        cursor.execute("SET synchronous_commit TO on")
    for name, value in SESSION_LIMITS.items():
        if found.get(name) == "0":
            cursor.execute(f"SET {name} TO '{value}'")


@serialized
class PostgresStateStore:
    """The state store in PostgreSQL. ``dsn``: libpq's connection string (``""``: libpq's
    environment and service file); ``source``: what errors name instead (the DSN file).
    Safe to share between threads: every method holds ``lock``, which the ownership ledger
    on the same connection (:class:`PostgresOwnership`) shares."""

    def __init__(self, dsn: str, *, source: str) -> None:
        self.lock = threading.RLock()
        self.source = source
        self._session = _Session(dsn, source)
        self._session.connection()  # refused at once: unreachable, unmigrated, too new

    def __repr__(self) -> str:
        return f"PostgresStateStore(source={self.source!r})"

    def close(self) -> None:
        self._session.close()

    def durable(self) -> None:
        """Nothing to do: a call returns only once its transaction is committed, and a
        commit is flushed before it returns (``synchronous_commit`` on). No round trip
        either: a connection lost since changes nothing committed."""

    def database_now(self) -> datetime:
        """The database's clock: the one clock every coordinator of this store shares
        (:class:`rollover.edges.clock.SharedClock` keeps each host to it)."""
        rows = self._session.query("cannot read the database clock", "SELECT clock_timestamp()")
        moment = rows[0][0]
        if not isinstance(moment, datetime):
            raise StateError(f"{self.source}: the database clock gave {moment!r}")
        return moment

    def create(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        import psycopg

        text = _encode(rollover)
        with self._session.transaction("cannot write state") as cursor:
            try:
                cursor.execute(
                    "INSERT INTO rollovers (service, active, version, data) "
                    "VALUES (%s, true, 1, %s) RETURNING id",
                    (rollover.service, text),
                )
            except psycopg.errors.UniqueViolation:
                raise ConflictError(
                    f"service {rollover.service} already has a rollover in "
                    "progress (see rollover status)"
                ) from None
            row = cursor.fetchone()
            if row is None:
                raise StateError(f"{self.source}: the new rollover of {rollover.service} got no id")
            created = _decode(int(row[0]), 1, text)
            _insert_history(cursor, created, events)
        return created

    def current(self, service: str) -> Rollover | None:
        rows = self._session.query(
            "cannot read state",
            "SELECT id, version, data FROM rollovers WHERE service = %s "
            "ORDER BY active DESC, id DESC LIMIT 1",
            (service,),
        )
        return None if not rows else _decode(int(rows[0][0]), int(rows[0][1]), rows[0][2])

    def latest(self) -> dict[str, Rollover]:
        # The ids chosen on the (service, active, id) index alone; only their data is read.
        rows = self._session.query(
            "cannot read state",
            "SELECT service, id, version, data FROM rollovers WHERE id IN ("
            "SELECT DISTINCT ON (service) id FROM rollovers "
            "ORDER BY service, active DESC, id DESC)",
        )
        return {str(r[0]): _decode(int(r[1]), int(r[2]), r[3]) for r in rows}

    def save(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        """Compare-and-swap on the version: a concurrent writer makes this a ConflictError
        (under READ COMMITTED the second UPDATE waits for the first, then finds the version
        moved on and matches no row). ``events`` go into the history in the same
        transaction."""
        import psycopg

        if rollover.id is None:
            raise ConflictError(
                f"rollover of {rollover.service} was never stored (start it first); "
                "nothing was written"
            )
        text = _encode(rollover)
        with self._session.transaction("cannot write state") as cursor:
            try:
                cursor.execute(
                    "UPDATE rollovers SET data = %s, version = version + 1, active = %s "
                    "WHERE id = %s AND version = %s",
                    (text, rollover.phase not in FINAL, rollover.id, rollover.version),
                )
            except psycopg.errors.UniqueViolation:
                raise ConflictError(
                    f"service {rollover.service} has another rollover in progress "
                    "(see rollover status); nothing was written"
                ) from None
            if cursor.rowcount != 1:
                raise ConflictError(
                    f"rollover of {rollover.service} was changed by another "
                    "process; nothing was written"
                )
            _insert_history(cursor, rollover, events)
        return _decode(rollover.id, rollover.version + 1, text)

    def acquire(self, rollover: Rollover, holder: str, now: float, ttl: float) -> bool:
        """Take the lease unless a live holder has it; an expired lease (a dead holder) is
        taken over. Expiry by the database's clock: ``now`` (a host's) is not used."""
        del now
        with self._session.transaction("cannot write the lease") as cursor:
            cursor.execute(
                "UPDATE rollovers SET lease_holder = %s, "
                "lease_until = clock_timestamp() + make_interval(secs => %s) "
                "WHERE id = %s AND (lease_holder IS NULL OR lease_holder = %s "
                "OR lease_until < clock_timestamp())",
                (holder, float(ttl), rollover.id, holder),
            )
            return cursor.rowcount == 1

    def lease_holder(self, rollover: Rollover, now: float) -> str | None:
        """The live holder, by the database's clock (``now`` is not used)."""
        del now
        rows = self._session.query(
            "cannot read the lease",
            "SELECT lease_holder FROM rollovers WHERE id = %s AND lease_holder IS NOT NULL "
            "AND lease_until >= clock_timestamp()",
            (rollover.id,),
        )
        return str(rows[0][0]) if rows else None

    def break_lease(self, rollover: Rollover, holder: str) -> None:
        """Drop the lease of a holder known to be dead (same host, process gone)."""
        self.release(rollover, holder)

    def release(self, rollover: Rollover, holder: str) -> None:
        with self._session.transaction("cannot write the lease") as cursor:
            cursor.execute(
                "UPDATE rollovers SET lease_holder = NULL, lease_until = NULL "
                "WHERE id = %s AND lease_holder = %s",
                (rollover.id, holder),
            )

    def append(self, rollover: Rollover, at: datetime, event: str, detail: dict[str, Any]) -> None:

        with self._session.transaction("cannot write the history") as cursor:
            _insert_history(cursor, rollover, [HistoryEvent(at, event, detail)])

    def history(self, service: str) -> list[dict[str, Any]]:

        rows = self._session.query(
            "cannot read the history",
            "SELECT rollover_id, at, event, phase, detail FROM rollover_history "
            "WHERE service = %s ORDER BY id",
            (service,),
        )
        return [history_entry(r) for r in rows]

    def services(self) -> list[str]:
        """As :meth:`rollover.state.store.SqliteStateStore.services` orders them."""
        rows = self._session.query(
            "cannot read state",
            "SELECT service, substr(data::json ->> 'since', 1, 16), data::json ->> 'owner' "
            "FROM rollovers WHERE active",
        )
        return [r[0] for r in sorted(rows, key=lambda r: (r[1] or "", _from_root(r[2]), r[0]))]


class _PostgresRow:
    def __init__(self, cursor: Cursor, owner: str, text: str | None) -> None:
        self._cursor, self._owner, self.text = cursor, owner, text

    def write(self, text: str | None) -> None:
        if text is None:
            self._cursor.execute("DELETE FROM rollover_ownership WHERE owner = %s", (self._owner,))
        else:
            self._cursor.execute(
                "INSERT INTO rollover_ownership (owner, data) VALUES (%s, %s) "
                "ON CONFLICT (owner) DO UPDATE SET data = excluded.data",
                (self._owner, text),
            )


class _PostgresRows:
    """The ``rollover_ownership`` table. An edit holds the owner's advisory lock for its
    transaction: two coordinators editing one owner's row take turns, and the second reads
    what the first committed (no lost update, even for a row neither has inserted yet)."""

    def __init__(self, session: _Session) -> None:
        self.label = session.source
        self._session = session

    def read(self, owner: str) -> str | None:
        rows = self._session.query(
            "cannot read the ownership record",
            "SELECT data FROM rollover_ownership WHERE owner = %s",
            (owner,),
        )
        return str(rows[0][0]) if rows else None

    @contextmanager
    def edit(self, owner: str) -> Iterator[_PostgresRow]:
        with self._session.transaction("cannot write the ownership record") as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (OWNER_LOCK, owner)
            )
            cursor.execute("SELECT data FROM rollover_ownership WHERE owner = %s", (owner,))
            found = cursor.fetchone()
            yield _PostgresRow(cursor, owner, None if found is None else str(found[0]))


@serialized
class PostgresOwnership(OwnershipRecord):
    """The :class:`rollover.ports.OwnershipLedger` in the same database as ``store``, on its
    connection and under its lock."""

    def __init__(self, store: PostgresStateStore) -> None:
        super().__init__(_PostgresRows(store._session), store.lock)

    def durable(self) -> None:
        """Nothing to do: each claim was committed, hence flushed, before it returned."""


def migrate(dsn: str, source: str) -> tuple[int, int]:
    """Create or bring up to date the schema: (version before, version after). Each pending
    migration in its own transaction, under an advisory lock (twice, or two at once, is
    safe); a schema newer than this code knows is refused."""
    import psycopg

    session = _Session(dsn, source, check_schema=False)
    try:
        return apply(session.connection(), source)
    except psycopg.Error as exc:
        raise session.failure(exc, "cannot migrate the PostgreSQL state store") from None
    finally:
        session.close()


def import_sqlite(state_dir: str, target: PostgresStateStore) -> dict[str, int]:
    """Copy a SQLite state directory (rollovers, history, ownership, TLS-RPT reports) into
    ``target``, in one transaction: ``{"rollovers": n, "active": n, "history": n,
    "ownership": n, "reports": n, "written": 1}``. Rollover and history ids are kept
    (history names its rollover by id) and the id sequences set past them. Leases are not
    copied: the SQLite ones count on one host's clock (stop that host's timers first).

    A target that already holds exactly this content is left as it is (``"written": 0``:
    importing twice is safe); one holding anything else is refused with nothing written.
    An ``ownership.json`` of an earlier version in the directory is first taken into its
    ``state.db`` (as opening it with this version does)."""
    rollovers, history, ownership, reports = _read_sqlite(state_dir)
    counts = {
        "rollovers": len(rollovers),
        "active": sum(1 for r in rollovers if r[2]),
        "history": len(history),
        "ownership": len(ownership),
        "reports": len(reports),
    }
    with (
        target.lock,
        target._session.transaction("cannot import into the PostgreSQL state store") as cursor,
    ):
        cursor.execute(
            "LOCK TABLE rollovers, rollover_history, rollover_ownership, "
            "rollover_tlsrpt_reports IN EXCLUSIVE MODE"
        )
        cursor.execute("SELECT id, service, active, version, data FROM rollovers ORDER BY id")
        there = [tuple(r) for r in cursor.fetchall()]
        cursor.execute(
            "SELECT id, rollover_id, service, at, event, phase, detail FROM rollover_history "
            "ORDER BY id"
        )
        there_history = [tuple(r) for r in cursor.fetchall()]
        cursor.execute("SELECT owner, data FROM rollover_ownership ORDER BY owner")
        there_ownership = [tuple(r) for r in cursor.fetchall()]
        cursor.execute(
            "SELECT report_id, digest, organization, start_at, end_at, ingested_at, report "
            "FROM rollover_tlsrpt_reports ORDER BY report_id"
        )
        there_reports = [tuple(r) for r in cursor.fetchall()]
        here = (rollovers, history, ownership, reports)
        if there or there_history or there_ownership or there_reports:
            if (there, there_history, there_ownership, there_reports) == here:
                return {**counts, "written": 0}
            raise StateError(
                f"{target.source}: the PostgreSQL state store already holds {len(there)} "
                f"rollovers, {len(there_history)} history entries, {len(there_ownership)} "
                f"ownership rows and {len(there_reports)} TLS-RPT reports, not those of "
                f"{state_dir}: nothing imported"
            )
        cursor.executemany(
            "INSERT INTO rollovers (id, service, active, version, data) "
            "VALUES (%s, %s, %s, %s, %s)",
            rollovers,
        )
        cursor.executemany(
            "INSERT INTO rollover_history (id, rollover_id, service, at, event, phase, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            history,
        )
        cursor.executemany(
            "INSERT INTO rollover_ownership (owner, data) VALUES (%s, %s)", ownership
        )
        cursor.executemany(
            "INSERT INTO rollover_tlsrpt_reports (report_id, digest, organization, start_at, "
            "end_at, ingested_at, report) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            reports,
        )
        for table in ("rollovers", "rollover_history"):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "  # noqa: S608
                f"coalesce(max(id), 1), max(id) IS NOT NULL) FROM {table}",
                (table,),
            )
    return {**counts, "written": 1}


Rows = list[tuple[Any, ...]]


def _read_sqlite(state_dir: str) -> tuple[Rows, Rows, Rows, Rows]:
    """The rows of a SQLite state directory, as the PostgreSQL tables hold them."""
    from rollover.state.tlsrpt_store import sqlite_report_rows

    directory = Path(state_dir)
    if not (directory / "state.db").is_file() and not (directory / "ownership.json").is_file():
        raise StateError(f"{state_dir}: no SQLite state (state.db) to import")
    store = SqliteStateStore(state_dir)
    try:
        OwnershipStore(state_dir, connection=store.connection, lock=store.lock)
        db = store.connection
        rollovers = [
            (int(i), str(s), bool(a), int(v), str(d))
            for i, s, a, v, d in db.execute(
                "SELECT id, service, active, version, data FROM rollovers ORDER BY id"
            )
        ]
        history = [
            tuple(row)
            for row in db.execute(
                "SELECT id, rollover_id, service, at, event, phase, detail FROM history ORDER BY id"
            )
        ]
        ownership = [
            tuple(row) for row in db.execute("SELECT owner, data FROM ownership ORDER BY owner")
        ]
        reports = sqlite_report_rows(db)
    except sqlite3.Error as exc:
        raise StateError(f"{state_dir}: cannot read the SQLite state: {exc}") from None
    finally:
        store.close()
    return rollovers, history, ownership, reports
