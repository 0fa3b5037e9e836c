"""The state store: rollovers with compare-and-swap versions, leases, and an append-only history.

Embedded default: SQLite (stdlib ``sqlite3``) in WAL mode in the state directory, files 0600.
The interface (:class:`StateStore`) is small and conditional-write shaped, so a networked backend
(DynamoDB conditional writes, for one) can implement the same four ideas: create-if-absent,
update-if-version, lease-if-free-or-expired, append.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from rollover.core.association import parse_association
from rollover.core.phases import FINAL, Phase, Rollover
from rollover.errors import ConflictError, StateError
from rollover.ports import HistoryEvent
from rollover.state.files import ensure_dir, serialized

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollovers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    active INTEGER NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    lease_holder TEXT,
    lease_until REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active ON rollovers(service) WHERE active = 1;
CREATE INDEX IF NOT EXISTS by_service ON rollovers(service, active, id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollover_id INTEGER NOT NULL,
    service TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    phase TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_service ON history(service, id);
"""


def _encode(rollover: Rollover) -> str:
    data: dict[str, Any] = {}
    for f in fields(rollover):
        if f.name in ("id", "version"):
            continue
        value = getattr(rollover, f.name)
        if isinstance(value, frozenset):
            value = sorted(str(a) for a in value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        data[f.name] = value
    return json.dumps(data, sort_keys=True)


def _decode(row_id: int, version: int, text: str) -> Rollover:
    data = json.loads(text)
    kinds = {f.name: f.type for f in fields(Rollover)}
    values: dict[str, Any] = {"id": row_id, "version": version}
    for name, raw in data.items():
        if name not in kinds:
            continue
        kind = str(kinds[name])
        value: Any = raw
        if name in ("old", "new", "bridge", "final", "before"):
            value = frozenset(parse_association(a) for a in raw)
        elif name == "notes":
            value = tuple(str(n) for n in raw)
        elif name == "phase":
            value = Phase(raw)
        elif "datetime" in kind and raw is not None:
            value = datetime.fromisoformat(raw)
        values[name] = value
    return Rollover(**values)


def connect(directory: Path) -> tuple[Path, sqlite3.Connection]:
    """The state database of ``directory`` (``state.db``, 0600 with its -wal and -shm files,
    WAL journal), created when absent.

    Commits are not synced one by one (``synchronous=NORMAL``: a crash of the process loses
    nothing committed; a power loss may lose the last commits, never the database's
    consistency). What must survive a power loss is made durable by :func:`make_durable`
    before each change of the world outside it: the engine calls ``durable()`` before every
    provider change and every deploy, so no DNS change or deploy is ever left unrecorded, and
    a fleet's tick pays one sync per change, not one per lease renewal."""
    ensure_dir(directory)
    path = directory / "state.db"
    if not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
    previous = os.umask(0o077)  # the -wal and -shm files too
    try:
        # Shared by a tick's threads, each statement under the stores' one lock.
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open the state store: {exc}") from None
    finally:
        os.umask(previous)
    return path, db


def make_durable(path: Path, db: sqlite3.Connection, synced: list[int]) -> None:
    """Everything committed on ``db`` is on disk once this returns: the WAL file synced (a
    checkpoint, under NORMAL, has already synced what it moved into the database). ``synced``
    holds the connection's change count at the last sync, so a second call with nothing
    committed since costs nothing."""
    changes = db.total_changes
    if synced and synced[0] == changes:
        return
    for name in (path.name + "-wal", path.name):
        try:
            fd = os.open(path.with_name(name), os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StateError(f"{path}: cannot sync the state store: {exc.strerror}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StateError(f"{path}: cannot sync the state store: {exc.strerror}") from None
        finally:
            os.close(fd)
    synced[:] = [changes]


@serialized
class SqliteStateStore:
    """One database file, ``state.db``, in the state directory. Safe to share between
    threads: every method holds ``lock``, which the ownership record on the same connection
    shares."""

    def __init__(self, state_dir: str) -> None:
        self.lock = threading.RLock()
        self.synced: list[int] = []  # the connection's change count at the last sync
        self.directory = Path(state_dir)
        self.path, self._db = connect(self.directory)
        try:
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the state store: {exc}") from None

    @property
    def connection(self) -> sqlite3.Connection:
        """For the ownership record, kept in the same database (one connection a process)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def durable(self) -> None:
        """What was committed survives a power loss from now on (before a change outside)."""
        make_durable(self.path, self._db, self.synced)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"{self.path}: state store busy or locked: {exc}") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StateError(f"{self.path}: cannot write state: {exc}") from None

    def create(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        with self._transaction() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO rollovers (service, active, version, data) VALUES (?, 1, 1, ?)",
                    (rollover.service, _encode(rollover)),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"service {rollover.service} already has a rollover in "
                    "progress (see rollover status)"
                ) from None
            row_id = cursor.lastrowid
            if row_id is None:
                raise StateError(f"{self.path}: the new rollover of {rollover.service} got no id")
            created = _decode(row_id, 1, _encode(rollover))
            _insert_history(db, created, events)
        return created

    def current(self, service: str) -> Rollover | None:
        row = self._db.execute(
            "SELECT id, version, data FROM rollovers WHERE service = ? "
            "ORDER BY active DESC, id DESC LIMIT 1",
            (service,),
        ).fetchone()
        return None if row is None else _decode(row[0], row[1], row[2])

    def latest(self) -> dict[str, Rollover]:
        # Each service's row as current() picks it, found on the (service, active, id) index.
        rows = self._db.execute(
            "SELECT service, id, version, data FROM rollovers AS r WHERE id = ("
            "SELECT id FROM rollovers WHERE service = r.service "
            "ORDER BY active DESC, id DESC LIMIT 1)"
        ).fetchall()
        return {row[0]: _decode(row[1], row[2], row[3]) for row in rows}

    def save(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        """Compare-and-swap on the version: a concurrent writer makes this a ConflictError.
        ``events`` are appended to the history in the same transaction."""
        if rollover.id is None:
            raise ConflictError(
                f"rollover of {rollover.service} was never stored (start it first); "
                "nothing was written"
            )
        active = 0 if rollover.phase in FINAL else 1
        with self._transaction() as db:
            try:
                cursor = db.execute(
                    "UPDATE rollovers SET data = ?, version = version + 1, active = ? "
                    "WHERE id = ? AND version = ?",
                    (_encode(rollover), active, rollover.id, rollover.version),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"service {rollover.service} has another rollover in progress "
                    "(see rollover status); nothing was written"
                ) from None
            if cursor.rowcount != 1:
                raise ConflictError(
                    f"rollover of {rollover.service} was changed by another "
                    "process; nothing was written"
                )
            _insert_history(db, rollover, events)
        return _decode(rollover.id, rollover.version + 1, _encode(rollover))

    def acquire(self, rollover: Rollover, holder: str, now: float, ttl: float) -> bool:
        """Take the lease unless a live holder has it; an expired lease (crashed holder) is
        taken over."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE rollovers SET lease_holder = ?, lease_until = ? WHERE id = ? AND "
                "(lease_holder IS NULL OR lease_holder = ? OR lease_until < ?)",
                (holder, now + ttl, rollover.id, holder, now),
            )
            return cursor.rowcount == 1

    def lease_holder(self, rollover: Rollover, now: float) -> str | None:
        row = self._db.execute(
            "SELECT lease_holder, lease_until FROM rollovers WHERE id = ?", (rollover.id,)
        ).fetchone()
        if row is None or row[0] is None or row[1] < now:
            return None
        return str(row[0])

    def break_lease(self, rollover: Rollover, holder: str) -> None:
        """Drop the lease of a holder known to be dead (same host, process gone)."""
        self.release(rollover, holder)

    def release(self, rollover: Rollover, holder: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE rollovers SET lease_holder = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_holder = ?",
                (rollover.id, holder),
            )

    def append(self, rollover: Rollover, at: datetime, event: str, detail: dict[str, Any]) -> None:
        with self._transaction() as db:
            _insert_history(db, rollover, [HistoryEvent(at, event, detail)])

    def history(self, service: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT rollover_id, at, event, phase, detail FROM history WHERE service = ? "
            "ORDER BY id",
            (service,),
        ).fetchall()
        return [history_entry(r) for r in rows]

    def services(self) -> list[str]:
        """Every service with an active rollover: by the minute it entered its phase (a tick
        that runs out of time leaves the most recently moved for the next), then by owner
        name from the root down, so that one zone's services come together (a tick cut short
        splits few zones' batches)."""
        rows = self._db.execute(
            "SELECT service, substr(json_extract(data, '$.since'), 1, 16), "
            "json_extract(data, '$.owner') FROM rollovers WHERE active = 1"
        ).fetchall()
        return [r[0] for r in sorted(rows, key=lambda r: (r[1] or "", _from_root(r[2]), r[0]))]


def _insert_history(
    db: sqlite3.Connection, rollover: Rollover, events: Sequence[HistoryEvent]
) -> None:
    db.executemany(
        "INSERT INTO history (rollover_id, service, at, event, phase, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [history_row(rollover, e.at, e.event, e.detail) for e in events],
    )


def history_row(
    rollover: Rollover, at: datetime, event: str, detail: dict[str, Any]
) -> tuple[int | None, str, str, str, str, str]:
    """The columns of one history entry, as every backend stores them."""
    return (
        rollover.id,
        rollover.service,
        at.isoformat(),
        event,
        rollover.phase.value,
        json.dumps(detail, sort_keys=True, default=str),
    )


def history_entry(row: Sequence[Any]) -> dict[str, Any]:
    """One entry as ``history()`` gives it, from (rollover id, at, event, phase, detail)."""
    return {
        "rollover": row[0],
        "at": row[1],
        "event": row[2],
        "phase": row[3],
        "detail": json.loads(row[4]),
    }


def _from_root(owner: str | None) -> tuple[str, ...]:
    return tuple(reversed((owner or "").lower().rstrip(".").split(".")))


def rollover_json(rollover: Rollover) -> dict[str, Any]:
    # Field by field, not dataclasses.asdict: its deep copies were most of `status --json`'s
    # time at thousands of services.
    data: dict[str, Any] = {f.name: getattr(rollover, f.name) for f in fields(rollover)}
    for name in ("old", "new", "bridge", "final", "before"):
        data[name] = sorted(str(a) for a in getattr(rollover, name))
    data["final"] = sorted(str(a) for a in rollover.kept)
    data["notes"] = list(rollover.notes)
    for key, value in list(data.items()):
        if isinstance(value, datetime):
            data[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return data
