"""The PostgreSQL state store against a real PostgreSQL 15 (tests/postgres.py), and the store
Protocol's tests against both backends (SQLite and PostgreSQL).

One cluster per module; each test has a schema of its own (the DSN's ``search_path``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollover.core.association import Association, parse_association
from rollover.core.phases import Phase, Rollover
from rollover.errors import ConflictError, StateError
from rollover.ports import HistoryEvent, OwnershipLedger, StateStore
from rollover.state.ownership import OwnershipStore
from rollover.state.postgres import (
    LATEST,
    PostgresOwnership,
    PostgresStateStore,
    import_sqlite,
    migrate,
    read_dsn_file,
)
from rollover.state.store import SqliteStateStore
from rollover.state.tlsrpt_store import PostgresReportStore, SqliteReportStore
from rollover.tlsrpt.report import parse_report
from tests.postgres import PostgresCluster, quote_value
from tests.test_phases import rollover

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OWNER = "_25._tcp.mx1.example.test."
SOURCE = "/etc/rollover/pg.dsn"
lab = pytest.mark.lab
TLSRPT_CORPUS = Path(__file__).parent / "tlsrpt_corpus" / "good"


def association(n: int) -> Association:
    return parse_association(f"3 1 1 {n:064x}")


class Opened:
    """Stores opened by a test, closed when it ends."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.schema, self.dsn = cluster.fresh_schema()
        self.stores: list[PostgresStateStore] = []

    def store(self) -> PostgresStateStore:
        store = PostgresStateStore(self.dsn, source=SOURCE)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def pg(postgres: PostgresCluster) -> Iterator[Opened]:
    """A migrated schema of this test's own; the server running when the test begins."""
    postgres.start()
    opened = Opened(postgres)
    assert migrate(opened.dsn, SOURCE) == (0, LATEST)
    yield opened
    opened.close()


