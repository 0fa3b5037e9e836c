"""Facts: what the provider, DNS and the live server say now, gathered for the phase the
rollover is in (the transition table in :mod:`rollover.core.phases` decides from them),
and the guards of a start (signing, a secure zone, a sound starting point).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from cryptography import x509

from rollover.core.association import Association
from rollover.core.matching import spki_sha256
from rollover.core.observation import DnssecState, Observation, resolver_lag
from rollover.core.phases import (
    Facts,
    Phase,
    Rollover,
    wait_seconds,
)
from rollover.core.presented import LiveChains
from rollover.engine.base import is_staged, key_line, leaf_first
from rollover.engine.continuity import follow
from rollover.engine.leases import Leases
from rollover.errors import PreconditionError, RolloverError
from rollover.ports import (
    SigningAware,
)


class FactFinding(Leases):
    def _installed_not_loaded(self, live: LiveChains) -> tuple[tuple[x509.Certificate, ...], ...]:
        """The chain in the deployed files when no address presents its key: the server loads
        it at its next reload (a failed cut-over leaves one), so it is a chain it may present."""
        if self.deployer is None and self.service.deploy is None:
            return ()
        try:
            chain_pem, _key = self._deployer().deployed()
        except RolloverError:
            return ()
        if chain_pem is None:
            return ()
        try:
            chain = leaf_first("the deployed chain", chain_pem)
        except RolloverError:
            return ()
        if not chain:
            return ()
        keys = {spki_sha256(c[0]) for c in live.chains}
        return () if spki_sha256(chain[0]) in keys else (chain,)

    def _stale(
        self, records: frozenset[Association], live: LiveChains, now: datetime
    ) -> frozenset[Association]:
        """The tool's own associations left by this service's previous rollover that match no
        chain presented now (a failed rollover's other key): retired by this one. Anything
        else that matches no presented key stays (a backup pin), and is said."""
        previous = self.store.current(self.service.name)
        touched = (
            frozenset()
            if previous is None
            else previous.old | previous.bridge | previous.new | previous.kept
        )
        owned = self.ownership.owned(self.service.owner)
        unserved = {
            a
            for a in records
            if not any(self._authenticated(frozenset({a}), c, now) for c in live.chains)
        }
        stale = frozenset(unserved & owned & touched)
        for association in sorted((unserved & owned) - stale):
            self.out(
                f"plan: {association} stays: published by rollover, but no presented key "
                "matches it (a backup pin?); remove it with rollover withdraw if it is not"
            )
        return stale

    def _unbroken(self, r: Rollover, served: Facts) -> Facts:
        """Before the deploy: no new association may have left the zone since the ageing
        began, however briefly (deleted and put back by hand between two reads): a cache may
        hold the RRset without it for its TTL. The zone's history says (RFC 2136's IXFR);
        a break restarts the wait."""
        now = self.clock.now()
        note = follow(self.provider, self.ownership, r.owner, now, self._boot())
        began = r.propagated_at or r.since
        records = self.ownership.published(r.owner)
        broken = sorted(
            str(a)
            for a in r.published - r.before
            if (at := records.get(a, {}).get("published_at")) and datetime.fromisoformat(at) > began
        )
        if not broken:
            return served
        why = note or f"{', '.join(broken)} went missing and came back"
        return replace(
            served,
            authoritative_ok=False,
            detail=f"{why}; not deploying until it ages again",
        )

    def _replaced_horizon(self, now: datetime) -> int:
        """The longest TTL of an RRset the tool knew served at this owner name that caches may
        still hold: the horizon from before must not forget it because the TTL was lowered
        since, or the RRset deleted. Judged on the boot's clock as well on the same boot, so a
        stepped wall clock cannot expire it early."""
        replaced = self.ownership.replaced(self.service.owner)
        factor = max(1.0, self.safety_factor)
        boot_id, boottime = self._boot()
        live = []
        for ttl, meta in replaced.items():
            span = factor * ttl
            wall = meta["at"] + timedelta(seconds=span) > now
            same_boot = boot_id is not None and meta.get("boot_id") == boot_id
            then = meta.get("boottime")
            on_boot = (
                same_boot
                and isinstance(then, float | int)
                and boottime is not None
                and boottime - then < span
            )
            if wall or on_boot:
                live.append(ttl)
        return max(live, default=0)

    def _aged_already(
        self,
        new: frozenset[Association],
        published: frozenset[Association],
        horizon: int,
        now: datetime,
        *,
        previous: frozenset[Association] | None = None,
        replaced_horizon: int = 0,
    ) -> bool:
        """Every new association was published (confirmed by the provider) long enough ago, on
        the wall clock and, on the same boot, on the boot's own clock; and every RRset the tool
        replaced at the name (with a longer TTL, say) has aged out too."""
        if not new <= published or previous != published:
            return False  # the RRset changed since the tool last saw it: when, it cannot know
        if replaced_horizon > 0:
            return False
        records = self.ownership.published(self.service.owner)
        wait = wait_seconds(horizon, self.published_ttl(self.service.owner), self.safety_factor)
        boot_id, boottime = self._boot()
        for association in new:
            meta = records.get(association, {})
            at = meta.get("published_at")
            if not at or datetime.fromisoformat(at) + timedelta(seconds=wait) > now:
                return False
            confirmed = meta.get("boottime")
            same_boot = boot_id is not None and meta.get("boot_id") == boot_id
            if same_boot and (confirmed is None or boottime is None or boottime - confirmed < wait):
                return False
        return True

    def _require_signing(self, owner: str, allow_insecure: bool) -> None:
        """Providers that can say whether they sign the zone (Route 53's GetDNSSEC) are asked."""
        if not isinstance(self.provider, SigningAware) or allow_insecure:
            return
        if not self.provider.dnssec_signing(owner):
            raise PreconditionError(
                f"{self.provider.name} reports that it does not sign the "
                f"zone of {owner} (DNSSEC); TLSA records would protect "
                "nothing (use --allow-insecure to roll over anyway)"
            )

    def _require_secure(self, observation: Observation, allow_insecure: bool) -> None:
        if observation.error is not None:
            raise PreconditionError(f"cannot observe DNS: {observation.error}")
        if not observation.resolvers and isinstance(self.provider, SigningAware):
            return  # seen through the provider: its own DNSSEC status decides
        states = {r.state for r in observation.resolvers if r.error is None}
        if DnssecState.BOGUS in states:
            raise PreconditionError(
                f"{observation.owner} is bogus at a validating resolver; "
                "fix DNSSEC before rolling over"
            )
        if states != {DnssecState.SECURE} and not allow_insecure:
            raise PreconditionError(
                f"{observation.owner} is not DNSSEC-secure at every "
                "resolver; TLSA records would protect nothing "
                "(use --allow-insecure to roll over anyway)"
            )

    # -- facts -----------------------------------------------------------------------------
    def _facts(self, r: Rollover) -> Facts:
        phase = r.phase
        if phase == Phase.PUBLISHING:
            records = self.provider.read(r.owner).records
            self._reconcile_published(r, records)
            return Facts(provider_records=records)
        if phase == Phase.RETIRING:
            records = self.provider.read(r.owner).records
            self._reconcile_retired(r, records)
            return Facts(provider_records=records)
        if phase == Phase.AGING:
            # Follow the zone's history while ageing, so the deploy's look at it spans little.
            follow(self.provider, self.ownership, r.owner, self.clock.now(), self._boot())
            return Facts(boot_id=self.clock.boot_id(), boottime=self.clock.boottime())
        if phase in (Phase.PROPAGATING, Phase.DEPLOYING, Phase.VERIFYING):
            rrset = self.provider.read(r.owner)
            records = rrset.records
            self.ownership.seen(r.owner, records, self.clock.now(), self._boot(), rrset.ttl)
            if phase == Phase.VERIFYING:
                self._reconcile_retired(r, records)
            self._hold(r)
            observation = self.observer.observe(r.owner)
            final = phase == Phase.VERIFYING
            served = self._served(r, observation, final=final)
            if phase == Phase.DEPLOYING:
                served = self._unbroken(r, served)
            return replace(
                served,
                provider_records=records,
                horizon=observation.cache_horizon,
                boot_id=self.clock.boot_id(),
                boottime=self.clock.boottime(),
            )
        if phase == Phase.CUTTING_OVER:
            self.checkpoint("during-cutover")
            self._hold(r)
            live = self.live()
            if live.error is not None:
                return Facts(live_new=False, live_error=live.error, fault=live.error)
            now = self.clock.now()
            seen = live.seen or tuple(("the server", c) for c in live.chains)
            # The new key itself on every address (a shared issuer's 2 0 1 in ``new`` also
            # matches the old chain: matching alone would declare the cut-over too early).
            behind = [
                f"{self._where(where)} presents {key_line(chain)}"
                for where, chain in seen
                if not is_staged(r, chain[0]) or not self._authenticated(r.new, chain, now)
            ]
            ok = bool(live.chains) and not behind
            detail = None
            if behind:
                detail = (
                    "; ".join(behind) + f", not the new key (SPKI SHA-256 {r.staged_spki[:16]})"
                )
            return Facts(live_new=ok, cutover_detail=detail)
        return Facts()

    def _where(self, address: str) -> str:
        """An address as a person looks for it: with its pool member's name, where it has one."""
        member = self.service.member_at(address.partition(" ")[0])  # "ADDR:PORT (algorithm)"
        return address if member is None else f"member {member.name} at {address}"

    def _served(self, r: Rollover, observation: Observation, *, final: bool) -> Facts:
        """Every authoritative server and every resolver serves what this phase needs; a
        server that cannot be asked or a resolver that does not validate is a fault (reported),
        a server that has not caught up yet is not."""
        if observation.error is not None:
            return Facts(
                authoritative_ok=False,
                resolvers_ok=False,
                detail=observation.error,
                fault=observation.error,
            )

        def good(records: frozenset[Association]) -> bool:
            if final:
                return r.kept <= records and not r.retiring & records
            return r.published <= records

        lagging = [
            a.address
            for a in observation.authoritative
            if a.error is not None or not good(a.records)
        ]
        faults = [f"{a.address}: {a.error}" for a in observation.authoritative if a.error]
        auth_ok = not lagging and observation.consistent
        allowed = {DnssecState.SECURE} | (
            {DnssecState.INSECURE, DnssecState.INDETERMINATE} if r.allow_insecure else set()
        )
        slow = []
        for res in observation.resolvers:
            reason = resolver_lag(res, allowed, final or good(res.records))
            if reason is None:
                continue
            slow.append(f"{res.address} ({reason})")
            if res.error is not None or res.state not in allowed:
                faults.append(f"resolver {res.address}: {reason}")
        detail = ""
        if lagging:
            detail = f"waiting for {', '.join(lagging)}"
        elif slow:
            detail = f"waiting for resolver {', '.join(slow)}"
        return Facts(
            authoritative_ok=auth_ok,
            resolvers_ok=not slow,
            detail=detail,
            fault="; ".join(faults) or None,
        )

    def _reconcile_published(self, r: Rollover, records: frozenset[Association]) -> None:
        """A publication the provider applied but whose record never came back (a kill between
        the call and its record, a lost reply) is recorded once it is seen: the history says
        so, and its age starts now (never earlier than it really did)."""
        unconfirmed = {a for a, at in self.ownership.published_at(r.owner).items() if at is None}
        appeared = frozenset(unconfirmed & r.published & records)
        if appeared:
            self.ownership.confirm(r.owner, appeared, self.clock.now(), self._boot())
            self.store.append(
                r,
                self.clock.now(),
                "provider-change-seen",
                {"added": sorted(map(str, appeared)), "detail": "applied, reply not recorded"},
            )

    def _reconcile_retired(self, r: Rollover, records: frozenset[Association]) -> None:
        """A removal the provider applied but whose reply never came back (a dropped connection,
        a kill between the call and its record) is recorded once it is seen: the history says
        so and the associations stop counting as ours."""
        vanished = (self.ownership.owned(r.owner) & r.retiring) - records
        if vanished:
            self.ownership.release(r.owner, vanished)
            self.store.append(
                r,
                self.clock.now(),
                "provider-change-seen",
                {"removed": sorted(map(str, vanished)), "detail": "applied, reply not recorded"},
            )
