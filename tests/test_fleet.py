"""A fleet's tick on threads: bounded concurrency, every service advanced exactly once per pass,
errors kept per service, and stores that one connection serves from many threads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollover.config import DEFAULT_CONCURRENCY
from rollover.core.association import parse_association
from rollover.core.phases import Phase, Rollover
from rollover.engine.machine import AdvanceResult
from rollover.errors import ConflictError, ProviderError
from rollover.state.ownership import OwnershipStore
from rollover.state.store import SqliteStateStore
from rollover.workflows.fleet import batched_tick, in_parallel, in_processes

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OLD = frozenset({parse_association("3 1 1 " + "cd" * 32)})
NEW = frozenset({parse_association("3 1 1 " + "ab" * 32)})


class Gauge:
    """How many calls run at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *_exc: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_in_parallel_is_bounded_and_runs_each_item_once(concurrency: int) -> None:
    gauge = Gauge()
    done: list[int] = []

    def work(item: int) -> None:
        with gauge:
            time.sleep(0.02)
            done.append(item)

    in_parallel(range(12), work, concurrency)
    assert sorted(done) == list(range(12))
    assert gauge.peak == concurrency  # reached, never passed


def test_in_parallel_raises_a_bug_after_every_item_ran() -> None:
    done: list[int] = []

    def work(item: int) -> None:
        if item == 2:
            raise ValueError("a bug")
        done.append(item)

    with pytest.raises(ValueError, match="a bug"):
        in_parallel(range(6), work, 4)
    assert sorted(done) == [0, 1, 3, 4, 5]


class Batch:
    """A Batching provider that counts its batches."""

    name = "p"

    def __init__(self, refuse: bool = False) -> None:
        self.batches: list[int] = []
        self.refuse = refuse

    def apply_many(self, changes: Any) -> list[Any]:
        if self.refuse:
            raise ConflictError("p: an RRset moved")
        self.batches.append(len(changes))
        return []


@dataclass
class FakeEngine:
    """What the tick asks of an engine: advance (deferring a change once), its provider."""

    name: str
    provider: Any
    gauge: Gauge
    fails: bool = False
    calls: list[bool] = field(default_factory=list)

    def advance(self, *, defer_changes: bool = False) -> AdvanceResult:
        with self.gauge:
            time.sleep(0.01)
        self.calls.append(defer_changes)
        if self.fails:
            raise ProviderError(f"{self.name}: the primary timed out")
        rollover = Rollover(
            self.name, f"_25._tcp.{self.name}.", Phase.RETIRING, OLD, NEW, "/c", "/k", "0" * 64,
            NOW, NOW,
        )  # fmt: skip
        return AdvanceResult(rollover, True, "ok", deferred=defer_changes)