Backend = tuple[StateStore, OwnershipLedger]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.lab)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store and ownership ledger of one backend, sharing one connection and lock."""
    if request.param == "sqlite":
        sqlite = SqliteStateStore(str(tmp_path / "state"))
        ownership = OwnershipStore(
            str(tmp_path / "state"), connection=sqlite.connection, lock=sqlite.lock
        )
        yield sqlite, ownership
        sqlite.close()
        return
    opened: Opened = request.getfixturevalue("pg")
    store = opened.store()
    yield store, PostgresOwnership(store)


# -- the store Protocol, on both backends ---------------------------------------------------
def test_round_trip_and_cas(backend: Backend) -> None:
    store, _ = backend
    created = store.create(rollover(Phase.PUBLISHING, notes=("a \x00 note",)))
    assert created.id is not None
    assert created.version == 1
    loaded = store.current("mx1")
    assert loaded == created
    assert loaded.notes == ("a \x00 note",)
    saved = store.save(replace(loaded, phase=Phase.PROPAGATING))
    assert saved.version == 2
    assert store.current("mx1") == saved
    with pytest.raises(ConflictError, match="changed by another process"):
        store.save(loaded)  # stale version: nothing written
    assert store.current("mx1") == saved
    with pytest.raises(ConflictError, match="never stored"):
        store.save(rollover(Phase.PUBLISHING))
    assert store.current("nothing-here") is None


def test_a_save_and_its_history_are_one_transaction(backend: Backend) -> None:
    """The events that explain a create or a save are written with it, or not at all: a
    refused compare-and-swap leaves no entry, and an interrupted write leaves neither."""
    store, _ = backend
    started = HistoryEvent(NOW, "start", {"n": 1})
    created = store.create(rollover(Phase.PUBLISHING), [started])
    moved = HistoryEvent(NOW, "transition", {"to": "propagating"})
    saved = store.save(replace(created, phase=Phase.PROPAGATING), [moved])
    assert [(e["event"], e["phase"], e["rollover"]) for e in store.history("mx1")] == [
        ("start", "publishing", created.id),
        ("transition", "propagating", created.id),
    ]
    with pytest.raises(ConflictError):
        store.save(replace(created, phase=Phase.AGING), [HistoryEvent(NOW, "lost", {})])
    with pytest.raises(ConflictError):
        store.create(rollover(Phase.PUBLISHING), [HistoryEvent(NOW, "second", {})])
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle  # an entry that cannot be written: the save goes with it
    with pytest.raises(ValueError):
        store.save(replace(saved, phase=Phase.AGING), [HistoryEvent(NOW, "cycle", cycle)])
    assert store.current("mx1") == saved
    assert [e["event"] for e in store.history("mx1")] == ["start", "transition"]


def test_latest_is_current_for_every_service_in_one_read(backend: Backend) -> None:
    """A service with finished rollovers and an active one, one whose last ended, one failed
    and resumed past a later-id finished one of another service: each what current() says."""
    store, _ = backend
    assert store.latest() == {}
    done = store.create(rollover(Phase.PUBLISHING))
    store.save(replace(done, phase=Phase.DONE))
    active = store.create(rollover(Phase.PUBLISHING))
    ended = store.create(rollover(Phase.PUBLISHING, service="mx2", owner="_25._tcp.mx2."))
    store.save(replace(ended, phase=Phase.ABORTED))
    failed = store.create(rollover(Phase.CUTTING_OVER, service="mx3", owner="_25._tcp.mx3."))
    failed = store.save(replace(failed, phase=Phase.FAILED))
    other = store.create(rollover(Phase.PUBLISHING, service="mx4", owner="_25._tcp.mx4."))
    store.save(replace(other, phase=Phase.DONE))
    store.save(replace(failed, phase=Phase.CUTTING_OVER))  # resumed
    latest = store.latest()
    assert sorted(latest) == ["mx1", "mx2", "mx3", "mx4"]
    assert latest == {name: store.current(name) for name in latest}
    assert latest["mx1"].id == active.id
    assert latest["mx3"].phase == Phase.CUTTING_OVER


def test_one_active_rollover_per_service(backend: Backend) -> None:
    store, _ = backend
    first = store.create(rollover(Phase.PUBLISHING))
    with pytest.raises(ConflictError, match="already has a rollover"):
        store.create(rollover(Phase.PUBLISHING))
    done = store.save(replace(first, phase=Phase.DONE))
    assert store.services() == []
    second = store.create(rollover(Phase.PUBLISHING))
    assert store.current("mx1") == second
    assert second.id != first.id
    with pytest.raises(ConflictError, match="another rollover in progress"):
        store.save(replace(done, phase=Phase.PUBLISHING))  # the finished one, revived
    assert store.current("mx1") == second


def test_lease(backend: Backend) -> None:
    """Taken, refused to another, renewed, released, taken over once expired: with the real
    clock (the host's monotonic one for SQLite; PostgreSQL judges by its own)."""
    store, _ = backend
    r = store.create(rollover(Phase.PUBLISHING))
    assert store.acquire(r, "a", time.monotonic(), 30)
    assert not store.acquire(r, "b", time.monotonic(), 30)
    assert store.lease_holder(r, time.monotonic()) == "a"
    assert store.acquire(r, "a", time.monotonic(), 0.3)  # renewed, shorter
    time.sleep(0.45)
    assert store.lease_holder(r, time.monotonic()) is None  # expired
    assert store.acquire(r, "b", time.monotonic(), 30)  # taken over
    assert not store.acquire(r, "a", time.monotonic(), 30)
    store.release(r, "a")  # not a's: nothing happens
    assert store.lease_holder(r, time.monotonic()) == "b"
    store.break_lease(r, "b")
    assert store.lease_holder(r, time.monotonic()) is None


def test_history_is_appended_in_order(backend: Backend) -> None:
    store, _ = backend
    r = store.create(rollover(Phase.PUBLISHING))
    other = store.create(rollover(Phase.PUBLISHING, service="mx2"))
    for i in range(5):
        store.append(r, NOW + timedelta(seconds=i), f"e{i}", {"i": i, "when": NOW})
        store.append(other, NOW, "other", {})
    entries = store.history("mx1")
    assert [e["event"] for e in entries] == [f"e{i}" for i in range(5)]
    assert entries[0] == {
        "rollover": r.id,
        "at": NOW.isoformat(),
        "event": "e0",
        "phase": "publishing",
        "detail": {"i": 0, "when": str(NOW)},
    }
    assert [e["event"] for e in store.history("mx2")] == ["other"] * 5


def test_services_by_minute_then_owner_from_the_root(backend: Backend) -> None:
    store, _ = backend
    later = NOW + timedelta(minutes=5)
    for service, owner, since in [
        ("late", "_25._tcp.a.example.org.", later),
        ("zorg", "_25._tcp.b.example.org.", NOW + timedelta(seconds=30)),  # same minute
        ("acom", "_25._tcp.z.example.com.", NOW),
        ("done", "_25._tcp.a.example.com.", NOW),
    ]:
        store.create(rollover(Phase.PUBLISHING, service=service, owner=owner, since=since))
    finished = store.current("done")
    assert finished is not None
    store.save(replace(finished, phase=Phase.DONE))
    assert store.services() == ["acom", "zorg", "late"]


def test_ownership_round_trip(backend: Backend) -> None:
    _, ownership = backend
    one, two = association(1), association(2)
    upper = OWNER.upper()
    ownership.claim(OWNER, frozenset({one, two}), "mx1", NOW)
    assert ownership.owned(upper) == {one, two}
    assert ownership.published_at(OWNER) == {one: None, two: None}
    ownership.confirm(OWNER, frozenset({one}), NOW, ("boot-1", 12.5))
    assert ownership.published_at(OWNER) == {one: NOW, two: None}
    assert ownership.published(OWNER)[one]["boot_id"] == "boot-1"
    ownership.seen(OWNER, frozenset({two}), NOW + timedelta(minutes=1), ttl=300)
    assert ownership.published_at(OWNER)[one] is None  # found missing: not confirmed
    assert ownership.last_rrset(OWNER) == (frozenset({two}), 300)
    ownership.note_served(OWNER, {300, None}, NOW)
    assert ownership.replaced(OWNER)[300]["at"] == NOW
    ownership.set_version(OWNER, "2026112801")
    assert ownership.version(OWNER) == "2026112801"
    ownership.seen(OWNER, frozenset({one, two}), NOW + timedelta(minutes=2), ttl=300)
    assert ownership.published_at(OWNER)[one] == NOW + timedelta(minutes=2)  # back
    ownership.restart(OWNER, frozenset({one}), NOW + timedelta(minutes=3))
    assert ownership.published_at(OWNER)[one] == NOW + timedelta(minutes=3)
    ownership.release(OWNER, frozenset({one, two}))
    assert ownership.owned(OWNER) == frozenset()
    assert ownership.owned("_25._tcp.other.") == frozenset()
    ownership.durable()


# -- PostgreSQL only ---------------------------------------------------------------------
@lab
def test_history_refuses_update_delete_and_truncate(pg: Opened) -> None:
    store = pg.store()
    r = store.create(rollover(Phase.PUBLISHING))
    store.append(r, NOW, "start", {})
    for sql in (
        "UPDATE rollover_history SET event = 'forged'",
        "DELETE FROM rollover_history",
        "TRUNCATE rollover_history",
    ):
        with pytest.raises(Exception, match="append-only"):
            pg.cluster.psql(sql, schema=pg.schema)  # even the superuser, through the trigger
    assert [e["event"] for e in store.history("mx1")] == ["start"]


@lab
def test_leases_are_judged_by_the_database_clock(pg: Opened, tmp_path: Path) -> None:
    """A host an hour ahead cannot take a live lease; a host an hour behind does not keep
    (or see) an expired one. The SQLite store, judged by the hosts' clocks, is fooled by
    the same calls: the test tells the difference."""
    first, second = pg.store(), pg.store()  # two hosts, two connections
    r = first.create(rollover(Phase.PUBLISHING))
    host = time.time()
    hour = 3600.0
    assert first.acquire(r, "host-a", host, ttl=0.6)
    # An hour ahead: a's lease looks expired to its clock, but is live.
    assert not second.acquire(r, "host-b", host + hour, ttl=30)
    assert second.lease_holder(r, host + hour) == "host-a"
    time.sleep(0.8)
    # An hour behind: a's lease looks live for an hour to its clock, but has expired.
    assert first.lease_holder(r, host - hour) is None
    assert second.acquire(r, "host-b", host - hour, ttl=30)
    assert not first.acquire(r, "host-a", host - hour, ttl=30)  # cannot keep it either
    assert first.lease_holder(r, host + hour) == "host-b"

    sqlite = SqliteStateStore(str(tmp_path))
    s = sqlite.create(rollover(Phase.PUBLISHING))
    assert sqlite.acquire(s, "host-a", host, ttl=0.6)
    assert sqlite.acquire(s, "host-b", host + hour, ttl=30)  # a host clock decides there
    sqlite.close()


def _wait_for_lock_waiters(cluster: PostgresCluster, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = cluster.admin(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name = 'rollover'"
        )
        if rows[0][0] >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} sessions waiting on a lock")


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()


@lab
def test_two_coordinators_racing_one_save_one_wins(pg: Opened) -> None:
    """Both read version 1 and save at once (held at the row until both wait on it): one
    saves, the other is refused, and nothing of it is written."""
    import psycopg

    one, two = pg.store(), pg.store()
    r = one.create(rollover(Phase.PUBLISHING))
    seen_one, seen_two = one.current("mx1"), two.current("mx1")
    assert seen_one is not None
    assert seen_two is not None
    outcomes: list[Any] = []

    def save(store: PostgresStateStore, seen: Rollover, phase: Phase) -> None:
        try:
            outcomes.append(store.save(replace(seen, phase=phase)))
        except ConflictError as exc:
            outcomes.append(exc)

    with psycopg.connect(pg.dsn) as holder:  # holds the row, so both saves wait on it
        holder.execute("SELECT 1 FROM rollovers WHERE id = %s FOR UPDATE", (r.id,))
        threads = [
            threading.Thread(target=save, args=(one, seen_one, Phase.PROPAGATING)),
            threading.Thread(target=save, args=(two, seen_two, Phase.FAILED)),
        ]
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(pg.cluster, 2)
        holder.rollback()
    _join(threads)
    won = [o for o in outcomes if isinstance(o, Rollover)]
    lost = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(won) == 1, outcomes
    assert len(lost) == 1, outcomes
    assert "changed by another process" in str(lost[0])
    assert one.current("mx1") == two.current("mx1") == won[0]
    assert won[0].version == 2


@lab
def test_two_coordinators_editing_one_owner_lose_no_update(pg: Opened) -> None:
    """Claims of one owner's row from two connections at once, read-modify-write each:
    every claim is kept (the owner's advisory lock serializes the edits)."""
    first, second = PostgresOwnership(pg.store()), PostgresOwnership(pg.store())
    count = 25

    def claims(ledger: PostgresOwnership, base: int) -> None:
        for i in range(count):
            ledger.claim(OWNER, frozenset({association(base + i)}), "mx1", NOW)

    threads = [
        threading.Thread(target=claims, args=(first, 0)),
        threading.Thread(target=claims, args=(second, 1000)),
    ]
    for thread in threads:
        thread.start()
    _join(threads)
    expected = {association(i) for i in range(count)} | {
        association(1000 + i) for i in range(count)
    }
    assert first.owned(OWNER) == expected
    assert second.owned(OWNER) == expected


@lab
def test_an_ownership_edit_waits_for_the_other_then_reads_its_write(pg: Opened) -> None:
    """Deterministic: the owner's lock held elsewhere, two edits queue behind it and both
    land (a row neither had inserted yet, which no row lock could have covered)."""
    import psycopg

    first, second = PostgresOwnership(pg.store()), PostgresOwnership(pg.store())
    with psycopg.connect(pg.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s::integer, hashtext(%s))", (0x726F6C6C, OWNER))
        threads = [
            threading.Thread(
                target=ledger.claim, args=(OWNER, frozenset({association(n)}), "mx1", NOW)
            )
            for ledger, n in ((first, 1), (second, 2))
        ]
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(pg.cluster, 2)
        holder.execute("SELECT pg_advisory_unlock_all()")
    _join(threads)
    assert first.owned(OWNER) == {association(1), association(2)}


def _assert_one_line(error: BaseException, *secrets: str) -> None:
    text = str(error)
    assert isinstance(error, StateError), repr(error)
    assert error.exit_code == 11
    assert "\n" not in text, text
    assert "Traceback" not in text
    assert text.startswith(SOURCE + ": "), text
    for secret in secrets:
        assert secret not in text, text


@lab
def test_server_down_is_a_one_line_error_and_the_next_call_resumes(pg: Opened) -> None:
    store = pg.store()
    ownership = PostgresOwnership(store)
    r = store.create(rollover(Phase.PUBLISHING))
    store.append(r, NOW, "start", {})
    ownership.claim(OWNER, frozenset({association(1)}), "mx1", NOW)
    assert store.acquire(r, "a", 0.0, 60)
    pg.cluster.stop()
    try:
        calls: list[Callable[[], Any]] = [
            lambda: store.current("mx1"),
            lambda: store.save(replace(r, phase=Phase.PROPAGATING)),
            lambda: store.create(rollover(Phase.PUBLISHING, service="mx2")),
            lambda: store.acquire(r, "a", 0.0, 60),
            lambda: store.lease_holder(r, 0.0),
            lambda: store.append(r, NOW, "lost", {}),
            lambda: store.history("mx1"),
            store.services,
            lambda: ownership.owned(OWNER),
            lambda: ownership.claim(OWNER, frozenset({association(2)}), "mx1", NOW),
            lambda: PostgresStateStore(pg.dsn, source=SOURCE),
            lambda: migrate(pg.dsn, SOURCE),
        ]
        for call in calls:
            with pytest.raises(StateError) as caught:
                call()
            _assert_one_line(caught.value, pg.cluster.password, pg.dsn)
            assert "Connection refused" in str(caught.value)
    finally:
        pg.cluster.start()
    # The first call after the restart works, and everything committed is there.
    assert store.current("mx1") == r
    assert store.lease_holder(r, 0.0) == "a"
    assert [e["event"] for e in store.history("mx1")] == ["start"]
    assert ownership.owned(OWNER) == {association(1)}
    assert store.save(replace(r, phase=Phase.PROPAGATING)).version == 2


@lab
def test_a_restart_between_calls_is_not_seen(pg: Opened) -> None:
    """The idle connection the restart cut off is noticed and replaced before the next
    call uses it: no error at all, and nothing lost."""
    store = pg.store()
    ownership = PostgresOwnership(store)
    r = store.create(rollover(Phase.PUBLISHING))
    ownership.claim(OWNER, frozenset({association(1)}), "mx1", NOW)
    pg.cluster.restart()
    assert store.current("mx1") == r
    pg.cluster.crash()  # an immediate shutdown: crash recovery at the start
    pg.cluster.start()
    saved = store.save(replace(r, phase=Phase.PROPAGATING))
    pg.cluster.restart()
    assert ownership.owned(OWNER) == {association(1)}
    assert store.current("mx1") == saved


@lab
def test_a_lost_connection_mid_transaction_writes_nothing(pg: Opened) -> None:
    """An ownership edit (read, then write, in one transaction) cut off by the server's
    restart between its read and its write: nothing of it is written, the error is one
    line, and the next call works."""
    store = pg.store()
    ownership = PostgresOwnership(store)
    ownership.claim(OWNER, frozenset({association(1)}), "mx1", NOW)

    def half_edit() -> None:
        with ownership._editing(OWNER) as doc:
            doc["owners"][OWNER][str(association(2))] = {"service": "mx1"}
            doc.setdefault("versions", {})[OWNER] = "half"
            pg.cluster.restart()

    with pytest.raises(StateError) as caught:
        half_edit()
    _assert_one_line(caught.value, pg.cluster.password)
    assert ownership.owned(OWNER) == {association(1)}
    assert ownership.version(OWNER) is None
    # And a rollover write whose session is terminated before its commit.
    r = store.create(rollover(Phase.PUBLISHING))
    backend = store._session.query("pid", "SELECT pg_backend_pid()")[0][0]

    def half_save() -> None:
        with store._session.transaction("cannot write state") as cursor:
            cursor.execute(
                "UPDATE rollovers SET version = 99, data = 'half' WHERE id = %s", (r.id,)
            )
            pg.cluster.admin(f"SELECT pg_terminate_backend({int(backend)})")
            cursor.execute("SELECT 1")

    with pytest.raises(StateError) as caught:
        half_save()
    _assert_one_line(caught.value, pg.cluster.password)
    assert store.current("mx1") == r


@lab
def test_migrate_is_idempotent_and_safe_at_once(postgres: PostgresCluster) -> None:
    postgres.start()
    schema, dsn = postgres.fresh_schema()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(migrate(dsn, SOURCE))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    _join(threads)
    assert sorted(results) == [(0, LATEST)] + [(LATEST, LATEST)] * 3
    assert migrate(dsn, SOURCE) == (LATEST, LATEST)
    rows = postgres.psql("SELECT version FROM rollover_schema_version", schema=schema)
    assert rows == [(n,) for n in range(1, LATEST + 1)]
    PostgresStateStore(dsn, source=SOURCE).close()


@lab
def test_an_unmigrated_or_newer_schema_is_refused(postgres: PostgresCluster) -> None:
    postgres.start()
    schema, dsn = postgres.fresh_schema()
    with pytest.raises(StateError) as caught:
        PostgresStateStore(dsn, source=SOURCE)
    _assert_one_line(caught.value, postgres.password)
    assert "not initialised: run `rollover state migrate`" in str(caught.value)
    migrate(dsn, SOURCE)
    store = PostgresStateStore(dsn, source=SOURCE)
    postgres.psql(
        f"INSERT INTO rollover_schema_version (version) VALUES ({LATEST + 41})", schema=schema
    )
    newer = f"schema version {LATEST + 41} is newer than this rollover knows ({LATEST})"
    for call in (lambda: PostgresStateStore(dsn, source=SOURCE), lambda: migrate(dsn, SOURCE)):
        with pytest.raises(StateError) as caught:
            call()
        _assert_one_line(caught.value, postgres.password)
        assert newer in str(caught.value)
    # An open store checks again when it reconnects (after a restart, say).
    postgres.restart()
    with pytest.raises(StateError, match="is newer than this rollover knows"):
        store.current("mx1")
    store.close()


@lab
def test_the_password_never_appears_in_an_error(
    postgres: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.start()
    schema, dsn = postgres.fresh_schema()
    migrate(dsn, SOURCE)
    wrong = "Wr0ng-s3cret-" + "x" * 8
    cases = {
        "wrong password": postgres.dsn(schema=schema, password=wrong),
        "as a URI": f"postgresql://rollover:{wrong}@127.0.0.1:{postgres.port}/rollover",
        "unknown user": postgres.dsn(user="nobody-here", password=wrong),
        "unparsable": f"host=127.0.0.1 {wrong} password={wrong}",
        "unknown option": f"password={quote_value(wrong)} bogus_option={wrong}",
    }
    for name, text in cases.items():
        with pytest.raises(StateError) as caught:
            PostgresStateStore(text, source=SOURCE)
        _assert_one_line(caught.value, wrong, postgres.password)
        assert "authentication failed" in str(caught.value) or "connection string" in str(
            caught.value
        ), name
        with pytest.raises(StateError) as caught:
            migrate(text, SOURCE)
        _assert_one_line(caught.value, wrong, postgres.password)
    store = PostgresStateStore(dsn, source=SOURCE)
    assert postgres.password not in repr(store)
    assert postgres.password not in repr(store._session)
    store.close()
    # libpq's environment, its password included, instead of a DSN.
    for key, value in {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGUSER": "rollover",
        "PGDATABASE": "rollover",
        "PGPASSWORD": wrong,
        "PGOPTIONS": f"-csearch_path={schema}",
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StateError) as caught:
        PostgresStateStore("", source=SOURCE)
    _assert_one_line(caught.value, wrong)
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    PostgresStateStore("", source=SOURCE).close()
    # The DSN file.
    with pytest.raises(StateError, match="cannot read the PostgreSQL DSN: No such file"):
        read_dsn_file(str(tmp_path / "absent.dsn"))
    (tmp_path / "empty.dsn").write_text("\n")
    with pytest.raises(StateError, match="empty"):
        read_dsn_file(str(tmp_path / "empty.dsn"))
    (tmp_path / "pg.dsn").write_text(dsn + "\n")
    assert read_dsn_file(str(tmp_path / "pg.dsn")) == dsn


@lab
def test_documented_grants_are_enough_to_run(postgres: PostgresCluster) -> None:
    """The schema migrated by its owner; the coordinators run as a role with only the
    grants the README lists, and the history is append-only by its grants too."""
    import psycopg

    postgres.start()
    schema, dsn = postgres.fresh_schema()
    migrate(dsn, SOURCE)
    role = f"app_{schema}"
    password = "app-" + role
    postgres.admin(
        f"CREATE ROLE {role} LOGIN PASSWORD {quote_value(password)}",
        database="rollover",
    )
    postgres.psql(
        f"""GRANT USAGE ON SCHEMA {schema} TO {role};
        GRANT SELECT ON rollover_schema_version TO {role};
        GRANT SELECT, INSERT, UPDATE ON rollovers TO {role};
        GRANT SELECT, INSERT ON rollover_history TO {role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON rollover_ownership TO {role}""",
        schema=schema,
    )
    app = postgres.dsn(schema=schema, user=role, password=password)
    store = PostgresStateStore(app, source=SOURCE)
    ownership = PostgresOwnership(store)
    r = store.create(rollover(Phase.PUBLISHING))
    r = store.save(replace(r, phase=Phase.PROPAGATING))
    assert store.acquire(r, "a", 0.0, 30)
    store.release(r, "a")
    store.append(r, NOW, "start", {})
    assert store.history("mx1")[0]["event"] == "start"
    ownership.claim(OWNER, frozenset({association(1)}), "mx1", NOW)
    ownership.release(OWNER, frozenset({association(1)}))
    assert store.services() == ["mx1"]
    assert migrate(app, SOURCE) == (LATEST, LATEST)  # nothing to do: no DDL needed
    store.close()
    with psycopg.connect(app) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute("DELETE FROM rollover_history")


# -- import from SQLite --------------------------------------------------------------------
def _sqlite_state(directory: Path) -> None:
    """Three rollovers (mx1: one done, one active; mx2 active), history, ownership, and a
    legacy ownership.json (mx3's) as an earlier version left it."""
    store = SqliteStateStore(str(directory))
    ownership = OwnershipStore(str(directory), connection=store.connection, lock=store.lock)
    first = store.create(rollover(Phase.PUBLISHING))
    store.append(first, NOW, "start", {"n": 1})
    store.save(replace(first, phase=Phase.DONE))
    store.append(first, NOW, "done", {})
    second = store.create(rollover(Phase.PUBLISHING, since=NOW + timedelta(days=1)))
    store.append(second, NOW + timedelta(days=1), "start", {"n": 2})
    other = store.create(rollover(Phase.PROPAGATING, service="mx2", owner="_25._tcp.mx2."))
    store.append(other, NOW, "start", {"n": 3})
    assert store.acquire(other, "host-a:1:x", 100.0, 60)
    ownership.claim(OWNER, frozenset({association(1), association(2)}), "mx1", NOW)
    ownership.confirm(OWNER, frozenset({association(1)}), NOW, ("boot", 1.0))
    ownership.seen(OWNER, frozenset({association(1)}), NOW, ttl=300)
    ownership.note_served(OWNER, {300}, NOW)
    reports = SqliteReportStore(store)
    for name in ("dane-mx1.json", "google-sts.json"):
        report = parse_report((TLSRPT_CORPUS / name).read_bytes(), name)
        assert reports.add(report, NOW + timedelta(hours=1)) == "new"
    store.close()
    legacy = {
        "version": 1,
        "owners": {"_25._tcp.mx3.": {str(association(3)): {"service": "mx3"}}},
        "versions": {"_25._tcp.mx3.": "7"},
    }
    (directory / "ownership.json").write_text(json.dumps(legacy))


OWNERS = (OWNER, "_25._tcp.mx2.", "_25._tcp.mx3.")


def _ledger_view(ledger: OwnershipLedger) -> dict[str, Any]:
    return {
        owner: (
            ledger.published(owner),
            ledger.replaced(owner),
            ledger.last_rrset(owner),
            ledger.version(owner),
        )
        for owner in OWNERS
    }


@lab
def test_import_sqlite_copies_everything_and_keeps_ids(pg: Opened, tmp_path: Path) -> None:
    _sqlite_state(tmp_path / "sqlite")
    target = pg.store()
    counts = import_sqlite(str(tmp_path / "sqlite"), target)
    assert counts == {
        "rollovers": 3,
        "active": 2,
        "history": 4,
        "ownership": 2,
        "reports": 2,
        "written": 1,
    }
    sqlite = SqliteStateStore(str(tmp_path / "sqlite"))
    sqlite_ownership = OwnershipStore(
        str(tmp_path / "sqlite"), connection=sqlite.connection, lock=sqlite.lock
    )
    for service in ("mx1", "mx2"):
        assert target.current(service) == sqlite.current(service)
        assert target.history(service) == sqlite.history(service)
    assert target.services() == sqlite.services() == ["mx2", "mx1"]
    ledger = PostgresOwnership(target)
    assert _ledger_view(ledger) == _ledger_view(sqlite_ownership)
    copied, kept = PostgresReportStore(target), SqliteReportStore(sqlite)
    assert copied.reports() == kept.reports()  # the reports, and when each was ingested
    assert [r.report.report_id for r in copied.reports()] == sorted(
        r.report.report_id for r in kept.reports()
    )
    assert copied.count() == 2
    assert copied.add(kept.reports()[0].report, NOW) == "duplicate"
    assert ledger.owned("_25._tcp.mx3.") == {association(3)}  # from the legacy file
    assert ledger.version("_25._tcp.mx3.") == "7"
    active = target.current("mx1")
    assert active is not None
    assert active.id == 2  # ids kept
    assert target.lease_holder(active, 0.0) is None  # the host's leases are not copied
    with pytest.raises(ConflictError, match="already has a rollover"):
        target.create(rollover(Phase.PUBLISHING))
    # The sequences go on after the imported ids.
    fresh = target.create(rollover(Phase.PUBLISHING, service="mx9"))
    assert fresh.id is not None
    assert fresh.id > 3  # (a refused insert spends an id: gaps, never reuse)
    target.append(fresh, NOW, "start", {})
    target.append(active, NOW, "later", {})
    assert [e["event"] for e in target.history("mx1")][-1] == "later"
    sqlite.close()


@lab
def test_import_sqlite_twice_is_a_no_op_and_other_content_is_refused(
    pg: Opened, tmp_path: Path
) -> None:
    _sqlite_state(tmp_path / "sqlite")
    target = pg.store()
    assert import_sqlite(str(tmp_path / "sqlite"), target)["written"] == 1
    assert import_sqlite(str(tmp_path / "sqlite"), target)["written"] == 0
    assert len(target.history("mx1")) == 3  # nothing twice
    # A store already in use, with other content, is not imported into.
    r = target.current("mx2")
    assert r is not None
    target.append(r, NOW, "since the import", {})
    with pytest.raises(StateError, match=r"already holds 3 rollovers.*nothing imported"):
        import_sqlite(str(tmp_path / "sqlite"), target)
    assert len(target.history("mx2")) == 2
    # Only reports there, not these: refused too.
    other = Opened(pg.cluster)
    assert migrate(other.dsn, SOURCE) == (0, LATEST)
    elsewhere = other.store()
    report = parse_report((TLSRPT_CORPUS / "mailru-sts.json").read_bytes(), "mailru-sts.json")
    PostgresReportStore(elsewhere).add(report, NOW)
    with pytest.raises(StateError, match=r"1 TLS-RPT reports, not those of"):
        import_sqlite(str(tmp_path / "sqlite"), elsewhere)
    assert elsewhere.services() == []
    other.close()
    with pytest.raises(StateError, match="no SQLite state"):
        import_sqlite(str(tmp_path / "absent"), target)
    assert not (tmp_path / "absent").exists()


# -- no server -----------------------------------------------------------------------------
def test_psycopg_is_imported_only_when_a_postgresql_store_is_opened() -> None:
    code = (
        "import sys\n"
        "import rollover.state.store, rollover.state.ownership, rollover.state.postgres\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def _child_reads(store: PostgresStateStore, send: Any) -> None:
    current = store.current("mx1")
    send.send(None if current is None else current.version)


@lab
def test_a_forked_child_opens_its_own_connection(pg: Opened) -> None:
    """The fleet forks workers (workflows.fleet.in_processes): a child never talks on its
    parent's socket nor closes it, and the parent's session goes on."""
    import multiprocessing

    store = pg.store()
    store.create(rollover(Phase.PUBLISHING))
    parent_pid = store._session.query("pid", "SELECT pg_backend_pid()")[0][0]
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_reads, args=(store, send))
    child.start()
    assert receive.poll(30)
    assert receive.recv() == 1
    child.join(30)
    assert child.exitcode == 0
    assert store._session.query("pid", "SELECT pg_backend_pid()")[0][0] == parent_pid
    assert store.current("mx1") is not None


def test_errors_are_scrubbed_of_the_password_long_or_short() -> None:
    from rollover.state.postgres import _Session

    long = _Session("host=127.0.0.1 password='s3cr3t pass/w@rd'", SOURCE)
    assert long.scrub("x s3cr3t pass/w@rd y s3cr3t%20pass%2Fw%40rd\nnext") == "x *** y ***; next"
    short = _Session("postgresql://u:p@127.0.0.1:1/db", SOURCE)
    assert short.scrub("port 1: p failed 'p'") == "port 1: *** failed '***'"
    with pytest.raises(StateError) as caught:
        _Session("host=127.0.0.1 s3cr3t-typed-alone", SOURCE)
    _assert_one_line(caught.value, "s3cr3t")


@lab
def test_the_session_commits_durably_and_is_bounded(pg: Opened) -> None:
    """A server (or DSN) with synchronous_commit off gets it on for the store's session;
    the time limits apply where none is set, and one set by the DSN is kept."""
    options = f"-csearch_path={pg.schema} -csynchronous_commit=off -clock_timeout=7s"
    store = PostgresStateStore(f"{pg.dsn} options={quote_value(options)}", source=SOURCE)
    settings = store._session.query(
        "settings",
        "SELECT current_setting('synchronous_commit'), current_setting('lock_timeout'), "
        "current_setting('statement_timeout'), current_setting('application_name')",
    )
    assert settings == [("on", "7s", "1min", "rollover")]
    store.close()


@lab
def test_a_silent_network_cut_is_bounded_by_tcp(pg: Opened) -> None:
    """The client's socket probes an idle wait and gives up on unacknowledged data after
    30 s (a peer gone without a FIN would otherwise hang the run); a DSN's own value wins."""
    tcp = socket.IPPROTO_TCP

    def options(dsn: str) -> tuple[int, ...]:
        store = PostgresStateStore(dsn, source=SOURCE)
        try:
            fd = store._session.connection().fileno()
            with socket.socket(fileno=os.dup(fd)) as sock:
                return (
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
                    sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
                    sock.getsockopt(tcp, socket.TCP_KEEPCNT),
                    sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
                )
        finally:
            store.close()

    assert options(pg.dsn) == (1, 15, 5, 3, 30000)
    assert options(f"{pg.dsn} tcp_user_timeout=4000 keepalives_idle=60") == (1, 60, 5, 3, 4000)


@lab
def test_restarts_while_a_coordinator_works_lose_no_step(pg: Opened) -> None:
    """A coordinator saving and recording step after step while the server restarts twice:
    each call either works or fails with one line; every saved step is there after, the
    history never records a step that was not saved, and work resumes after each restart."""
    store = pg.store()
    store.create(rollover(Phase.PUBLISHING))
    saved: list[int] = []
    errors: list[StateError] = []
    stop = threading.Event()

    def coordinator() -> None:
        step = 0
        while not stop.is_set() or len(saved) < 5:
            step += 1
            try:
                current = store.current("mx1")
                assert current is not None
                after = store.save(replace(current, notes=(f"step {step}",)))
                saved.append(after.version)
                store.append(after, NOW, "step", {"version": after.version})
            except StateError as exc:
                errors.append(exc)
                time.sleep(0.005)

    worker = threading.Thread(target=coordinator)
    worker.start()
    try:
        for _ in range(2):
            time.sleep(0.15)
            pg.cluster.restart()
        time.sleep(0.15)
    finally:
        stop.set()
        worker.join(30)
    assert errors, "no call ever met the restarts"
    for error in errors:
        _assert_one_line(error, pg.cluster.password)
    final = store.current("mx1")
    assert final is not None
    # A save whose commit was cut off may have landed (reported failed): never the reverse.
    assert set(saved) <= set(range(2, final.version + 1))
    recorded = [e["detail"]["version"] for e in store.history("mx1")]
    assert recorded == sorted(set(recorded))
    assert set(recorded) <= set(range(2, final.version + 1))
    assert saved[-1] == final.version
