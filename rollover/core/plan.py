"""RRset plans: from exactly this TLSA RRset to exactly that one. Pure.

Every provider change is a compare-and-swap computed here: the adapter applies ``after`` only if
the RRset is still ``before``. Ownership (which records this tool published) decides what may be
removed without being named.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rollover.core.association import Association
from rollover.errors import PreconditionError


@dataclass(frozen=True)
class TlsaRRset:
    """The TLSA RRset at an owner name; ``records`` empty means it does not exist."""

    owner: str
    ttl: int | None = None
    records: frozenset[Association] = frozenset()

    @property
    def exists(self) -> bool:
        return bool(self.records)


@dataclass(frozen=True)
class Change:
    """Replace ``before`` by ``after`` at one owner name, atomically, if ``before`` still holds."""

    before: TlsaRRset
    after: TlsaRRset

    @property
    def owner(self) -> str:
        return self.after.owner

    @property
    def added(self) -> frozenset[Association]:
        return self.after.records - self.before.records

    @property
    def removed(self) -> frozenset[Association]:
        return self.before.records - self.after.records

    @property
    def is_noop(self) -> bool:
        ttl_changes = self.after.exists and self.before.ttl != self.after.ttl
        return not self.added and not self.removed and not ttl_changes


def plan_publish(current: TlsaRRset, adding: Iterable[Association], ttl: int) -> Change:
    """Add associations beside what is there. Idempotent: already-present ones are a no-op.

    All records of an RRset share one TTL (RFC 2181 section 5.2), so the configured TTL applies to
    the whole RRset once anything is added.
    """
    wanted = frozenset(adding)
    if wanted <= current.records:
        return Change(current, current)
    return Change(current, TlsaRRset(current.owner, ttl, current.records | wanted))


def plan_withdraw(
    current: TlsaRRset,
    removing: Iterable[Association],
    owned: frozenset[Association],
    *,
    force: bool = False,
) -> Change:
    """Remove exactly the named associations.

    Refuses (unless ``force``) to leave the owner name without any association this tool
    published: that would unpin the service, or hand it over to records nobody here manages.
    """
    named = frozenset(removing) & current.records
    remaining = current.records - named
    if named and not force and owned & current.records and not owned & remaining:
        raise PreconditionError(
            f"{current.owner}: withdrawing would leave no association published by rollover "
            "(use --force to do it anyway)"
        )
    ttl = current.ttl if remaining else None
    return Change(current, TlsaRRset(current.owner, ttl, remaining))


def describe(change: Change, owned: frozenset[Association]) -> list[str]:
    """The plan as lines: ``+`` added, ``-`` removed, ``=`` kept; foreign records marked."""
    lines = []
    ttl = change.after.ttl if change.after.exists else change.before.ttl
    for association in sorted(change.before.records | change.after.records):
        if association in change.added:
            mark = "+"
        elif association in change.removed:
            mark = "-"
        else:
            mark = "="
        foreign = (
            "" if association in owned or mark == "+" else "  (foreign: not published by rollover)"
        )
        lines.append(f"{mark} {change.owner} {ttl} IN TLSA {association}{foreign}")
    if change.is_noop:
        lines.append(f"  {change.owner}: nothing to change")
    elif change.before.exists and change.after.exists and change.before.ttl != change.after.ttl:
        lines.append(f"  TTL {change.before.ttl} -> {change.after.ttl}")
    return lines
