"""The lease is held all through a long advance: renewed before every call that may block, so
a second process (a timer's next ``advance``) never finds it expired and acts at once."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rollover.errors import ConflictError
from tests.world import World, WorldConfig, chain_of, records_of, scratch_dir

OWN = records_of(chain_of(0), "3 1 1")  # the tool's own record of the key served at first


@pytest.fixture
def world() -> Iterator[World]:
    made = World(scratch_dir("lease-"), WorldConfig(records=OWN, owned=OWN))
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


def _during(world: World, op: str, action: Callable[[], Any]) -> list[Any]:
    """Run ``action`` (a second process) inside the first one's provider ``op`` call."""
    seen: list[Any] = []
    original = getattr(world.provider, op)

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not seen:
            seen.append(action())
        return result

    setattr(world.provider, op, slow)
    return seen


@pytest.mark.parametrize("minutes", [2.5, 3.5])
def test_a_second_process_is_kept_out_during_a_long_provider_wait(
    world: World, minutes: float
) -> None:
    """A provider wait of minutes, then more work: the second advance, started meanwhile,
    finds the lease held, however long the first advance has taken."""
    world.start(["3 1 1"], 1)
    world.crash_host = "mx-timer-b"  # the first process runs on another host: its lease
    # cannot be broken as a dead process's, only expire
    second = world.engine()

    def slow_wait_then_second_advance() -> Any:
        world.elapse(minutes * 60 - 5)  # the provider took its time (within wait_timeout)
        return second.advance()

    seen = _during(world, "wait", slow_wait_then_second_advance)
    world.crash_host = "mx-timer-a"
    first = world.engine()
    first.wait_timeout = minutes * 60
    first.advance()
    assert seen, "the provider was never waited on"
    assert seen[0].acted is False, seen[0].message
    assert "another process" in seen[0].message


def test_a_lease_lost_meanwhile_stops_the_first_process(world: World) -> None:
    """Taken over while the first process waited on the provider (it was presumed dead): the
    first stops at once instead of acting on a rollover another process now holds."""
    world.start(["3 1 1"], 1)
    world.crash_host = "mx-timer-a"
    thief = world.engine()
    first = world.engine()
    rollover = world.rollover()
    assert rollover is not None

    def taken_over() -> bool:
        world.store.break_lease(rollover, first.holder)
        return thief.acquire_lease(rollover)

    seen = _during(world, "wait", taken_over)
    result = first.advance()
    assert seen == [True]
    assert result.message == "the lease was lost to another process; stopping here"
    assert world.store.lease_holder(rollover, world.clock.monotonic()) == thief.holder


def test_a_lease_lost_before_a_blocking_call_raises(world: World) -> None:
    """The renewal before each blocking call: lost there, the call is not made."""
    world.start(["3 1 1"], 1)
    world.crash_host = "mx-timer-a"
    thief = world.engine()
    first = world.engine()
    rollover = world.rollover()
    assert rollover is not None
    applied_before = world.provider.calls["apply"]

    def taken_over() -> Any:
        world.store.break_lease(rollover, first.holder)
        thief.acquire_lease(rollover)
        return world.rrset()

    original = world.provider.read

    def read_then_lose(owner: str) -> Any:
        result = original(owner)
        if world.provider.calls["read"] == 1:
            taken_over()
        return result

    world.provider.calls["read"] = 0
    world.provider.read = read_then_lose  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match=r"lease .* was lost to another process"):
        first.advance()
    assert world.provider.calls["apply"] == applied_before  # the change was never sent


def test_an_advance_writes_its_lease_twice(world: World) -> None:
    """Taken once and released once per advance, however many steps it takes in between
    (each step only reads that the lease is still its own); a step more than RENEW_AFTER
    after the last write renews it for real."""
    from rollover.engine.leases import RENEW_AFTER

    world.start(["3 1 1"], 1)
    writes: list[str] = []
    for name in ("acquire", "release"):
        original = getattr(world.store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            writes.append(_name)
            return _original(*args)

        setattr(world.store, name, counted)
    engine = world.engine()
    engine.advance()  # publishing -> propagating -> aging: several steps, each renewing
    assert writes == ["acquire", "release"]
    writes.clear()
    rollover = world.rollover()
    assert rollover is not None
    assert engine.acquire_lease(rollover)
    world.elapse(RENEW_AFTER + 1)
    assert engine._renew(rollover)
    assert writes == ["acquire", "acquire"]
