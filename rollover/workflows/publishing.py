"""Publish and withdraw associations for a configured service: plan, print, apply, record, wait.

The provider, the ownership store, the clock and the output are passed in; this module decides
the order of things (claim before publishing, release after withdrawing) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rollover.config import ServiceConfig
from rollover.core.association import Association
from rollover.core.plan import Change, describe, plan_publish, plan_withdraw
from rollover.core.presented import LiveChains
from rollover.core.promise import check_live
from rollover.engine.continuity import follow, mark
from rollover.errors import ConflictError, InputError, RolloverError
from rollover.ports import OwnershipLedger, Provider, Receipt, TtlBounded

Output = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    change: Change
    receipt: Receipt | None  # None for a dry run or when there was nothing to do


def publish(
    service: ServiceConfig,
    provider: Provider,
    store: OwnershipLedger,
    associations: frozenset[Association],
    *,
    now: datetime,
    out: Output,
    dry_run: bool = False,
    wait_timeout: float = 120.0,
    boot: tuple[str | None, float | None] | None = None,
) -> Outcome:
    """``boot`` is this boot and its non-jumping clock (read now when not given), recorded
    with the confirmation so the "current + next" fast path cannot be aged by a clock step."""
    if boot is None:
        from rollover.edges.clock import SystemClock

        clock = SystemClock()
        boot = (clock.boot_id(), clock.boottime())
    owner = service.owner
    current = provider.read(owner)
    if not dry_run:
        note = follow(provider, store, owner, now, boot)
        if note is not None:
            out(f"note: {note}")
        store.seen(owner, current.records, now, boot, current.ttl)
    ttl = service.ttl
    if isinstance(provider, TtlBounded):
        ttl = provider.published_ttl(owner, service.ttl)
        if ttl != service.ttl:
            out(f"  TTL {service.ttl} raised to {ttl} by {provider.name} (its minimum TTL)")
    change = plan_publish(current, associations, ttl)
    for line in describe(change, store.owned(owner)):
        out(line)
    if dry_run or change.is_noop:
        return Outcome(change, None)
    store.claim(owner, change.added, service.name, now)
    store.durable()  # the claim survives a power loss before the record exists
    try:
        receipt = provider.apply(change)
    except ConflictError:
        # Refused (nothing written), or, where the compare-and-swap is emulated (PowerDNS's
        # API, Cloudflare, deSEC), written and then changed by another writer: only what is
        # certainly not there loses its claim.
        store.release(owner, change.added - _present(provider, owner, change.added))
        raise
    published = receipt.change.after.ttl if receipt.change.owner == owner else None
    published = published or change.after.ttl
    store.note_served(owner, {current.ttl, published}, now, boot)
    provider.wait(receipt, wait_timeout)
    store.confirm(owner, change.added, now, boot)
    mark(provider, store, owner)
    store.seen(owner, change.after.records, now, boot, published)
    out(f"published at {owner} via {provider.name}")
    return Outcome(change, receipt)


def withdraw(
    service: ServiceConfig,
    provider: Provider,
    store: OwnershipLedger,
    associations: frozenset[Association],
    *,
    out: Output,
    now: datetime,
    live: Callable[[], LiveChains] | None,
    force: bool = False,
    dry_run: bool = False,
    wait_timeout: float = 120.0,
) -> Outcome:
    """``live`` probes the server; ``force`` skips both guards."""
    owner = service.owner
    current = provider.read(owner)
    owned = store.owned(owner)
    change = plan_withdraw(current, associations, owned, force=force)
    for line in describe(change, owned):
        out(line)
    if change.is_noop:
        return Outcome(change, None)
    if not force and live is not None:
        check_live(change, live(), port=service.port, host=service.host, now=now)
    if dry_run:
        return Outcome(change, None)
    store.durable()
    receipt = provider.apply(change)
    store.release(owner, change.removed)
    store.note_served(owner, {current.ttl}, now)
    store.seen(owner, change.after.records, now)
    provider.wait(receipt, wait_timeout)
    out(f"withdrawn from {owner} via {provider.name}")
    return Outcome(change, receipt)


def associations_by_data(current: frozenset[Association], hex_data: str) -> frozenset[Association]:
    """The records whose association data is ``hex_data`` (any parameters)."""
    cleaned = "".join(hex_data.split()).lower()
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise InputError(f"--data {hex_data!r}: not a hex string") from None
    return frozenset(a for a in current if a.data == data)


def _present(
    provider: Provider, owner: str, claimed: frozenset[Association]
) -> frozenset[Association]:
    """What of ``claimed`` the provider holds now; all of it when that cannot be read (a
    claim on a record that is not there is harmless, an unclaimed record of ours is not)."""
    try:
        return provider.read(owner).records & claimed
    except RolloverError:
        return claimed
