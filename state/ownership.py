"""Which TLSA associations rollover published, per owner name.

The tool never removes a record it did not publish unless told to by name; this record is how
it knows. A claim is written *before* the DNS change that publishes the association, so a crash
in between leaves a claim on a record that does not exist (harmless), never an unclaimed record.

Kept in the state database, one row per owner name (SQLite's ``state.db`` here; PostgreSQL's
``rollover_ownership`` table in :mod:`rollover.state.postgres`, over the same document logic,
:class:`OwnershipRecord`): a claim or a confirmation writes that row in one transaction, whatever
the size of the fleet. An ``ownership.json`` left by an earlier version is imported on first use
and kept beside it as ``ownership.json.bak``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from rollover.core.association import Association, parse_association
from rollover.errors import StateError
from rollover.ports import OwnerRow, OwnershipRows
from rollover.state.files import serialized
from rollover.state.store import connect, make_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ownership (owner TEXT PRIMARY KEY, data TEXT NOT NULL);
"""
# The per-owner slices of the record, as ownership.json kept them (one mapping each, by owner).
_SLICES = ("owners", "replaced", "rrsets", "versions")


@serialized
class OwnershipRecord:
    """The :class:`rollover.ports.OwnershipLedger` over a rows backend: one JSON document
    per owner name, edited read-modify-write in one transaction."""

    def __init__(self, rows: OwnershipRows, lock: threading.RLock | None = None) -> None:
        self.lock = lock or threading.RLock()
        self._rows = rows

    def _parse(self, text: str | None, owner: str) -> dict[str, Any]:
        key = owner.lower()
        doc: dict[str, Any] = {"version": 1, "owners": {}}
        if text is not None:
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise StateError(
                    f"{self._rows.label}: unreadable ownership of {key}: {exc}"
                ) from None
            for part in _SLICES:
                if row.get(part) is not None:
                    doc.setdefault(part, {})[key] = row[part]
        return doc

    def _load(self, owner: str) -> dict[str, Any]:
        """The record of ``owner``, shaped as ownership.json was (each slice by owner)."""
        return self._parse(self._rows.read(owner.lower()), owner)

    @contextmanager
    def _editing(self, owner: str) -> Iterator[dict[str, Any]]:
        """The record of ``owner`` in one transaction, written back when the block ends (and
        only if it changed: a tick's "seen again, as before" writes nothing)."""
        key = owner.lower()
        with self._rows.edit(key) as found:
            doc = self._parse(found.text, key)
            before = json.dumps(_row(doc, key), sort_keys=True)
            yield doc
            row = _row(doc, key)
            text = json.dumps(row, sort_keys=True)
            if text == before:
                return
            found.write(text if any(value for value in row.values()) else None)

    def owned(self, owner: str) -> frozenset[Association]:
        entries = self._load(owner)["owners"].get(owner.lower(), {})
        return frozenset(parse_association(text) for text in entries)

    def published(self, owner: str) -> dict[Association, dict[str, Any]]:
        """Each association's record: ``published_at``, and the boot and boot-clock reading
        of the confirmation (``boot_id``, ``boottime``) where known."""
        entries = self._load(owner)["owners"].get(owner.lower(), {})
        return {parse_association(text): dict(meta) for text, meta in entries.items()}

    def replaced(self, owner: str) -> dict[int, dict[str, Any]]:
        """TTL -> when the tool last knew an RRset with that TTL was served at ``owner`` (it
        read it, wrote it or replaced it): ``at`` (wall clock), ``boot_id`` and ``boottime``.
        Caches may hold such an RRset for that TTL after; a lowered TTL only helps once the
        old one aged out."""
        raw = self._load(owner).get("replaced", {}).get(owner.lower(), {})
        return {
            int(ttl): {**meta, "at": _parse_time(meta["at"])}
            for ttl, meta in raw.items()
            if isinstance(meta, dict) and meta.get("at")
        }

    def note_served(
        self,
        owner: str,
        ttls: set[int | None],
        now: datetime,
        boot: tuple[str | None, float | None] = (None, None),
    ) -> None:
        wanted = {t for t in ttls if t}
        if not wanted:
            return
        with self._editing(owner) as data:
            entries = data.setdefault("replaced", {}).setdefault(owner.lower(), {})
            for ttl in wanted:
                entries[str(ttl)] = {"at": _stamp(now), "boot_id": boot[0], "boottime": boot[1]}

    def last_rrset(self, owner: str) -> tuple[frozenset[Association], int | None] | None:
        """The RRset at ``owner`` as the tool last saw or wrote it, and its TTL (None: never)."""
        raw = self._load(owner).get("rrsets", {}).get(owner.lower())
        if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
            return None
        ttl = raw.get("ttl")
        records = frozenset(parse_association(text) for text in raw["records"])
        return records, ttl if isinstance(ttl, int) else None

    def published_at(self, owner: str) -> dict[Association, datetime | None]:
        """When the provider confirmed each association rollover owns at ``owner``."""
        entries = self._load(owner)["owners"].get(owner.lower(), {})
        return {
            parse_association(text): (
                _parse_time(meta["published_at"]) if meta.get("published_at") else None
            )
            for text, meta in entries.items()
        }

    def claim(
        self, owner: str, associations: frozenset[Association], service: str, now: datetime
    ) -> None:
        """Claimed before the DNS change; ``published_at`` stays empty until confirmed."""
        del now
        self._update(owner, add=associations, service=service)

    def confirm(
        self,
        owner: str,
        associations: frozenset[Association],
        now: datetime,
        boot: tuple[str | None, float | None] = (None, None),
    ) -> None:
        """The provider reported the change in effect at ``now``: the ageing clock of the
        "current + next" fast path starts here, never at the claim. ``boot`` is the boot and
        its non-jumping clock at that moment, so a stepped wall clock cannot age it."""
        if not associations:
            return
        with self._editing(owner) as data:
            entries = data["owners"].setdefault(owner.lower(), {})
            for association in associations:
                _published(entries.setdefault(str(association), {"service": ""}), now, boot)

    def seen(
        self,
        owner: str,
        present: frozenset[Association],
        now: datetime,
        boot: tuple[str | None, float | None] = (None, None),
        ttl: int | None = None,
    ) -> None:
        """What a read of the RRset showed (``ttl``: its TTL, where the read gives it). An
        owned association found missing loses its confirmation: if it comes back (re-added
        by hand, say), it is as young as the read that finds it again, and the "current +
        next" fast path waits its age out afresh."""
        loaded = self._load(owner)
        entries = loaded["owners"].get(owner.lower(), {})
        lost = [
            t
            for t, m in entries.items()
            if m.get("published_at") and parse_association(t) not in present
        ]
        back = [
            t for t, m in entries.items() if m.get("vanished") and parse_association(t) in present
        ]
        shown: dict[str, Any] = {"records": sorted(map(str, present)), "ttl": ttl}
        if not lost and not back and loaded.get("rrsets", {}).get(owner.lower()) == shown:
            return
        with self._editing(owner) as data:
            entries = data["owners"].get(owner.lower(), {})
            stamp = _stamp(now)
            for text in lost:
                if text in entries:
                    entries[text].update(published_at=None, vanished=stamp, boottime=None)
            for text in back:
                if text in entries:
                    entries[text].update(
                        published_at=stamp, vanished=None, boot_id=boot[0], boottime=boot[1]
                    )
            data.setdefault("rrsets", {})[owner.lower()] = shown

    def version(self, owner: str) -> str | None:
        """The provider's zone version up to which the tool followed ``owner``'s history."""
        value = self._load(owner).get("versions", {}).get(owner.lower())
        return value if isinstance(value, str) else None

    def set_version(self, owner: str, version: str) -> None:
        if self.version(owner) == version:
            return
        with self._editing(owner) as data:
            data.setdefault("versions", {})[owner.lower()] = version

    def restart(
        self,
        owner: str,
        associations: frozenset[Association],
        now: datetime,
        boot: tuple[str | None, float | None] = (None, None),
    ) -> None:
        """Their publication was broken (or cannot be known whole): it counts from ``now``."""
        with self._editing(owner) as data:
            entries = data["owners"].get(owner.lower(), {})
            for association in associations:
                entry = entries.get(str(association))
                if entry is not None and entry.get("published_at"):
                    _published(entry, now, boot)

    def release(self, owner: str, associations: frozenset[Association]) -> None:
        self._update(owner, remove=associations)

    def _update(
        self,
        owner: str,
        *,
        add: frozenset[Association] = frozenset(),
        remove: frozenset[Association] = frozenset(),
        service: str = "",
        now: datetime | None = None,
    ) -> None:
        if not add and not remove:
            return
        with self._editing(owner) as data:
            entries = data["owners"].setdefault(owner.lower(), {})
            for association in add:
                entries.setdefault(
                    str(association),
                    {
                        "service": service,
                        "published_at": _stamp(now) if now else None,
                    },
                )
            for association in remove:
                entries.pop(str(association), None)
            if not entries:
                del data["owners"][owner.lower()]


