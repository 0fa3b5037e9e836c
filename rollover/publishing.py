"""Publish and withdraw associations for a configured service: plan, print, apply, record, wait.

The provider, the ownership store, the clock and the output are passed in; this module decides
the order of things (claim before publishing, release after withdrawing) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives._serialization import Encoding

from providers.base import Provider, Receipt
from rollover.association import Association
from rollover.config import ServiceConfig
from rollover.continuity import follow, mark
from rollover.derive import DeriveOptions, derive
from rollover.errors import ConflictError, InputError, PreconditionError
from rollover.matching import match_chain
from rollover.plan import Change, describe, plan_publish, plan_withdraw
from rollover.sources import Material
from state.ownership import OwnershipStore

Output = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    change: Change
    receipt: Receipt | None  # None for a dry run or when there was nothing to do


def service_associations(
    service: ServiceConfig, material: Material, now: datetime
) -> tuple[frozenset[Association], list[str]]:
    """The service's parameter sets computed from one source; warnings returned, errors raised."""
    result = derive(
        material,
        DeriveOptions(
            params=service.records, owner=service.owner, port=service.port, ttl=service.ttl
        ),
        now,
    )
    if result.errors:
        raise InputError(result.errors[0])
    associations = {r.association for r in result.records}
    associations |= pinned_anchor_associations(service)
    return frozenset(associations), result.warnings


def pinned_anchor_associations(service: ServiceConfig) -> set[Association]:
    """Trust-anchor pinning: the usage 2 parameter sets computed from every pinned issuer
    certificate (a CA's current and backup intermediates), so any of them may sign."""
    from rollover.association import association_data
    from rollover.sources import parse_material, read_source, spki_der

    pinned: set[Association] = set()
    for path in service.trust_anchors:
        material = parse_material(path, read_source(path))
        for certificate in material.certificates:
            der = certificate.public_bytes(Encoding.DER)
            for p in service.records:
                if p.usage == 2:
                    data = association_data(p.selector, p.mtype, der, spki_der(certificate))
                    pinned.add(Association(p, data))
    return pinned


def anchor_warning(service: ServiceConfig, issuer: x509.Certificate | None) -> str | None:
    """A warning when the served (or deployed) issuer is not among the pinned trust anchors."""
    if not service.trust_anchors or issuer is None:
        return None
    from rollover.sources import parse_material, read_source, spki_der

    pinned = {
        spki_der(c)
        for path in service.trust_anchors
        for c in parse_material(path, read_source(path)).certificates
    }
    if spki_der(issuer) in pinned:
        return None
    return (
        f"the issuer {issuer.subject.rfc4514_string()} is not among the pinned "
        f"trust_anchors of services.{service.name}"
    )


def publish(
    service: ServiceConfig,
    provider: Provider,
    store: OwnershipStore,
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
        from rollover.clock import SystemClock

        clock = SystemClock()
        boot = (clock.boot_id(), clock.boottime())
    owner = service.owner
    current = provider.read(owner)
    if not dry_run:
        note = follow(provider, store, owner, now, boot)
        if note is not None:
            out(f"note: {note}")
        store.seen(owner, current.records, now, boot, current.ttl)
    change = plan_publish(current, associations, service.ttl)
    for line in describe(change, store.owned(owner)):
        out(line)
    if dry_run or change.is_noop:
        return Outcome(change, None)
    store.claim(owner, change.added, service.name, now)
    try:
        receipt = provider.apply(change)
    except ConflictError:
        store.release(owner, change.added)  # certainly not applied
        raise
    store.note_served(owner, {current.ttl, change.after.ttl}, now, boot)
    provider.wait(receipt, wait_timeout)
    store.confirm(owner, change.added, now, boot)
    mark(provider, store, owner)
    store.seen(owner, change.after.records, now, boot, change.after.ttl)
    out(f"published at {owner} via {provider.name}")
    return Outcome(change, receipt)


@dataclass(frozen=True)
class LiveChains:
    """What the probe saw: the distinct chains presented, or why it could not tell."""

    chains: tuple[tuple[x509.Certificate, ...], ...] = ()
    error: str | None = None
    # Where each chain was seen: ("ADDRESS:PORT (asked)", chain), every address and algorithm.
    seen: tuple[tuple[str, tuple[x509.Certificate, ...]], ...] = ()


def check_live(change: Change, live: LiveChains, *, port: int, host: str, now: datetime) -> None:
    """Never remove the last association that matches a chain the server presents.

    When the probe could not tell, the change is refused too: not knowing is not permission.
    """
    if not change.removed:
        return
    if live.error is not None:
        raise PreconditionError(
            f"{change.owner}: cannot tell which key the server presents "
            f"({live.error}); refusing to withdraw (use --force)"
        )
    for chain in live.chains:
        before = match_chain(
            change.before.records, chain, port=port, reference_names=[host], now=now
        )
        after = match_chain(change.after.records, chain, port=port, reference_names=[host], now=now)
        if before.ok and not after.ok:
            raise PreconditionError(
                f"{change.owner}: the server presents {chain[0].subject.rfc4514_string()} and "
                "no remaining record would match it; refusing to withdraw (use --force)"
            )


def withdraw(
    service: ServiceConfig,
    provider: Provider,
    store: OwnershipStore,
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
