"""Was a publication continuous? The "current + next" fast path skips the wait at renewal only
for an association that was published without a break for the whole wait: a deletion and
re-add by hand restarts its age (a cache may have fetched the RRset in the gap and hold it
for its TTL). Reads alone cannot see a deletion undone before the next read, so where the
provider keeps the zone's history (RFC 2136: an IXFR from the version the tool last checked)
the tool reads what happened in between; where the history does not reach back, the age is
unknown and restarts at this read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rollover.core.association import Association
from rollover.ports import Chronicled, OwnershipLedger, Provider

Steps = Iterable[tuple[frozenset[Association], frozenset[Association]]]


def interrupted(tracked: frozenset[Association], steps: Steps) -> frozenset[Association]:
    """The tracked associations (published at the start) that a change removed, or that a
    change added while they should have been there (so they had gone unseen before). A
    record deleted and added back in one change was never absent from the zone. Pure."""
    present = set(tracked)
    broken: set[Association] = set()
    for removed, added in steps:
        gone = (removed - added) & tracked
        back = (added - removed) & tracked
        broken |= gone | (back & present)
        present -= gone
        present |= back
    return frozenset(broken)


def follow(
    provider: Provider,
    store: OwnershipLedger,
    owner: str,
    now: datetime,
    boot: tuple[str | None, float | None],
) -> str | None:
    """Bring the tool's knowledge of ``owner``'s history up to now; restart the age of every
    confirmed association whose publication was broken, or cannot be known to be whole (the
    ownership record's ``published_at`` becomes ``now``). Returns a line to tell the operator
    when an age was restarted, else None."""
    if not isinstance(provider, Chronicled):
        return None  # reads only (README: the fast path's limits)
    tracked = frozenset(a for a, meta in store.published(owner).items() if meta.get("published_at"))
    since = store.version(owner)
    if since is None and not tracked:
        store.set_version(owner, provider.history(owner, None).version)
        return None
    history = provider.history(owner, since)
    if history.steps is None or since is None:
        broken = tracked
        why = (
            f"{provider.name} cannot say what changed at {owner} since version {since}"
            if since is not None
            else f"no earlier version of {owner} was recorded"
        )
    else:
        broken = interrupted(tracked, history.steps)
        why = f"removed and published again at {owner} since version {since}"
    if broken:
        store.restart(owner, broken, now, boot)
    store.set_version(owner, history.version)
    if not broken:
        return None
    return (
        f"{', '.join(sorted(map(str, broken)))}: {why}; "
        "its publication counts from now (the fast path waits its age out afresh)"
    )


def mark(provider: Provider, store: OwnershipLedger, owner: str) -> None:
    """After a confirmed publication: its history is followed from here."""
    if isinstance(provider, Chronicled):
        store.set_version(owner, provider.history(owner, None).version)
