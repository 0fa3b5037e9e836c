from __future__ import annotations

import pytest

from rollover.core.association import parse_association
from rollover.core.plan import TlsaRRset, describe, plan_publish, plan_withdraw
from rollover.errors import PreconditionError

OWNER = "_25._tcp.mx1.example.test."
OLD = parse_association("3 1 1 " + "01" * 32)
NEW = parse_association("3 1 1 " + "02" * 32)
TA = parse_association("2 0 1 " + "03" * 32)
FOREIGN = parse_association("3 1 1 " + "04" * 32)


def rr(*records, ttl=300):  # type: ignore[no-untyped-def]
    return TlsaRRset(OWNER, ttl if records else None, frozenset(records))


@pytest.mark.parametrize(
    ("current", "adding", "ttl", "after", "noop"),
    [
        (rr(), {NEW}, 300, rr(NEW), False),
        (rr(OLD), {NEW}, 300, rr(OLD, NEW), False),
        (rr(OLD, NEW), {NEW}, 300, rr(OLD, NEW), True),  # idempotent
        (rr(OLD), {OLD}, 60, rr(OLD), True),  # nothing to add: TTL left alone
        (rr(OLD), {NEW, TA}, 60, rr(OLD, NEW, TA, ttl=60), False),  # the RRset shares one TTL
    ],
)
def test_plan_publish(current, adding, ttl, after, noop) -> None:  # type: ignore[no-untyped-def]
    change = plan_publish(current, adding, ttl)
    assert change.before == current
    assert change.after == after
    assert change.is_noop is noop


@pytest.mark.parametrize(
    ("current", "removing", "owned", "force", "after"),
    [
        (rr(OLD, NEW), {OLD}, {OLD, NEW}, False, rr(NEW)),
        (rr(OLD, NEW, FOREIGN), {OLD}, {OLD, NEW}, False, rr(NEW, FOREIGN)),  # foreign kept
        (rr(OLD, FOREIGN), {FOREIGN}, {OLD}, False, rr(OLD)),  # named: removed
        (rr(OLD), {NEW}, {OLD}, False, rr(OLD)),  # not there: no-op
        (rr(OLD), {OLD}, {OLD}, True, rr()),  # forced: RRset gone
        (rr(FOREIGN), {FOREIGN}, set(), False, rr()),  # nothing of ours was there
    ],
)
def test_plan_withdraw(current, removing, owned, force, after) -> None:  # type: ignore[no-untyped-def]
    assert plan_withdraw(current, removing, frozenset(owned), force=force).after == after


@pytest.mark.parametrize(
    ("current", "removing", "owned"),
    [
        (rr(OLD), {OLD}, {OLD}),
        (rr(OLD, FOREIGN), {OLD}, {OLD}),  # a foreign record is not ours to leave behind
        (rr(OLD, TA), {OLD, TA}, {OLD, TA}),
    ],
)
def test_withdraw_refuses_to_leave_nothing_of_ours(current, removing, owned) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PreconditionError, match="--force"):
        plan_withdraw(current, removing, frozenset(owned))


def test_describe_marks_foreign_records() -> None:
    change = plan_withdraw(rr(OLD, NEW, FOREIGN), {OLD}, frozenset({OLD, NEW}))
    lines = describe(change, frozenset({OLD, NEW}))
    assert f"- {OWNER} 300 IN TLSA {OLD}" in lines
    assert f"= {OWNER} 300 IN TLSA {NEW}" in lines
    assert any(
        line.startswith(f"= {OWNER} 300 IN TLSA {FOREIGN}") and "foreign" in line for line in lines
    )
