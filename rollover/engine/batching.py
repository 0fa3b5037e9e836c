"""One provider change per zone and tick, for every service of that zone.

``advance --all`` advances each service up to its next publish or retire (``defer_changes``),
then sends what is due here: one Route 53 ChangeResourceRecordSets, or one RFC 2136 UPDATE with
one prerequisite per RRset, per (provider, zone). Each RRset is still a compare-and-swap; a
batch refused on a conflict leaves its services to the ordinary per-service path, so one
foreign edit does not hold the others back. Providers without ``apply_many`` are never
deferred. A kill between a batched change and its records is picked up by the next advance
like any other (the history then says "provider-change-seen").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rollover.core.phases import Phase, Rollover
from rollover.core.plan import Change
from rollover.engine.machine import Engine
from rollover.ports import Batching


def batch_provider_changes(
    engines: Sequence[Engine], out: Callable[[str], None], *, singles: bool = False
) -> int:
    """Send the pending publish/retire changes as one batch per (provider, zone) where two or
    more are due (one alone too with ``singles``: a deferred service has no other path in its
    tick); returns the number of batches sent. Leases are held throughout."""
    groups: dict[tuple[str, str], tuple[Batching, list[tuple[Engine, Rollover, Change]]]] = {}
    held: list[tuple[Engine, Rollover]] = []
    try:
        for engine in engines:
            provider = engine.provider
            if not isinstance(provider, Batching):
                continue
            rollover = engine.store.current(engine.service.name)
            if rollover is None or rollover.phase not in (Phase.PUBLISHING, Phase.RETIRING):
                continue
            if not engine.acquire_lease(rollover):
                continue
            held.append((engine, rollover))
            change = engine.pending_change(rollover)
            if change is None:
                continue
            key = (engine.provider.name, engine.provider.zone_for(rollover.owner))
            groups.setdefault(key, (provider, []))[1].append((engine, rollover, change))
        sent = 0
        for (provider_name, zone), (batcher, items) in groups.items():
            if len(items) < 2 and not singles:
                continue  # a single change takes the ordinary path
            for engine, rollover, change in items:
                engine.before_change(rollover, change)
            receipts = batcher.apply_many([c for _e, _r, c in items])
            for engine, rollover, _change in items:
                engine.checkpoint(
                    "after-retire" if rollover.phase == Phase.RETIRING else "after-publish"
                )
            for (engine, rollover, change), receipt in zip(items, receipts, strict=True):
                engine.after_change(rollover, change, receipt)
            sent += 1
            out(
                f"{provider_name}: one change batch for {len(items)} services in {zone} "
                f"({', '.join(e.service.name for e, _r, _c in items)})"
            )
        return sent
    finally:
        for engine, rollover in held:
            engine.release_lease(rollover)