class _SqliteRow:
    def __init__(self, db: sqlite3.Connection, owner: str, text: str | None) -> None:
        self._db, self._owner, self.text = db, owner, text

    def write(self, text: str | None) -> None:
        if text is None:
            self._db.execute("DELETE FROM ownership WHERE owner = ?", (self._owner,))
        else:
            self._db.execute(
                "INSERT INTO ownership (owner, data) VALUES (?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET data = excluded.data",
                (self._owner, text),
            )


class _SqliteRows:
    """The ``ownership`` table of ``state.db``; ``BEGIN IMMEDIATE`` takes the database's
    write lock, so an edit's read and write see no other writer in between."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.label = str(path)
        self.path, self._db = path, db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"{self.path}: ownership record busy or locked: {exc}") from None
        try:
            yield self._db
        except BaseException:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(f"{self.path}: cannot write the ownership record: {exc}") from None

    def _select(self, db: sqlite3.Connection, owner: str) -> str | None:
        try:
            found = db.execute("SELECT data FROM ownership WHERE owner = ?", (owner,)).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot read the ownership record: {exc}") from None
        return None if found is None else str(found[0])

    def read(self, owner: str) -> str | None:
        return self._select(self._db, owner)

    @contextmanager
    def edit(self, owner: str) -> Iterator[OwnerRow]:
        with self.transaction() as db:
            yield _SqliteRow(db, owner, self._select(db, owner))


@serialized
class OwnershipStore(OwnershipRecord):
    """The :class:`rollover.ports.OwnershipLedger` of a state directory (SQLite)."""

    def __init__(
        self,
        state_dir: str,
        *,
        connection: sqlite3.Connection | None = None,
        lock: threading.RLock | None = None,
        synced: list[int] | None = None,
    ) -> None:
        # Shared with the state store when the connection is: one lock, one sync count.
        self.synced: list[int] = [] if synced is None else synced
        self.directory = Path(state_dir)
        if connection is None:
            self.path, self._db = connect(self.directory)
        else:
            self.path, self._db = self.directory / "state.db", connection
        self._sqlite = _SqliteRows(self.path, self._db)
        super().__init__(self._sqlite, lock)
        try:
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the ownership record: {exc}") from None
        self._import_json(self.directory / "ownership.json")

    def _import_json(self, legacy: Path) -> None:
        """The record of an earlier version, imported once; the file stays as a backup."""
        if not legacy.exists():
            return
        try:
            raw = json.loads(legacy.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(f"{legacy}: unreadable ownership record: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("owners"), dict):
            raise StateError(f"{legacy}: not an ownership record")
        names = {str(owner) for part in _SLICES for owner in (raw.get(part) or {})}
        with self._sqlite.transaction() as db:
            for owner in sorted(names):
                doc = {
                    part: {owner: raw[part][owner]}
                    for part in _SLICES
                    if owner in (raw.get(part) or {})
                }
                db.execute(
                    "INSERT OR IGNORE INTO ownership (owner, data) VALUES (?, ?)",
                    (owner, json.dumps(_row(doc, owner), sort_keys=True)),
                )
        try:
            legacy.replace(legacy.with_name(legacy.name + ".bak"))
        except OSError as exc:
            raise StateError(f"{legacy}: imported, but cannot be set aside: {exc}") from None

    def durable(self) -> None:
        """What was committed survives a power loss from now on (before the DNS change a
        claim precedes)."""
        make_durable(self.path, self._db, self.synced)


def _row(doc: dict[str, Any], owner: str) -> dict[str, Any]:
    """One owner's slices of a record shaped as ownership.json was."""
    return {part: (doc.get(part) or {}).get(owner) for part in _SLICES}


def _published(entry: dict[str, Any], now: datetime, boot: tuple[str | None, float | None]) -> None:
    """Confirmed published at ``now``, on this boot and its non-jumping clock."""
    entry.update(published_at=_stamp(now), boot_id=boot[0], boottime=boot[1])


def _stamp(moment: datetime) -> str:
    """To the microsecond: a stamp cut to the second would age a record early."""
    return moment.isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
