"""The transition table, for every phase and every guard outcome, including "nothing yet"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rollover.core.association import parse_association
from rollover.core.phases import (
    Action,
    Facts,
    Phase,
    Rollover,
    apply_decision,
    decide,
    wait_seconds,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OLD = parse_association("3 1 1 " + "01" * 32)
NEW = parse_association("3 1 1 " + "02" * 32)
TA = parse_association("2 0 1 " + "03" * 32)  # same issuer: in old and new


def rollover(phase: Phase, **kw: object) -> Rollover:
    base = Rollover(
        service="mx1",
        owner="_25._tcp.mx1.",
        phase=phase,
        old=frozenset({OLD, TA}),
        new=frozenset({NEW, TA}),
        staged_chain="c",
        staged_key="k",
        staged_spki="s",
        started_at=NOW,
        since=NOW,
        horizon_before=300,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


BOTH = frozenset({OLD, NEW, TA})
OLD_ONLY = frozenset({OLD, TA})
NEW_ONLY = frozenset({NEW, TA})
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("r", "facts", "phase", "action"),
    [
        # publishing
        (
            rollover(Phase.PUBLISHING),
            Facts(provider_records=OLD_ONLY),
            Phase.PUBLISHING,
            Action.PUBLISH,
        ),
        (rollover(Phase.PUBLISHING), Facts(provider_records=BOTH), Phase.PROPAGATING, Action.NONE),
        # propagating: nothing yet / servers lag / resolvers lag / done / vanished
        (
            rollover(Phase.PROPAGATING),
            Facts(provider_records=BOTH, authoritative_ok=False, resolvers_ok=False),
            Phase.PROPAGATING,
            Action.NONE,
        ),
        (
            rollover(Phase.PROPAGATING),
            Facts(provider_records=BOTH, authoritative_ok=True, resolvers_ok=False),
            Phase.PROPAGATING,
            Action.NONE,
        ),
        (
            rollover(Phase.PROPAGATING),
            Facts(provider_records=BOTH, authoritative_ok=True, resolvers_ok=True, horizon=300),
            Phase.AGING,
            Action.NONE,
        ),
        (
            rollover(Phase.PROPAGATING),
            Facts(provider_records=OLD_ONLY, authoritative_ok=True, resolvers_ok=True),
            Phase.PUBLISHING,
            Action.NONE,
        ),
        # aging: not yet / now
        (rollover(Phase.AGING, waiting_until=NOW + S), Facts(), Phase.AGING, Action.NONE),
        (rollover(Phase.AGING, waiting_until=NOW), Facts(), Phase.DEPLOYING, Action.NONE),
        # deploying: invariant re-checked
        (
            rollover(Phase.DEPLOYING),
            Facts(provider_records=BOTH, authoritative_ok=True),
            Phase.CUTTING_OVER,
            Action.DEPLOY,
        ),
        (
            rollover(Phase.DEPLOYING),
            Facts(provider_records=OLD_ONLY, authoritative_ok=True),
            Phase.PUBLISHING,
            Action.NONE,
        ),
        (
            rollover(Phase.DEPLOYING),
            Facts(provider_records=BOTH, authoritative_ok=False),
            Phase.PROPAGATING,
            Action.NONE,
        ),
        (  # a validating resolver finds the RRset bogus: hold, the clock keeps its value
            rollover(Phase.DEPLOYING),
            Facts(provider_records=BOTH, authoritative_ok=True, resolvers_ok=False),
            Phase.DEPLOYING,
            Action.NONE,
        ),
        # cutting over: not yet / yes / too late
        (
            rollover(Phase.CUTTING_OVER, deployed_at=NOW),
            Facts(live_new=False),
            Phase.CUTTING_OVER,
            Action.NONE,
        ),
        (
            rollover(Phase.CUTTING_OVER, deployed_at=NOW),
            Facts(live_new=True),
            Phase.RETIRING,
            Action.NONE,
        ),
        (
            rollover(Phase.CUTTING_OVER, deployed_at=NOW - timedelta(minutes=6)),
            Facts(live_new=False, live_error="timed out"),
            Phase.FAILED,
            Action.NONE,
        ),
        # retiring: old left / gone (the shared 2 0 1 is never retired)
        (rollover(Phase.RETIRING), Facts(provider_records=BOTH), Phase.RETIRING, Action.RETIRE),
        (rollover(Phase.RETIRING), Facts(provider_records=NEW_ONLY), Phase.VERIFYING, Action.NONE),
        # verifying
        (
            rollover(Phase.VERIFYING),
            Facts(authoritative_ok=False, resolvers_ok=True),
            Phase.VERIFYING,
            Action.NONE,
        ),
        (
            rollover(Phase.VERIFYING),
            Facts(authoritative_ok=True, resolvers_ok=True),
            Phase.DONE,
            Action.NONE,
        ),
        # final phases stay
        (rollover(Phase.DONE), Facts(), Phase.DONE, Action.NONE),
        (rollover(Phase.ABORTED), Facts(), Phase.ABORTED, Action.NONE),
        (rollover(Phase.FAILED), Facts(), Phase.FAILED, Action.NONE),
    ],
)
def test_transition_table(r: Rollover, facts: Facts, phase: Phase, action: Action) -> None:
    decision = decide(r, facts, NOW)
    assert (decision.phase, decision.action) == (phase, action), decision.message


def test_ageing_deadline_uses_the_largest_horizon_and_factor() -> None:
    r = rollover(Phase.PROPAGATING, horizon_before=300, safety_factor=2.0)
    decision = decide(
        r, Facts(provider_records=BOTH, authoritative_ok=True, resolvers_ok=True, horizon=60), NOW
    )
    assert decision.waiting_until == NOW + timedelta(seconds=600)
    after = apply_decision(r, decision, NOW)
    assert after.propagated_at == NOW
    assert after.waiting_until == NOW + timedelta(seconds=600)
    # A later "still waiting" decision keeps the deadline.
    again = decide(after, Facts(), NOW + timedelta(seconds=10))
    assert apply_decision(
        after, again, NOW + timedelta(seconds=10)
    ).waiting_until == NOW + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("before", "after", "factor", "seconds"),
    [
        (300, 60, 2.0, 600.0),
        (60, 3600, 2.0, 7200.0),
        (300, 300, 0.5, 300.0),
        (0, 0, 2.0, 0.0),
        (5, 5, 1.0, 5.0),
    ],
)
def test_wait_seconds_never_below_one_ttl(
    before: int, after: int, factor: float, seconds: float
) -> None:
    assert wait_seconds(before, after, factor) == seconds


def test_leaving_a_phase_resets_since_and_error() -> None:
    r = rollover(Phase.CUTTING_OVER, deployed_at=NOW, error="probe timed out")
    decision = decide(r, Facts(live_new=True), NOW + S)
    after = apply_decision(r, decision, NOW + S)
    assert after.phase == Phase.RETIRING
    assert after.since == NOW + S
    assert after.error is None
    assert after.cut_over_at == NOW + S
