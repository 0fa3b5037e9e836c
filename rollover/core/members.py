"""What each member of a pool has done in a rollover, read from the rollover's history.

A member's agent (``rollover agent --member NAME``, on that member's host) records what it
did as history entries of the rollover: ``member-staged`` (the key staged on that host is the
rollover's), ``member-deployed`` (installed, reloaded, and what its own addresses presented
then), ``member-rolled-back``. The history is append-only and shared through the state store,
so the coordinator, on any host, and ``rollover status`` read the same account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MEMBER_EVENTS = ("member-staged", "member-deployed", "member-rolled-back", "member-fault")


@dataclass(frozen=True)
class MemberState:
    name: str
    state: str  # waiting, staged, deployed, rolled-back, fault
    deployed_at: str | None = None
    presenting: dict[str, str | None] = field(default_factory=dict)  # address -> SPKI SHA-256
    last_seen: str | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "deployed_at": self.deployed_at,
            "presenting": dict(self.presenting),
            "last_seen": self.last_seen,
            "fault": self.fault,
        }


def member_states(
    names: Sequence[str], history: Iterable[dict[str, Any]], rollover_id: int | None, spki: str
) -> list[MemberState]:
    """Each member's state in rollover ``rollover_id`` (whose staged key is ``spki``): the
    last thing its agent recorded, in configuration order."""
    latest: dict[str, MemberState] = {n: MemberState(n, "waiting") for n in names}
    for entry in history:
        if entry.get("rollover") != rollover_id or entry.get("event") not in MEMBER_EVENTS:
            continue
        detail = entry.get("detail") or {}
        name = detail.get("member")
        if name not in latest:
            continue
        before = latest[name]
        at = str(entry.get("at"))
        event = entry["event"]
        presenting = detail.get("presenting") or before.presenting
        if event == "member-fault":
            latest[name] = MemberState(
                name, "fault", before.deployed_at, presenting, at, str(detail.get("fault"))
            )
        elif detail.get("spki_sha256") != spki:
            continue  # about another key: not this rollover's
        elif event == "member-staged":
            state = before.state if before.state in ("deployed", "rolled-back") else "staged"
            latest[name] = MemberState(name, state, before.deployed_at, presenting, at)
        elif event == "member-deployed":
            latest[name] = MemberState(name, "deployed", at, presenting, at)
        else:
            latest[name] = MemberState(name, "rolled-back", before.deployed_at, presenting, at)
    return [latest[n] for n in names]


def not_staged(states: Sequence[MemberState]) -> list[str]:
    """The members whose agent has not said it holds the rollover's key."""
    return [s.name for s in states if s.state not in ("staged", "deployed")]
