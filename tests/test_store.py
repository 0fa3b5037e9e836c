"""The SQLite state store: compare-and-swap versions, one active rollover, leases, history."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollover.core.phases import Phase
from rollover.errors import ConflictError
from rollover.state.store import SqliteStateStore
from tests.test_phases import rollover

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_round_trip_and_cas(tmp_path: Path) -> None:
    store = SqliteStateStore(str(tmp_path / "state"))
    created = store.create(rollover(Phase.PUBLISHING))
    assert created.id is not None
    assert created.version == 1
    loaded = store.current("mx1")
    assert loaded == created
    saved = store.save(loaded.__class__(**{**loaded.__dict__, "phase": Phase.PROPAGATING}))
    assert saved.version == 2
    assert store.current("mx1").phase == Phase.PROPAGATING
    with pytest.raises(ConflictError):
        store.save(loaded)  # stale version: nothing written
    assert store.current("mx1").version == 2  # type: ignore[union-attr]


def test_one_active_rollover_per_service(tmp_path: Path) -> None:
    store = SqliteStateStore(str(tmp_path))
    first = store.create(rollover(Phase.PUBLISHING))
    with pytest.raises(ConflictError, match="already has a rollover"):
        store.create(rollover(Phase.PUBLISHING))
    store.save(first.__class__(**{**first.__dict__, "phase": Phase.DONE}))
    assert store.services() == []
    second = store.create(rollover(Phase.PUBLISHING))
    assert store.current("mx1") == second


def test_lease(tmp_path: Path) -> None:
    store = SqliteStateStore(str(tmp_path))
    r = store.create(rollover(Phase.PUBLISHING))
    assert store.acquire(r, "a", now=100.0, ttl=10)
    assert not store.acquire(r, "b", now=105.0, ttl=10)
    assert store.lease_holder(r, 105.0) == "a"
    assert store.acquire(r, "a", now=105.0, ttl=10)  # renew
    assert store.acquire(r, "b", now=120.0, ttl=10)  # expired: taken over
    store.release(r, "b")
    assert store.lease_holder(r, 121.0) is None


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = SqliteStateStore(str(tmp_path / "s"))
        store.create(rollover(Phase.PUBLISHING))
        store.append(store.current("mx1"), NOW, "start", {"x": 1})  # type: ignore[arg-type]
    finally:
        os.umask(old)
    for path in (tmp_path / "s").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert store.history("mx1")[0]["event"] == "start"


def test_the_current_rollover_is_found_by_index_not_by_a_scan(tmp_path: Path) -> None:
    """Finished rollovers pile up over the years; finding a service's current one must not
    read them (an index on service, active, id), nor must the history of one service."""
    from rollover.state.store import SqliteStateStore

    store = SqliteStateStore(str(tmp_path))
    current = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id, version, data FROM rollovers WHERE service = ? "
        "ORDER BY active DESC, id DESC LIMIT 1",
        ("mx1",),
    ).fetchall()
    history = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT rollover_id, at, event, phase, detail FROM history "
        "WHERE service = ? ORDER BY id",
        ("mx1",),
    ).fetchall()
    store.close()
    for plan in (current, history):
        text = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX" in text or "USING COVERING INDEX" in text, text
        assert "USE TEMP B-TREE" not in text, text


def test_an_ownership_json_of_an_earlier_version_is_imported_once_and_kept(
    tmp_path: Path,
) -> None:
    import json

    from rollover.core.association import parse_association
    from rollover.state.ownership import OwnershipStore

    mine = "3 1 1 " + "ab" * 32
    other = "3 1 1 " + "cd" * 32
    legacy = {
        "version": 1,
        "owners": {
            "_25._tcp.mx1.example.test.": {
                mine: {"service": "mx1", "published_at": "2026-11-01T00:00:00+00:00"}
            },
            "_25._tcp.mx2.example.test.": {other: {"service": "mx2", "published_at": None}},
        },
        "replaced": {"_25._tcp.mx1.example.test.": {"300": {"at": "2026-11-01T00:00:00+00:00"}}},
        "versions": {"_25._tcp.mx1.example.test.": "2026110101"},
    }
    (tmp_path / "ownership.json").write_text(json.dumps(legacy))
    store = OwnershipStore(str(tmp_path))
    assert store.owned("_25._tcp.mx1.example.test.") == {parse_association(mine)}
    assert store.owned("_25._TCP.MX2.example.test.") == {parse_association(other)}
    assert set(store.replaced("_25._tcp.mx1.example.test.")) == {300}
    assert store.version("_25._tcp.mx1.example.test.") == "2026110101"
    assert not (tmp_path / "ownership.json").exists()
    assert json.loads((tmp_path / "ownership.json.bak").read_text()) == legacy  # the backup
    # One owner's change writes its own row only; the others are as imported.
    store.release("_25._tcp.mx2.example.test.", frozenset({parse_association(other)}))
    again = OwnershipStore(str(tmp_path))
    assert again.owned("_25._tcp.mx2.example.test.") == frozenset()
    assert again.owned("_25._tcp.mx1.example.test.") == {parse_association(mine)}
    rows = again._db.execute("SELECT owner FROM ownership ORDER BY owner").fetchall()
    assert rows == [("_25._tcp.mx1.example.test.",)]  # an owner with nothing left has no row
