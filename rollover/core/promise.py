"""The rollover promise: the rule every plan must keep, and the plans that keep it. Pure.

The rule (RFC 7671 section 8, RFC 7672 section 3.1): at every moment, every chain that any
address may present authenticates against every TLSA RRset that any cache may still hold, the way
OpenSSL's DANE code (inside Postfix and Exim) authenticates: usable records only, digest agility
per usage and selector (RFC 7671 section 9), DANE-TA only on issuers in the presented chain; and
each configured parameter set on its own (RFC 7671 section 8.4), so that one parameter set never
leans on another. An RRset that does not exist, or holds no usable record, makes senders fall back
to unauthenticated TLS (RFC 7672 section 2.2): no failure, but a plan never leaves the name so.

A rollover exposes senders to three windows (:func:`exposures`):

1. publishing and ageing: the server presents the current chains; caches hold the RRset from
   before (``R0``) or the transitional one (``R1``);
2. deploying: either chain may be presented (several addresses, a reload in progress); every
   cache holds ``R1`` (it aged past every TTL);
3. retiring: the new chain is presented; caches hold ``R1`` or the final RRset (``R2``).

:func:`plan_rollover` builds ``R1`` and ``R2`` from what is published and the chains, following
RFC 7671 section 8:

- the new key gets an association for every parameter set in use at the owner name, configured or
  not (removing a matching type, or a foreign ``3 1 2`` beside the tool's ``3 1 1``: section 8.3);
- a parameter set the configuration adds is published for the current chains too (adding a
  matching type: section 8.3), or, where the current chains cannot match it (DANE-EE to DANE-TA,
  section 8.2), deferred to the retire step, with a transitional ``3 1 1`` of the new key carrying
  the deploy;
- an owner name with no usable TLSA gets the current chains' associations beside the new ones
  (first publication), so DANE never turns on for a key that is not yet served;
- the retire step removes the old associations and the transitional ones, and adds the deferred.

A plan that cannot keep the rule is refused (:class:`~rollover.errors.PreconditionError`) with
the reasons, before anything is published.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rollover.core.association import Association, association_data
from rollover.core.chain import issued_by
from rollover.core.matching import match_chain, usable_records
from rollover.core.material import spki_der
from rollover.core.params import TlsaParams
from rollover.core.phases import retiring_set
from rollover.core.plan import Change
from rollover.core.presented import LiveChains
from rollover.errors import PreconditionError

PresentedChain = tuple[x509.Certificate, ...]
DANE_EE_SPKI_SHA256 = TlsaParams(3, 1, 1)


@dataclass(frozen=True)
class Context:
    """What matching needs besides records and chains."""

    port: int
    host: str
    now: datetime
    configured: tuple[TlsaParams, ...] = ()


@dataclass(frozen=True)
class Window:
    """One stretch of a rollover: what caches may hold, what addresses may present."""

    name: str
    rrsets: tuple[frozenset[Association], ...]
    chains: tuple[PresentedChain, ...]


@dataclass(frozen=True)
class RolloverPlan:
    """From ``before`` (``R0``) over ``transitional`` (``R1``) to ``final_rrset`` (``R2``)."""

    before: frozenset[Association]
    new: frozenset[Association]  # the new key's associations published at the start
    bridge: frozenset[Association]  # the current chains' associations added for the transition
    final: frozenset[Association]  # the new key's associations left after the retire step
    old: frozenset[Association]  # what matched the current chains before: retired at the end
    notes: tuple[str, ...] = field(default=())

    @property
    def transitional(self) -> frozenset[Association]:
        return self.before | self.new | self.bridge

    @property
    def retiring(self) -> frozenset[Association]:
        return retiring_set(self.old, self.bridge, self.new, self.final)

    @property
    def final_rrset(self) -> frozenset[Association]:
        return (self.transitional - self.retiring) | self.final


def chain_name(chain: PresentedChain) -> str:
    return chain[0].subject.rfc4514_string() if chain else "(no certificate)"


def authenticates(
    records: frozenset[Association], chain: PresentedChain, ctx: Context
) -> str | None:
    """None when a sender holding ``records`` accepts ``chain``; otherwise why it does not.

    No usable record at all means unauthenticated TLS (RFC 7672 section 2.2): accepted.
    """
    usable, _unusable = usable_records(records, ctx.port)
    if not usable:
        return None
    result = match_chain(records, chain, port=ctx.port, reference_names=[ctx.host], now=ctx.now)
    if not result.ok:
        return "; ".join(result.problems) or "no usable record matches"
    for params in ctx.configured:
        group = frozenset(r for r in usable if r.params == params)
        if not group:
            continue
        alone = match_chain(group, chain, port=ctx.port, reference_names=[ctx.host], now=ctx.now)
        if not alone.ok:
            return f"the {params} records alone do not match it (RFC 7671 section 8.4)"
    return None


def violations(windows: Iterable[Window], ctx: Context) -> list[str]:
    """Every (window, RRset, chain) where a sender would fail, as one line each."""
    found: list[str] = []
    for window in windows:
        for rrset in window.rrsets:
            for chain in window.chains:
                reason = authenticates(rrset, chain, ctx)
                if reason is not None:
                    found.append(
                        f"{window.name}: {chain_name(chain)} against "
                        f"{{{', '.join(_short(a) for a in sorted(rrset))}}}: {reason}"
                    )
    return found


def _short(association: Association) -> str:
    return f"{association.params} {association.hex[:8]}"


def exposures(
    plan: RolloverPlan,
    old_chains: Sequence[PresentedChain],
    new_chain: PresentedChain,
    steady: Sequence[PresentedChain] = (),
) -> tuple[Window, ...]:
    """The windows of a rollover; ``steady`` chains are presented all through (other hosts
    that share the RRset through a CNAME)."""
    r0, r1, r2 = plan.before, plan.transitional, plan.final_rrset
    return (
        Window("publishing", (r0, r1), (*old_chains, *steady)),
        Window("deploying", (r1,), (*old_chains, new_chain, *steady)),
        Window("retiring", (r1, r2), (new_chain, *steady)),
    )


def associations_for(chain: PresentedChain, params: TlsaParams) -> frozenset[Association]:
    """The association of ``params`` for a chain as presented (leaf first): the leaf for usages
    1 and 3, the certificate that issued the leaf for usages 0 and 2 (empty when the chain does
    not carry it: a DANE-TA record needs the anchor in the chain, RFC 7672 section 3.1.2)."""
    if not chain:
        return frozenset()
    if params.usage in (1, 3):
        certificate = chain[0]
    else:
        issuer = next((c for c in chain[1:] if issued_by(chain[0], c)), None)
        if issuer is None:
            return frozenset()
        certificate = issuer
    data = association_data(
        params.selector, params.mtype, certificate.public_bytes(Encoding.DER), spki_der(certificate)
    )
    return frozenset({Association(params, data)})


def _for_all(chains: Sequence[PresentedChain], params: TlsaParams) -> frozenset[Association]:
    found: frozenset[Association] = frozenset()
    for chain in chains:
        found |= associations_for(chain, params)
    return found


def _all_match(
    records: frozenset[Association], chains: Sequence[PresentedChain], ctx: Context
) -> bool:
    return bool(records) and all(
        match_chain(records, c, port=ctx.port, reference_names=[ctx.host], now=ctx.now).ok
        for c in chains
    )


def starting_point(
    before: frozenset[Association], old_chains: Sequence[PresentedChain], ctx: Context
) -> list[str]:
    """Why the RRset published now already fails a chain the server presents (checked as a
    whole, the way OpenSSL does: one record matching on its own is not enough under digest
    agility)."""
    return violations([Window("now", (before,), tuple(old_chains))], ctx)


def plan_rollover(
    before: frozenset[Association],
    old_chains: Sequence[PresentedChain],
    new_chain: PresentedChain,
    new_configured: frozenset[Association],
    ctx: Context,
    *,
    stale: frozenset[Association] = frozenset(),
    steady: Sequence[PresentedChain] = (),
    owned: frozenset[Association] | None = None,
) -> RolloverPlan:
    """The plan from ``before`` to the configured parameter sets of ``new_chain``.

    ``new_configured`` holds the new chain's associations for the configured parameter sets
    (pinned trust anchors included); ``stale`` the tool's own associations of keys no longer
    presented (a failed rollover's leftovers), retired with the old ones; ``steady`` the chains
    of other hosts sharing the RRset, which must keep matching and whose records stay;
    ``owned`` what the tool published (None: treat everything as the tool's): a record the tool
    did not publish is retired only when it matches the current chains and not the new one
    (the key being rolled away from names it). Raises
    PreconditionError when no plan keeps the rule.
    """
    problems = starting_point(before, [*old_chains, *steady], ctx)
    if problems:
        raise PreconditionError(
            "the published TLSA RRset already fails a chain the server presents, so senders "
            f"fail today ({problems[0].removeprefix('now: ')}); fix that before rolling over"
        )
    configured = set(ctx.configured)
    usable, _ = usable_records(before, ctx.port)
    in_use = {r.params for r in usable}
    usages_in_use = {p.usage for p in in_use}
    notes: list[str] = []
    # Each record on its own: under digest agility a 3 1 1 hidden by a 3 1 2 still goes.
    old = frozenset(
        r
        for r in before
        if any(_all_match(frozenset({r}), [c], ctx) for c in old_chains)
        and not any(_all_match(frozenset({r}), [c], ctx) for c in steady)
        and (owned is None or r in owned or not _all_match(frozenset({r}), [new_chain], ctx))
    ) | ((stale & before) - new_configured)
    current_chains = [*old_chains, *steady]
    # The new key is published for every shape in use, configured or not (RFC 7671 8.3).
    new = set(new_configured)
    for params in sorted(in_use - configured):
        carried = associations_for(new_chain, params)
        if carried:
            new |= carried
            notes.append(f"transitional {params} for the new key: {params} is published now")
    # A configured parameter set not in use yet. Another matching type or selector of a usage in
    # use is published for the current chains too (8.3); another usage waits for the retire
    # step, the shapes in use carrying the deploy (8.2). An owner name with no usable record
    # gets the current chains' associations beside the new ones.
    bridge: set[Association] = set()
    deferred: set[TlsaParams] = set()
    for params in sorted(configured - in_use):
        current = _for_all(current_chains, params)
        if (not in_use or params.usage in usages_in_use) and _all_match(
            current, current_chains, ctx
        ):
            bridge |= current - before
            if in_use:
                notes.append(f"{params} is added for the current key too (RFC 7671 section 8.3)")
        else:
            deferred.add(params)
    if not in_use and bridge:
        notes.append(
            "no usable TLSA at the owner name yet: the current key's associations are "
            "published beside the new ones, so DANE never starts on a key not yet served"
        )
    new -= {a for a in new_configured if a.params in deferred}
    if not new or authenticates(frozenset(before | new | bridge), new_chain, ctx) is not None:
        new |= associations_for(new_chain, DANE_EE_SPKI_SHA256)
    r1 = frozenset(before | new | bridge)
    if any(authenticates(r1, c, ctx) is not None for c in current_chains):
        bridge |= _for_all(current_chains, DANE_EE_SPKI_SHA256) - before
    if deferred:
        notes.append(
            f"{', '.join(map(str, sorted(deferred)))} follow at the retire step, the records "
            "in use carrying the deploy (RFC 7671 section 8.2)"
        )
    # What the other hosts sharing the RRset need stays when the bridge is retired.
    theirs = frozenset(
        b for b in bridge if any(_all_match(frozenset({b}), [c], ctx) for c in steady)
    )
    # A record that was there before and is not the old key's (an operator's pre-published
    # record of the new key) stays; the old key's go unless configured.
    final = frozenset(new_configured | ((frozenset(new) & before) - old) | theirs)
    plan = RolloverPlan(
        before=before,
        new=frozenset(new),
        bridge=frozenset(bridge),
        final=final,
        old=old,
        notes=tuple(notes),
    )
    # Foreign records that stay may need a transitional record kept (a foreign 3 1 2 beside
    # the configured 3 1 1 hides the 3 1 1 under digest agility): keep what the rule needs.
    if authenticates(plan.final_rrset, new_chain, ctx) is not None:
        notes.append(
            "the new key's transitional records stay: the records that remain need them "
            "(digest agility)"
        )
        plan = RolloverPlan(before, plan.new, plan.bridge, final | plan.new, old, tuple(notes))
    if not plan.final_rrset or not plan.transitional:
        raise PreconditionError("the plan would leave the owner name without TLSA records")
    broken = violations(exposures(plan, old_chains, new_chain, steady), ctx)
    if broken:
        raise PreconditionError(
            f"no rollover plan keeps every sender working: {broken[0]}"
            + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else "")
        )
    return plan


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