def test_tick_advances_on_threads_batches_then_carries_on(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[list[str]] = []

    def batch(engines: list[Any], out: Any, *, singles: bool) -> None:
        del out, singles
        sent.append([e.name for e in engines])

    monkeypatch.setattr("rollover.workflows.fleet.batch_provider_changes", batch)
    gauge = Gauge()
    provider = Batch()
    engines = {f"mx{i}": FakeEngine(f"mx{i}", provider, gauge) for i in range(10)}
    engines["mx4"].fails = True
    warned: list[str] = []
    results = batched_tick(
        engines,  # type: ignore[arg-type]
        batched=True,
        single=False,
        concurrency=4,
        out=lambda _line: None,
        warn=warned.append,
    )
    assert list(results) == list(engines)  # in the configuration's order, whatever finished first
    assert isinstance(results["mx4"], ProviderError)
    assert sent == [[f"mx{i}" for i in range(10) if i != 4]]  # one batch, in order
    assert engines["mx0"].calls == [True, False]  # deferred, then carried on
    assert engines["mx4"].calls == [True]
    assert gauge.peak == 4
    assert warned == []


def test_a_refused_batch_leaves_each_service_to_go_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def batch(engines: list[Any], out: Any, *, singles: bool) -> None:
        raise ConflictError("p: an RRset moved")

    monkeypatch.setattr("rollover.workflows.fleet.batch_provider_changes", batch)
    gauge = Gauge()
    engines = {f"mx{i}": FakeEngine(f"mx{i}", Batch(), gauge) for i in range(3)}
    warned: list[str] = []
    batched_tick(
        engines,  # type: ignore[arg-type]
        batched=True,
        single=False,
        concurrency=2,
        out=lambda _line: None,
        warn=warned.append,
    )
    assert len(warned) == 1
    assert "going service by service" in warned[0]
    assert all(e.calls == [True, False] for e in engines.values())


def test_one_service_alone_raises_its_error() -> None:
    engines = {"mx1": FakeEngine("mx1", object(), Gauge(), fails=True)}
    with pytest.raises(ProviderError, match="timed out"):
        batched_tick(
            engines,  # type: ignore[arg-type]
            batched=False,
            single=True,
            concurrency=DEFAULT_CONCURRENCY,
            out=lambda _line: None,
            warn=lambda _line: None,
        )


def test_stores_sharing_one_connection_are_safe_from_many_threads(tmp_path: Path) -> None:
    """Each thread creates, saves, leases and appends its own rollover and claims its owner
    name, all on one connection: no transaction takes in another thread's statements
    ("cannot start a transaction within a transaction"), nothing is lost."""
    store = SqliteStateStore(str(tmp_path))
    ownership = OwnershipStore(str(tmp_path), connection=store.connection, lock=store.lock)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            name = f"mx{i}"
            planned = Rollover(
                name, f"_25._tcp.{name}.", Phase.PUBLISHING, OLD, NEW, "/c", "/k", "0" * 64,
                NOW, NOW,
            )  # fmt: skip
            rollover = store.create(planned)
            for step in range(5):
                assert store.acquire(rollover, f"h{i}", float(step), 30.0)
                ownership.claim(f"_25._tcp.{name}.", NEW, name, NOW)
                rollover = store.save(rollover)
                store.append(rollover, NOW, "transition", {"step": step})
                store.release(rollover, f"h{i}")
        except BaseException as exc:
            errors.append(exc)

    in_parallel(range(24), one, 12)
    assert errors == []
    assert len(store.services()) == 24
    assert all(len(store.history(f"mx{i}")) == 5 for i in range(24))
    assert all(ownership.owned(f"_25._tcp.mx{i}.") == NEW for i in range(24))
    assert all((r := store.current(f"mx{i}")) is not None and r.version == 6 for i in range(24))


def test_durable_syncs_the_wal_once_per_batch_of_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits are not synced one by one; ``durable()`` syncs what was committed, and costs
    nothing when nothing was committed since."""
    import os

    store = SqliteStateStore(str(tmp_path))
    ownership = OwnershipStore(
        str(tmp_path), connection=store.connection, lock=store.lock, synced=store.synced
    )
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert store.connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    ownership.claim("_25._tcp.mx1.", NEW, "mx1", NOW)
    store.create(
        Rollover("mx1", "_25._tcp.mx1.", Phase.PUBLISHING, OLD, NEW, "/c", "/k", "0" * 64, NOW, NOW)
    )
    assert synced == []  # committed, not yet synced
    ownership.durable()
    assert str(tmp_path / "state.db-wal") in synced
    count = len(synced)
    store.durable()  # the same connection, nothing new: no second sync
    ownership.durable()
    assert len(synced) == count


def test_ownership_seen_again_unchanged_writes_nothing(tmp_path: Path) -> None:
    ownership = OwnershipStore(str(tmp_path))
    ownership.seen("_25._tcp.mx1.", NEW, NOW, (None, None), 300)
    changes = ownership._db.total_changes
    ownership.seen("_25._tcp.mx1.", NEW, NOW, (None, None), 300)
    assert ownership._db.total_changes == changes
    ownership.seen("_25._tcp.mx1.", OLD, NOW, (None, None), 300)
    assert ownership._db.total_changes == changes + 1


def test_a_tick_begins_no_service_once_its_time_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Work already begun finishes; the rest is left for the next tick, in order, and said."""
    monkeypatch.setattr("rollover.workflows.fleet.batch_provider_changes", lambda *_a, **_k: None)
    gauge = Gauge()
    engines = {f"mx{i}": FakeEngine(f"mx{i}", object(), gauge) for i in range(40)}
    said: list[str] = []
    results = batched_tick(
        engines,  # type: ignore[arg-type]
        batched=False,
        single=False,
        concurrency=4,
        out=said.append,
        warn=lambda _line: None,
        seconds=0.05,  # each advance takes 10 ms: 4 at once, about 20 begun
    )
    reached = list(results)
    assert 4 <= len(reached) < 40
    assert reached == [f"mx{i}" for i in range(len(reached))]  # the first ones, in order
    assert all(engines[name].calls == [False] for name in reached)
    assert all(engines[f"mx{i}"].calls == [] for i in range(len(reached), 40))
    assert said == [
        f"the tick's 0.05 s are spent: {40 - len(reached)} services left for the next tick"
    ]


def test_services_come_by_the_minute_they_moved_then_zone_by_zone(tmp_path: Path) -> None:
    """The longest waiting first (by the minute); within a minute, one zone's services
    together, so that a tick cut short splits few zones' batches."""
    store = SqliteStateStore(str(tmp_path))
    for name, host, minute in (
        ("b1", "mx1.b.test", 3),
        ("a2", "mx2.a.test", 2),
        ("b2", "mx2.b.test", 2),
        ("a1", "mx1.a.test", 2),
        ("c1", "mx1.c.test", 1),
    ):
        since = NOW.replace(minute=minute, second=minute * 7)
        store.create(
            Rollover(
                name,
                f"_25._tcp.{host}.",
                Phase.AGING,
                OLD,
                NEW,
                "/c",
                "/k",
                "0" * 64,
                since,
                since,
            )
        )
    assert store.services() == ["c1", "a1", "a2", "b2", "b1"]


def test_in_processes_spreads_the_work_and_merges_it() -> None:
    """Each item in exactly one forked process (the work is inherited, not pickled: a closure
    over local state works), the results merged; one process runs here."""
    import os

    here = os.getpid()
    seen_offset = 1000

    def work(chunk: list[int]) -> dict[str, tuple[int, int]]:
        return {str(i): (i + seen_offset, os.getpid()) for i in chunk}

    merged = in_processes(list(range(10)), work, 2)
    assert sorted(merged) == sorted(str(i) for i in range(10))
    assert all(
        value == i + seen_offset for i, (value, _pid) in ((int(k), v) for k, v in merged.items())
    )
    pids = {pid for _value, pid in merged.values()}
    assert len(pids) == 2
    assert here not in pids
    alone = in_processes([1, 2], work, 1)
    assert {pid for _v, pid in alone.values()} == {here}


def test_in_processes_raises_a_workers_error_here() -> None:
    def work(chunk: list[int]) -> dict[str, int]:
        if 3 in chunk:
            raise ProviderError("p: the primary timed out")
        return {str(i): i for i in chunk}

    with pytest.raises(ProviderError, match="timed out"):
        in_processes(list(range(6)), work, 2)
