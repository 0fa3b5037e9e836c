"""The rollover engine's unit tests (:class:`rollover.engine.machine.Engine`), on the fakes of
:mod:`rollover.ports` that :mod:`tests.world` puts together: a compare-and-swap DNS provider,
authoritative servers and resolvers, TTL-honouring caches, a mail server whose addresses present
what the fake deployer last reloaded, a clock the test steps, crash points through the engine's
``checkpoint``, the in-memory state store and the real ownership store on tmpfs. The lab tests in
``tests/e2e`` prove that the real servers (BIND, unbound, Postfix, the providers) behave like
these fakes; here every test is explicit and table-driven, and each runs in milliseconds.

Every test ends with :func:`assert_safe`: no sender could have failed at any moment
(:meth:`tests.world.World.sender_failures`: every RRset any cache may have held against every
chain any address presented meanwhile, no downgrade, no foreign record wrongly removed).

The tables:

- :data:`WALKS`: a rollover advance by advance, for each kind of plan (a key change, a first
  publication with a bridge, a matching type added, DANE-EE to DANE-TA, the "current + next"
  fast path): the phases each advance goes through and where it stops.
- :data:`FAULTS`: each phase held by a fault of the world there, then carried on to done.
- :data:`GUARDS`: each guard that holds a rollover (what DNS serves, the ageing, the cut-over,
  the retire, the verification), the phase it holds in and what it says; released, done.
- :data:`AGEING`: the deploy never comes before ``safety_factor x`` the longest TTL.
- :data:`FOREIGN`: records the tool did not publish are kept, unless they pinned the retired key.
- :data:`REFUSED_STARTS`: a start that cannot keep senders working changes nothing.
- :data:`LEASES`: a live holder keeps its lease, a dead one on this host loses it at once, one
  on another host when it expires.
- :data:`ABORTS`, :data:`ROLLBACKS`, :data:`RESUMES`: the operator's ways out, by phase.
- :data:`CRASHES`: a process killed at every checkpoint of the engine (on this host or another),
  then a fresh process carries the rollover to done, with no change made twice.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import rollover.engine.machine
from rollover.core.association import Association
from rollover.core.observation import DnssecState, Observation
from rollover.core.phases import CUTOVER_TIMEOUT, Phase, Rollover
from rollover.engine.leases import LEASE_SECONDS
from rollover.engine.machine import AdvanceResult
from rollover.errors import ConflictError, PreconditionError, RolloverError
from tests.certs import pem
from tests.world import (
    OWNER,
    SERVICE,
    TTL,
    UNUSABLE,
    FakeObserver,
    ProcessKilled,
    Version,
    World,
    WorldConfig,
    chain_of,
    label,
    records_of,
    scratch_dir,
)

OWN = records_of(chain_of(0), "3 1 1")  # the tool's record of the key presented at first
KEY1 = records_of(chain_of(1), "3 1 1")
LAGGARD = "198.51.100.25"  # the world's second address
OTHER_HOST = "mx2.example.test"

# The phases of a rollover that nothing holds, in order.
ORDER = [
    Phase.PUBLISHING,
    Phase.PROPAGATING,
    Phase.AGING,
    Phase.DEPLOYING,
    Phase.CUTTING_OVER,
    Phase.RETIRING,
    Phase.VERIFYING,
    Phase.DONE,
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything here is in memory: a socket opened anywhere is a bug of the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the engine's unit tests opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def make() -> Iterator[Callable[..., World]]:
    """``make(records=OWN, owned=<the tool's among them>, **WorldConfig)``: a fresh world."""
    made: list[World] = []

    def build(records: frozenset[Association] = OWN, **kw: Any) -> World:
        kw.setdefault("owned", records & OWN)
        made.append(World(scratch_dir("engine-"), WorldConfig(records=records, **kw)))
        return made[-1]

    yield build
    for world in made:
        shutil.rmtree(world.directory, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------
def current(world: World) -> Rollover:
    r = world.rollover()
    assert r is not None, "no rollover"
    return r


def phase(world: World) -> Phase:
    return current(world).phase


def assert_safe(world: World, *, before_the_tool: bool = False) -> None:
    """No sender could have failed; ``before_the_tool``: except on the RRset the world began
    with (a test that starts from a broken RRset)."""
    failures = [
        f
        for f in world.sender_failures()
        if not (before_the_tool and getattr(f.detail.get("version"), "origin", "") == "initial")
    ]
    assert failures == [], "\n".join(map(str, failures)) + "\n" + world.describe()


def transitions(world: World, since: int = 0) -> list[Phase]:
    """The phase each transition recorded in the history (from event ``since`` on) went to."""
    return [
        Phase(e["detail"]["to"]) for e in world.store.events[since:] if e["event"] == "transition"
    ]


def path(world: World) -> list[Phase]:
    """The phases the rollover went through, from its start, each once in a row (a step
    within a phase is one phase)."""
    (start,) = (e for e in world.store.events if e["event"] == "start")
    phases = [Phase(start["phase"]), *transitions(world)]
    return [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]


def until_due(world: World, extra: float = 1.0) -> None:
    """Time passes until the rollover's deadline (``waiting_until``), and ``extra`` beyond."""
    r = current(world)
    left = 0.0 if r.waiting_until is None else (r.waiting_until - world.clock.now()).total_seconds()
    world.elapse(max(0.0, left) + extra)


def advanced(world: World, *, crash_at: str | None = None) -> AdvanceResult:
    result = world.advance(crash_at=crash_at)
    assert result is not None, "the process was killed"
    return result


def refused(operation: Callable[[], object], kind: type[RolloverError] = RolloverError) -> str:
    """What the engine said refusing ``operation``."""
    with pytest.raises(kind) as info:
        operation()
    return str(info.value)


def presented(world: World) -> set[str]:
    return {label(chain) for _address, chain in world.presented_now()}


def deployed(world: World) -> str:
    """The key in the deployed chain file."""
    assert world.deployer.chain is not None
    for key in range(4):
        for ca in ("A", "B"):
            if world.deployer.chain == pem(*chain_of(key, ca)):
                return f"key{key}/{ca}"
    return "(unknown)"


def removals(world: World, association: Association) -> list[str]:
    """Each history event that records ``association`` removed from the RRset."""
    return [
        e["event"] for e in world.store.events if str(association) in e["detail"].get("removed", [])
    ]


def to_aging(world: World) -> None:
    """Started on key1; the first advance publishes it and starts the ageing."""
    world.start(["3 1 1"], 1)
    assert advanced(world).rollover.phase == Phase.AGING


def to_deadline(world: World) -> None:
    to_aging(world)
    until_due(world)


class LaggingObserver(FakeObserver):
    """DNS as the fake observer sees it, except: ``server`` keeps serving ``frozen`` (the RRset
    served when this observer was made), every resolver too when ``resolvers``;
    ``validating=False`` makes every resolver answer without validating (AD=0 on a signed
    zone: indeterminate)."""

    def __init__(
        self,
        world: World,
        *,
        server: str | None = None,
        resolvers: bool = False,
        validating: bool = True,
        frozen: Version | None = None,
    ) -> None:
        super().__init__(world)
        self.frozen = frozen or world.current
        self.server = server
        self.stale_resolvers = resolvers
        self.validating = validating

    def observe(self, owner: str) -> Observation:
        seen = super().observe(owner)
        old = self.frozen.records
        authoritative = tuple(
            replace(a, records=old, exists=bool(old), serial=self.frozen.index + 1)
            if a.address == self.server
            else a
            for a in seen.authoritative
        )
        resolvers = tuple(
            replace(
                r,
                records=old if self.stale_resolvers else r.records,
                state=DnssecState.SECURE if self.validating else DnssecState.INDETERMINATE,
                ad=self.validating,
            )
            for r in seen.resolvers
        )
        return replace(seen, authoritative=authoritative, resolvers=resolvers)


def honest(world: World) -> None:
    world.observer = FakeObserver(world)


# -- 1. phase by phase -------------------------------------------------------------------------
PUBLISH_AND_AGE = [Phase.PUBLISHING, Phase.PROPAGATING, Phase.AGING]
DEPLOY_TO_DONE = [
    Phase.DEPLOYING,
    Phase.CUTTING_OVER,
    Phase.RETIRING,  # the retire step...
    Phase.RETIRING,  # ...and the RRset seen retired
    Phase.VERIFYING,
    Phase.DONE,
]


@dataclass(frozen=True)
class Walk:
    records: frozenset[Association]  # the RRset at first (the tool's own among them: OWN)
    params: tuple[str, ...]  # the configured parameter sets at the start
    key: int
    ca: str
    transitional: frozenset[Association]  # the RRset while the new key ages
    final: frozenset[Association]


WALKS = {
    "key change, 3 1 1": Walk(OWN, ("3 1 1",), 1, "A", OWN | KEY1, KEY1),
    "first publication: the current key's 3 1 1 bridges": Walk(
        frozenset(), ("3 1 1",), 1, "A", OWN | KEY1, KEY1
    ),
    "3 1 2 added: published for both keys": Walk(
        OWN,
        ("3 1 1", "3 1 2"),
        1,
        "A",
        records_of(chain_of(0), "3 1 1", "3 1 2") | records_of(chain_of(1), "3 1 1", "3 1 2"),
        records_of(chain_of(1), "3 1 1", "3 1 2"),
    ),
    "DANE-EE to DANE-TA: the new CA's 2 0 1 deferred to the retire": Walk(
        OWN,
        ("2 0 1",),
        1,
        "B",
        OWN | records_of(chain_of(1, "B"), "3 1 1"),
        records_of(chain_of(1, "B"), "2 0 1"),
    ),
    "3 1 1 + 2 0 1 onto a new CA": Walk(
        OWN,
        ("3 1 1", "2 0 1"),
        2,
        "B",
        OWN | records_of(chain_of(2, "B"), "3 1 1"),
        records_of(chain_of(2, "B"), "3 1 1", "2 0 1"),
    ),
}


@pytest.mark.parametrize("name", list(WALKS))
def test_a_rollover_advance_by_advance(name: str, make: Callable[..., World]) -> None:
    """Publish and age (first advance); hold while ageing; deploy, cut over, retire and verify
    (the advance at the deadline). The servers present the old key until the deploy."""
    walk = WALKS[name]
    world = make(walk.records)
    r = world.start(walk.params, walk.key, walk.ca)
    assert r.phase == Phase.PUBLISHING
    assert world.current.records == walk.records, "the start changed DNS"
    old, new = label(chain_of(0)), label(chain_of(walk.key, walk.ca))

    mark = len(world.store.events)
    result = advanced(world)
    assert transitions(world, mark) == PUBLISH_AND_AGE
    r = current(world)
    assert (result.rollover.phase, r.phase) == (Phase.AGING, Phase.AGING)
    assert result.progressed
    assert world.current.records == walk.transitional
    assert r.waiting_until is not None
    assert r.propagated_at is not None
    assert r.waiting_until > world.clock.now()
    assert presented(world) == {old}

    world.elapse(TTL)  # not yet aged
    mark = len(world.store.events)
    result = advanced(world)
    assert phase(world) == Phase.AGING
    assert transitions(world, mark) == []
    assert not result.progressed
    assert "waiting for caches" in result.message
    assert current(world).waiting_until == r.waiting_until, "a wait moved the deadline"
    assert world.deployer.installs == 0
    assert presented(world) == {old}

    until_due(world)
    mark = len(world.store.events)
    result = advanced(world)
    assert transitions(world, mark) == DEPLOY_TO_DONE
    assert phase(world) == Phase.DONE
    assert result.message == "rollover complete"
    assert world.current.records == walk.final
    assert presented(world) == {new}
    assert world.deployer.installs == 1
    assert current(world).finished_at == world.clock.now()
    assert advanced(world).progressed is False  # done stays done
    assert_safe(world)


def test_the_current_plus_next_fast_path_starts_at_the_deploy(make: Callable[..., World]) -> None:
    """The same key under a new CA: its 3 1 1 has been published (and aged) for a month, so the
    rollover starts in deploying and one advance finishes it, the RRset untouched."""
    world = make(OWN)
    assert world.start(["3 1 1"], 0, "B").phase == Phase.DEPLOYING
    result = advanced(world)
    assert transitions(world) == [Phase.CUTTING_OVER, Phase.RETIRING, Phase.VERIFYING, Phase.DONE]
    assert result.rollover.phase == Phase.DONE
    assert len(world.versions) == 1, "the fast path changed DNS"
    assert presented(world) == {label(chain_of(0, "B"))}
    assert_safe(world)


# -- each phase held by a fault, then carried on -------------------------------------------
def publish_fails(world: World) -> str:
    world.start(["3 1 1"], 1)
    world.provider.fail_next(1, ("apply",))
    return refused(world.advance)


def dns_unobservable(world: World) -> str:
    world.start(["3 1 1"], 1)
    world.observer.fail_next(1)
    return advanced(world).message


def not_aged_yet(world: World) -> str:
    to_aging(world)
    world.elapse(TTL)
    return advanced(world).message


def install_fails(world: World) -> str:
    to_deadline(world)
    world.deployer.fail_next(1, ("install",))
    return refused(world.advance)


def probe_fails(world: World) -> str:
    to_deadline(world)
    assert world.advance(crash_at="during-cutover") is None  # deployed, then killed
    world.server.fail_next_probe(1)
    return advanced(world).message


def retire_fails(world: World) -> str:
    to_deadline(world)
    world.provider.fail_next(1, ("apply",))
    return refused(world.advance)


def verification_unobservable(world: World) -> str:
    to_deadline(world)
    assert world.advance(crash_at="after-retire") is None  # retired, then killed
    world.observer.fail_next(1)
    return advanced(world).message


FAULTS = [
    # (the phase held, how, what the advance says, whether the fault is recorded on the rollover)
    pytest.param(Phase.PUBLISHING, publish_fails, "apply failed", True, id="publishing"),
    pytest.param(
        Phase.PROPAGATING,
        dns_unobservable,
        "no authoritative server answered",
        True,
        id="propagating",
    ),
    pytest.param(Phase.AGING, not_aged_yet, "waiting for caches", False, id="aging"),
    pytest.param(Phase.DEPLOYING, install_fails, "install failed", True, id="deploying"),
    pytest.param(Phase.CUTTING_OVER, probe_fails, "connection refused", True, id="cutting_over"),
    pytest.param(Phase.RETIRING, retire_fails, "apply failed", True, id="retiring"),
    pytest.param(
        Phase.VERIFYING,
        verification_unobservable,
        "no authoritative server answered",
        True,
        id="verifying",
    ),
]


@pytest.mark.parametrize(("held", "hold", "fragment", "recorded"), FAULTS)
def test_each_phase_holds_on_a_fault_and_carries_on(
    held: Phase,
    hold: Callable[[World], str],
    fragment: str,
    recorded: bool,
    make: Callable[..., World],
) -> None:
    world = make(OWN)
    said = hold(world)
    r = current(world)
    assert r.phase == held
    assert fragment in said
    assert (r.error is not None and fragment in r.error) is recorded, r.error
    assert path(world) == ORDER[: ORDER.index(held) + 1]
    assert_safe(world)

    final = world.run()
    assert final is not None
    assert final.phase == Phase.DONE
    assert final.error is None, "the fault outlived the phase it held"
    assert path(world) == ORDER
    assert world.current.records == KEY1
    assert_safe(world)


# -- 2. the guards ---------------------------------------------------------------------------
def resolver_serves_the_old(world: World) -> str:
    world.start(["3 1 1"], 1)
    world.observer = LaggingObserver(world, resolvers=True)
    return advanced(world).message


def server_lags(world: World) -> str:
    world.start(["3 1 1"], 1)
    world.observer = LaggingObserver(world, server="ns2")
    return advanced(world).message


def server_loses_it_at_the_deadline(world: World) -> str:
    to_deadline(world)
    # ns2 serves the RRset from before again, without the new key
    world.observer = LaggingObserver(world, server="ns2", frozen=world.versions[0])
    return advanced(world).message


def deleted_while_ageing(world: World) -> str:
    to_aging(world)
    first = current(world).waiting_until
    world.elapse(TTL)
    world.delete(KEY1)  # out of band
    until_due(world)
    said = advanced(world).message
    again = current(world).waiting_until
    assert first is not None
    assert again is not None
    assert again >= world.clock.now() + timedelta(seconds=2 * TTL) - timedelta(seconds=1)
    assert world.current.records >= KEY1, "not published again"
    return said


def blinked_while_ageing(world: World) -> str:
    to_aging(world)
    world.elapse(TTL)
    world.blink(KEY1)  # deleted and put back between two reads of the tool
    until_due(world)
    said = advanced(world).message
    r = current(world)
    assert r.waiting_until is not None
    assert r.waiting_until > world.clock.now(), "the ageing did not start again"
    return said


def wall_clock_stepped(world: World) -> str:
    to_aging(world)
    world.elapse(10)
    world.step_wall(3 * TTL)  # NTP: no time passed for the caches
    return advanced(world).message


def resolver_does_not_validate(world: World) -> str:
    to_deadline(world)
    world.observer = LaggingObserver(world, validating=False)
    return advanced(world).message


def address_ignores_the_reload(world: World) -> str:
    to_deadline(world)
    world.server.lag(LAGGARD)
    return advanced(world).message


def address_ignores_the_reload_shared_issuer(world: World) -> str:
    """3 1 1 + 2 0 1 onto a key of the same CA: the new set's 2 0 1 matches the old chain
    too, so only the staged leaf itself on every address is a cut-over."""
    world.start(["3 1 1", "2 0 1"], 1)
    assert records_of(chain_of(0), "2 0 1") <= current(world).new
    advanced(world)
    until_due(world)
    world.server.lag(LAGGARD)
    return advanced(world).message


def address_back_on_the_old_key(world: World) -> str:
    """Cut over, the retire's change failed; then an address presents the old key again."""
    to_deadline(world)
    world.provider.fail_next(1, ("apply",))
    refused(world.advance)
    world.present(LAGGARD, chain_of(0), caused=world.stamp())
    receipts = len(world.provider.receipts)
    steps = len(world.store.history(SERVICE))
    result = advanced(world)
    assert len(world.provider.receipts) == receipts, "the retire changed the RRset"
    assert world.current.records >= OWN, "the old key's last association was retired"
    # A wait, not a loop: no burst of empty retiring -> retiring steps in the history.
    added = world.store.history(SERVICE)[steps:]
    assert [h["event"] for h in added if h["event"] == "transition"] == []
    assert not result.progressed
    return result.message


def new_deleted_after_the_deploy(world: World) -> str:
    to_deadline(world)
    world.server.lag(LAGGARD)
    advanced(world)
    world.delete(KEY1)  # out of band, while one address still presents key0
    world.server.catch_up(LAGGARD)
    result = advanced(world)
    assert result.fault is not None, "a republish is a fault, said at once"
    assert world.current.records == OWN | KEY1, "not republished, or the old retired"
    return result.message


def verification_sees_a_lagging_server(world: World) -> str:
    to_aging(world)
    world.observer = LaggingObserver(world, server="ns2")  # keeps serving {key0, key1}
    until_due(world)
    return advanced(world).message


def restore_address(world: World) -> None:
    world.present(LAGGARD, chain_of(1), caused=world.stamp())


def catch_up(world: World) -> None:
    world.server.catch_up(LAGGARD)


@dataclass(frozen=True)
class Guard:
    situation: Callable[[World], str]  # drives the world there, returns what the advance said
    held: Phase  # the phase the rollover is held in
    says: str  # a fragment of what the advance said
    deployed: bool  # whether the new key was installed by then
    release: Callable[[World], None] | None = None  # what lets it go on (None: time alone)
    records: frozenset[Association] = OWN  # the RRset at first


GUARDS = {
    "a resolver still serves the old RRset": Guard(
        resolver_serves_the_old, Phase.PROPAGATING, "still serves the old RRset", False, honest
    ),
    "an authoritative server lags": Guard(
        server_lags, Phase.PROPAGATING, "waiting for ns2", False, honest
    ),
    "a server serves the RRset without the new key at the deadline": Guard(
        server_loses_it_at_the_deadline, Phase.PROPAGATING, "waiting for ns2", False, honest
    ),
    "the new record deleted while ageing: republished, aged again": Guard(
        deleted_while_ageing, Phase.AGING, "waiting for caches", False
    ),
    "the new record deleted and put back while ageing: aged again": Guard(
        blinked_while_ageing, Phase.AGING, "waiting for caches", False
    ),
    "the wall clock stepped past the deadline": Guard(
        wall_clock_stepped, Phase.AGING, "the wall clock was stepped forward", False
    ),
    "a resolver does not validate at the deploy": Guard(
        resolver_does_not_validate, Phase.DEPLOYING, "holding the deploy", False, honest
    ),
    "an address ignores the reload": Guard(
        address_ignores_the_reload, Phase.CUTTING_OVER, f"{LAGGARD}:25 presents", True, catch_up
    ),
    "an address ignores the reload, the new 2 0 1 matching the old chain too": Guard(
        address_ignores_the_reload_shared_issuer,
        Phase.CUTTING_OVER,
        f"{LAGGARD}:25 presents",
        True,
        catch_up,
        records=frozenset(),
    ),
    "an address presents the old key while retiring: its record stays": Guard(
        address_back_on_the_old_key,
        Phase.RETIRING,
        "the old associations still match a key",
        True,
        restore_address,
    ),
    "the new record deleted after the deploy: republished before any retire": Guard(
        new_deleted_after_the_deploy, Phase.RETIRING, "republishing them, the old ones stay", True
    ),
    "a server still serves the old associations at the verification": Guard(
        verification_sees_a_lagging_server, Phase.VERIFYING, "waiting for ns2", True, honest
    ),
}


@pytest.mark.parametrize("name", list(GUARDS))
def test_a_guard_holds_the_rollover(name: str, make: Callable[..., World]) -> None:
    guard = GUARDS[name]
    world = make(guard.records)
    said = guard.situation(world)
    assert phase(world) == guard.held, world.describe()
    assert guard.says in said
    assert (world.deployer.installs > 0) is guard.deployed
    if not guard.deployed:
        assert presented(world) == {label(chain_of(0))}
    assert_safe(world)

    if guard.release is not None:
        guard.release(world)
    final = world.run()
    assert final is not None
    assert final.phase == Phase.DONE, world.describe()
    assert world.current.records >= KEY1
    assert not world.current.records & OWN, "the old key's record was not retired"
    assert presented(world) == {label(chain_of(1))}
    assert world.deployer.installs == 1
    assert_safe(world)


AGEING = [
    # (the starting RRset, its TTL, the negative TTL, safety factor, the wait: the factor
    #  (at least 1) x the longest TTL a cache may hold, before or after the publication)
    pytest.param(OWN, TTL, 300, 2.0, 2 * TTL, id="2 x the TTL"),
    pytest.param(OWN, TTL, 300, 1.0, TTL, id="1 x the TTL"),
    pytest.param(OWN, TTL, 300, 0.5, TTL, id="a factor below 1 counts as 1"),
    pytest.param(OWN, TTL, 300, 3.0, 3 * TTL, id="3 x the TTL"),
    pytest.param(OWN, 3 * TTL, 300, 2.0, 6 * TTL, id="the longer TTL of the RRset before"),
    pytest.param(frozenset(), TTL, 3600, 2.0, 7200, id="no RRset: its negative TTL"),
    pytest.param(frozenset(), TTL, 60, 2.0, 2 * TTL, id="no RRset: the new TTL is longer"),
]


@pytest.mark.parametrize(("records", "rrset_ttl", "negative_ttl", "factor", "wait"), AGEING)
def test_the_deploy_waits_for_the_ageing(
    records: frozenset[Association],
    rrset_ttl: int,
    negative_ttl: int,
    factor: float,
    wait: float,
    make: Callable[..., World],
) -> None:
    world = make(records, rrset_ttl=rrset_ttl, negative_ttl=negative_ttl, safety_factor=factor)
    to_aging(world)
    r = current(world)
    assert r.propagated_at is not None
    assert r.waiting_until is not None
    assert r.waiting_until - r.propagated_at == timedelta(seconds=wait)

    world.elapse((r.waiting_until - world.clock.now()).total_seconds() - 1)
    assert advanced(world).rollover.phase == Phase.AGING
    assert world.deployer.installs == 0

    world.elapse(1)  # the deadline, to the microsecond
    assert advanced(world).rollover.phase == Phase.DONE
    assert world.deployer.installs == 1
    # Every RRset a cache may still hold pins the new key.
    assert all(r.new <= v.records for v in world.held_now()), world.describe()
    assert_safe(world)


FOREIGN = [
    # (a record the tool did not publish, beside its own 3 1 1 of key0; kept?)
    pytest.param(frozenset({UNUSABLE}), True, id="an unusable record"),
    pytest.param(records_of(chain_of(3), "3 1 1"), True, id="a backup pin of another key"),
    pytest.param(
        records_of(chain_of(0), "2 0 1"), True, id="the 2 0 1 of the issuer the new key shares"
    ),
    pytest.param(
        records_of(chain_of(0), "3 1 2"), False, id="a 3 1 2 of the retired key (RFC 7671 8)"
    ),
]


@pytest.mark.parametrize(("foreign", "kept"), FOREIGN)
def test_a_foreign_record_is_kept_unless_it_pinned_the_retired_key(
    foreign: frozenset[Association], kept: bool, make: Callable[..., World]
) -> None:
    world = make(OWN | foreign, owned=OWN)
    world.start(["3 1 1"], 1)
    final = world.run()
    assert final is not None
    assert final.phase == Phase.DONE
    (record,) = foreign
    removed_by = [rc for rc in world.provider.receipts if record in rc.change.removed]
    if kept:
        assert all(record in v.records for v in world.versions), "it was absent for a while"
        assert removed_by == []
        assert world.foreign_removals() == []
    else:
        assert record not in world.current.records
        assert len(removed_by) == 1
        assert [a for _at, a in world.foreign_removals()] == [record]
        assert label(chain_of(0)) not in presented(world)
    assert world.current.records >= KEY1
    assert_safe(world)  # includes: no foreign record removed while a key it pins is presented


def test_the_tools_record_of_the_retired_key_goes_and_one_of_the_kept_key_stays(
    make: Callable[..., World],
) -> None:
    """Its own 3 1 1 of key0 retired once, at the retire step, after the cut-over."""
    world = make(OWN)
    world.start(["3 1 1"], 1)
    world.run()
    (old,) = OWN
    assert removals(world, old) == ["provider-change"]
    retired = [v for v in world.versions if v.origin == "tool" and old not in v.records]
    assert retired
    assert retired[0].phase == Phase.RETIRING.value
    assert all(label(chain) == label(chain_of(1)) for chain in retired[0].presented)
    assert world.ownership.owned(OWNER) == KEY1
    assert_safe(world)


def started_twice(world: World) -> None:
    world.start(["3 1 1"], 1)


def insecure(world: World) -> None:
    world.observer = LaggingObserver(world, validating=False)


def probe_down(world: World) -> None:
    world.server.fail_next_probe(1)


REFUSED_STARTS = [
    # (the starting RRset, what the world does first, what the refusal says)
    pytest.param(
        records_of(chain_of(3), "3 1 1"),
        None,
        "senders fail today",
        id="the published RRset already fails the presented chain",
    ),
    pytest.param(OWN, insecure, "not DNSSEC-secure", id="the zone is not validated"),
    pytest.param(OWN, probe_down, "cannot probe the server", id="the server cannot be probed"),
    pytest.param(OWN, started_twice, "already has a rollover", id="a rollover in progress"),
]


@pytest.mark.parametrize(("records", "before", "fragment"), REFUSED_STARTS)
def test_a_start_that_cannot_keep_senders_changes_nothing(
    records: frozenset[Association],
    before: Callable[[World], None] | None,
    fragment: str,
    make: Callable[..., World],
) -> None:
    world = make(records, owned=frozenset())
    if before is not None:
        before(world)
    rollover_before = world.rollover()
    assert fragment in refused(lambda: world.start(["3 1 1"], 2), RolloverError)
    assert len(world.versions) == 1, "a refused start changed DNS"
    assert world.rollover() == rollover_before, "a refused start changed the state"
    assert world.deployer.installs == 0
    assert_safe(world, before_the_tool=True)


# -- 3. leases -------------------------------------------------------------------------------
def live_holder(_world: World) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:alive"  # this very process: alive


def dead_holder(world: World) -> str:
    return world.engine().holder  # a process id no process has, on this host


def remote_holder(_world: World) -> str:
    return f"{OTHER_HOST}:4242:remote"  # cannot be checked from here: only its expiry counts


def lease_term(world: World) -> float:
    """How long the engine's lease runs (LEASE_SECONDS, or longer than its longest call)."""
    return float(getattr(world.engine(), "lease_term", LEASE_SECONDS))


AT_ONCE, JUST_BEFORE, JUST_AFTER = (0, 0.0), (1, -1.0), (1, 1.0)  # (lease terms, seconds)

LEASES = [
    # (who holds the lease, time passed since it was taken, whether an advance acts, whether
    #  it broke the lease)
    pytest.param(live_holder, AT_ONCE, False, False, id="a live process on this host"),
    pytest.param(live_holder, JUST_BEFORE, False, False, id="a live process, not expired"),
    pytest.param(live_holder, JUST_AFTER, True, False, id="a live process, expired"),
    pytest.param(dead_holder, AT_ONCE, True, True, id="a dead process on this host: broken"),
    pytest.param(remote_holder, AT_ONCE, False, False, id="another host"),
    pytest.param(remote_holder, JUST_BEFORE, False, False, id="another host, not expired"),
    pytest.param(remote_holder, JUST_AFTER, True, False, id="another host, expired"),
]


@pytest.mark.parametrize(("holder", "elapsed", "acts", "breaks"), LEASES)
def test_a_lease_keeps_a_second_process_out(
    holder: Callable[[World], str],
    elapsed: tuple[int, float],
    acts: bool,
    breaks: bool,
    make: Callable[..., World],
) -> None:
    world = make(OWN)
    world.start(["3 1 1"], 1)
    first = world.engine()
    first.holder = holder(world)
    assert first.acquire_lease(current(world))
    terms, seconds = elapsed
    world.elapse(terms * lease_term(world) + seconds)

    result = advanced(world)
    assert result.acted is acts
    broken = [e["detail"]["holder"] for e in world.store.events if e["event"] == "lease-broken"]
    assert broken == ([first.holder] if breaks else [])
    if acts:
        assert phase(world) == Phase.AGING
        assert world.current.records == OWN | KEY1
    else:
        assert "another process" in result.message
        assert not result.progressed
        assert phase(world) == Phase.PUBLISHING
        assert len(world.versions) == 1, "an advance without the lease changed DNS"
    assert_safe(world)


def test_the_lease_outlasts_the_longest_wait(make: Callable[..., World]) -> None:
    """At least LEASE_SECONDS, and never shorter than one provider wait under it."""
    world = make(OWN)
    assert lease_term(world) >= LEASE_SECONDS
    assert lease_term(world) > world.engine().wait_timeout


@pytest.mark.parametrize("operation", ["abort", "rollback", "resume"])
def test_an_operator_waits_for_the_lease_too(operation: str, make: Callable[..., World]) -> None:
    world = make(OWN)
    to_aging(world)
    first = world.engine()
    first.holder = live_holder(world)
    assert first.acquire_lease(current(world))
    before = current(world)
    said = refused(getattr(world, operation), ConflictError)
    assert "another process" in said
    assert world.rollover() == before
    assert world.current.records == OWN | KEY1
    assert_safe(world)


def test_an_advance_releases_its_lease(make: Callable[..., World]) -> None:
    """Processes that take turns never wait for each other's lease to expire."""
    world = make(OWN)
    world.start(["3 1 1"], 1)
    first, second = world.engine(), world.engine()
    first.holder, second.holder = live_holder(world) + "-1", live_holder(world) + "-2"
    assert first.advance().acted
    assert second.advance().acted
    assert second.acquire_lease(current(world))
    assert not first.acquire_lease(current(world))  # the second holds it now


def test_an_ageing_wait_costs_no_lease_no_write_and_no_look(
    make: Callable[..., World],
) -> None:
    """A fleet's tick passes a service whose ageing deadline is ahead at the price of one read
    of its state: no lease taken, nothing written, neither provider nor DNS asked. At the
    deadline the full advance runs again and deploys."""
    world = make(OWN)
    world.start(["3 1 1"], 1)
    advanced(world)
    waiting = current(world)
    assert waiting.phase == Phase.AGING
    assert waiting.waiting_until is not None
    writes: dict[str, int] = {}
    for name in ("create", "save", "acquire", "release", "break_lease", "append"):
        original = getattr(world.store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            writes[_name] = writes.get(_name, 0) + 1
            return _original(*args)

        setattr(world.store, name, counted)
    changes = world.ownership._db.total_changes
    asked = sum(world.provider.calls.values())
    observed = world.observer.observations
    result = advanced(world)
    assert not result.progressed
    assert result.acted
    assert writes == {}
    assert world.ownership._db.total_changes == changes
    assert sum(world.provider.calls.values()) == asked
    assert world.observer.observations == observed
    assert current(world) == waiting
    world.elapse((waiting.waiting_until - world.clock.now()).total_seconds() + 0.1)
    advanced(world)
    assert writes.get("acquire", 0) >= 1
    assert writes.get("save", 0) >= 1
    assert phase(world) not in (Phase.AGING, Phase.DEPLOYING)
    assert_safe(world)


# -- 4. abort, rollback, resume ----------------------------------------------------------------
def in_publishing(world: World) -> None:
    world.start(["3 1 1"], 1)


def deploy_failed(world: World) -> None:
    install_fails(world)


def deploy_held(world: World) -> None:
    resolver_does_not_validate(world)


def killed_after(point: str) -> Callable[[World], None]:
    def run(world: World) -> None:
        to_deadline(world)
        assert world.advance(crash_at=point) is None

    run.__name__ = f"killed_after_{point}"
    return run


def cutting_over(world: World) -> None:
    address_ignores_the_reload(world)


def failed(world: World) -> None:
    """The cut-over timed out: an address never followed the reload."""
    cutting_over(world)
    world.elapse(CUTOVER_TIMEOUT.total_seconds() + 1)
    advanced(world)
    assert phase(world) == Phase.FAILED


def retiring(world: World) -> None:
    retire_fails(world)


def done(world: World) -> None:
    world.start(["3 1 1"], 1)
    world.run()
    assert phase(world) == Phase.DONE


ABORTS = [
    # (where the rollover is, whether abort is allowed, what a refusal says)
    pytest.param(in_publishing, True, "", id="publishing: nothing published yet"),
    pytest.param(to_aging, True, "", id="aging: the new record withdrawn"),
    pytest.param(deploy_failed, True, "", id="deploying, the install failed"),
    pytest.param(deploy_held, True, "", id="deploying, held by a resolver"),
    pytest.param(
        killed_after("after-install"),
        False,
        "may already be deployed",
        id="killed after the install: the files hold the new key",
    ),
    pytest.param(
        killed_after("after-reload"),
        False,
        "may already be deployed",
        id="killed after the reload: presented, not recorded",
    ),
    pytest.param(cutting_over, False, "use rollover rollback", id="cutting over"),
    pytest.param(retiring, False, "use rollover rollback", id="retiring"),
    pytest.param(failed, False, "use rollover rollback", id="failed in the cut-over"),
    pytest.param(done, False, "no rollover in progress", id="done"),
]


@pytest.mark.parametrize(("situation", "allowed", "fragment"), ABORTS)
def test_abort(
    situation: Callable[[World], None], allowed: bool, fragment: str, make: Callable[..., World]
) -> None:
    world = make(OWN)
    situation(world)
    before, records = world.rollover(), world.current.records
    if allowed:
        r = world.abort()
        assert r.phase == Phase.ABORTED
        assert phase(world) == Phase.ABORTED
        assert world.current.records == OWN, "the new record was not withdrawn"
        assert world.ownership.owned(OWNER) == OWN
        assert world.deployer.installs == 0
        assert deployed(world) == "key0/A"
        assert advanced(world).progressed is False  # aborted stays aborted
    else:
        assert fragment in refused(world.abort, PreconditionError)
        assert world.rollover() == before
        assert world.current.records == records
    assert_safe(world)


ROLLBACKS = [
    # (where the rollover is, whether rollback is allowed, what a refusal says)
    pytest.param(to_aging, False, "nothing is deployed yet", id="aging"),
    pytest.param(killed_after("after-reload"), True, "", id="killed after the reload (deploying)"),
    pytest.param(
        killed_after("during-cutover"), True, "", id="cutting over, every address on the new key"
    ),
    pytest.param(cutting_over, True, "", id="cutting over, an address on the old key"),
    pytest.param(failed, True, "", id="failed in the cut-over"),
    pytest.param(retiring, False, "too late to roll back", id="retiring"),
    pytest.param(done, False, "no rollover in progress", id="done"),
]


@pytest.mark.parametrize(("situation", "allowed", "fragment"), ROLLBACKS)
def test_rollback(
    situation: Callable[[World], None], allowed: bool, fragment: str, make: Callable[..., World]
) -> None:
    world = make(OWN)
    situation(world)
    before, records = world.rollover(), world.current.records
    if allowed:
        assert label(chain_of(1)) in presented(world) or deployed(world) == "key1/A"
        r = world.rollback()
        assert (r.phase, r.rolled_back) == (Phase.ABORTED, True)
        assert presented(world) == {label(chain_of(0))}, "the old chain is not back"
        assert deployed(world) == "key0/A"
        assert world.current.records == OWN, "the old record must stay, the new one go"
        assert world.ownership.owned(OWNER) == OWN
        world.server.catch_up(LAGGARD)  # a lagging address loads what is installed now
        assert presented(world) == {label(chain_of(0))}
    else:
        assert fragment in refused(world.rollback, PreconditionError)
        assert world.rollover() == before
        assert world.current.records == records
    assert_safe(world)


def test_resume_after_the_cause_is_fixed(make: Callable[..., World]) -> None:
    world = make(OWN)
    failed(world)
    r = current(world)
    assert r.failed_in == Phase.CUTTING_OVER.value
    assert r.error is not None
    assert LAGGARD in r.error
    assert world.current.records == OWN | KEY1, "both stay published when it fails"

    world.server.catch_up(LAGGARD)  # a person fixed the server
    resumed = world.resume()
    assert resumed.phase == Phase.CUTTING_OVER
    assert (resumed.error, resumed.failed_in, resumed.finished_at) == (None, None, None)
    assert [e["event"] for e in world.store.events].count("resumed") == 1
    assert advanced(world).rollover.phase == Phase.DONE
    assert world.current.records == KEY1
    assert_safe(world)


def test_a_resumed_cutover_gets_the_whole_timeout_again(make: Callable[..., World]) -> None:
    """Resumed without a fix: the cut-over timeout counts from the resume, then fails again,
    both keys' associations still published."""
    world = make(OWN)
    failed(world)
    resumed = world.resume()
    assert resumed.deployed_at == world.clock.now()
    world.elapse(CUTOVER_TIMEOUT.total_seconds() - 1)
    assert advanced(world).rollover.phase == Phase.CUTTING_OVER
    world.elapse(2)
    assert advanced(world).rollover.phase == Phase.FAILED
    assert world.current.records == OWN | KEY1
    assert_safe(world)


RESUMES = [
    pytest.param(in_publishing, "not failed", id="publishing"),
    pytest.param(cutting_over, "not failed", id="cutting over"),
    pytest.param(done, "no rollover in progress", id="done"),
]


@pytest.mark.parametrize(("situation", "fragment"), RESUMES)
def test_only_a_failed_rollover_resumes(
    situation: Callable[[World], None], fragment: str, make: Callable[..., World]
) -> None:
    world = make(OWN)
    situation(world)
    before = world.rollover()
    assert fragment in refused(world.resume, PreconditionError)
    assert world.rollover() == before
    assert_safe(world)


# -- 5. a process killed at every checkpoint ---------------------------------------------------
CRASHES = {
    # checkpoint -> the phase the record is left in
    "after-publish": Phase.PUBLISHING,
    "after-install": Phase.DEPLOYING,
    "after-reload": Phase.DEPLOYING,
    "during-cutover": Phase.CUTTING_OVER,
    "after-retire": Phase.RETIRING,
}


def test_the_crash_table_names_every_checkpoint(make: Callable[..., World]) -> None:
    """Every checkpoint the engine's source names is in :data:`CRASHES`, and a rollover that
    nothing holds reaches each of them exactly once."""
    engine_dir = Path(rollover.engine.machine.__file__).parent
    source = "".join(path.read_text() for path in sorted(engine_dir.glob("*.py")))
    named = set(re.findall(r'checkpoint\("([a-z-]+)"\)', source))
    named |= set(re.findall(r'_apply\([^()]*, "([a-z-]+)"\)', source))
    assert named == set(CRASHES)
    world = make(OWN)
    world.start(["3 1 1"], 1)
    world.run()
    assert dict(world.reached) == dict.fromkeys(CRASHES, 1)


@pytest.mark.parametrize("host", [None, OTHER_HOST], ids=["this host", "another host"])
@pytest.mark.parametrize("point", list(CRASHES))
def test_a_fresh_process_resumes_from_every_checkpoint(
    point: str, host: str | None, make: Callable[..., World]
) -> None:
    world = make(OWN)
    world.start(["3 1 1"], 1)
    world.arm_crash(point, host)
    for _ in range(3):
        if world.advance() is None:
            break
        until_due(world)
    assert world.killed[point] == 1, f"never killed at {point}"
    assert phase(world) == CRASHES[point]

    if host is not None:  # the dead process's lease, on a host this one cannot look at
        result = advanced(world)
        assert not result.acted
        world.elapse(lease_term(world) + 1)
    final = world.run()
    assert final is not None
    assert final.phase == Phase.DONE, world.describe()
    assert world.current.records == KEY1
    assert presented(world) == {label(chain_of(1))}

    (old,) = OWN
    added = [rc for rc in world.provider.receipts if rc.change.added >= KEY1]
    retired = [rc for rc in world.provider.receipts if old in rc.change.removed]
    assert len(added) == 1, "published twice"
    assert len(retired) == 1, "retired twice"
    assert len(removals(world, old)) == 1, "the removal is not on record exactly once"
    (new,) = KEY1
    recorded_adds = [e for e in world.store.events if str(new) in e["detail"].get("added", [])]
    assert len(recorded_adds) == 1, "the publication is not on record exactly once"
    assert world.deployer.installs == 1
    assert world.ownership.owned(OWNER) == KEY1
    broken = sum(e["event"] == "lease-broken" for e in world.store.events)
    assert broken == (0 if host else 1)
    assert_safe(world)


def test_a_process_killed_right_after_a_save_leaves_its_step_on_record(
    make: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save and the history entry that explains it are one write: each process here dies
    the moment its first save has committed, and still the history names every phase the
    rollover entered (a transition stored without its entry would be a step nobody can
    account for, and the lab's every-step-once count would miss it)."""
    world = make(OWN)
    world.start(["3 1 1"], 1)
    save = world.store.save

    def save_and_die(rollover: Rollover, events: Any = ()) -> Rollover:
        save(rollover, events)
        assert world.process is not None
        world.process.dead = True
        raise ProcessKilled("right after a save")

    entered = [phase(world)]
    for _ in range(60):
        if phase(world) == Phase.DONE:
            break
        monkeypatch.setattr(world.store, "save", save_and_die)
        world.advance()  # killed, unless it had nothing to save
        monkeypatch.setattr(world.store, "save", save)
        if phase(world) != entered[-1]:
            entered.append(phase(world))
        until_due(world)
    assert entered == ORDER, world.describe()
    assert path(world) == ORDER
    assert_safe(world)


@pytest.mark.parametrize(
    ("left", "allowed", "refused"),
    [
        (timedelta(days=10), False, False),  # a signer that re-signs: days of validity left
        (timedelta(minutes=30), False, True),  # less than the rollover's planned length
        (timedelta(minutes=30), True, False),  # --allow-expiring-signatures
        (timedelta(seconds=-60), False, True),  # already expired
    ],
)
def test_start_refuses_a_rollover_that_outlasts_the_signatures(
    make: Callable[..., World], left: timedelta, allowed: bool, refused: bool
) -> None:
    world = make(OWN)
    world.signatures_expire = world.clock.now() + left
    engine = world.engine()
    if refused:
        with pytest.raises(PreconditionError, match="not being re-signed in time"):
            engine.start(world.stage(1), allow_expiring=allowed)
        assert world.store.current("mx1") is None  # nothing written
        assert len(world.versions) == 1  # nothing published
    else:
        rollover = engine.start(world.stage(1), allow_expiring=allowed)
        assert rollover.phase == Phase.PUBLISHING


def test_planned_length_and_the_signature_rule() -> None:
    from rollover.core.phases import planned_seconds, signatures_run_out

    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert planned_seconds(300, 300, 2.0) == 2 * 600 + 3600
    assert signatures_run_out([], now, 4800) is None  # nothing signed to tell
    assert signatures_run_out([now + timedelta(hours=2)], now, 4800) is None
    why = signatures_run_out([now + timedelta(hours=9), now + timedelta(minutes=30)], now, 4800)
    assert why is not None
    assert "0.5 h left" in why
    assert "2026-12-01T00:30:00Z" in why
