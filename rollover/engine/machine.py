"""The rollover engine: gathers the facts each phase needs, executes actions, stores results.

Every step is idempotent and resumable. The engine never trusts its own record over the world:
each advance reads the provider, DNS and the live server again, so a process killed between a
provider change and the state write (or between deploy and reload) is picked up where things
really stand, with no duplicate or lost change. A lease per rollover keeps two processes from
acting on the same rollover at once; a crashed holder's lease expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from rollover.config import ServiceConfig
from rollover.core.association import Association
from rollover.core.matching import match_chain, spki_sha256
from rollover.core.material import describe_key
from rollover.core.observation import DnssecState, Observation, resolver_lag
from rollover.core.phases import (
    BEFORE_DEPLOY,
    CUTOVER_TIMEOUT,
    FINAL,
    Action,
    Decision,
    Facts,
    Phase,
    Rollover,
    apply_decision,
    decide,
    wait_seconds,
)
from rollover.core.plan import Change, TlsaRRset, plan_publish
from rollover.core.presented import LiveChains
from rollover.core.promise import Context, Window, check_live, plan_rollover, violations
from rollover.edges.deploy import FileDeployer
from rollover.edges.files import write_atomic
from rollover.engine.associations import service_associations
from rollover.engine.continuity import follow, mark
from rollover.engine.staging import Staged, load_staged, presented_order, read_passphrase
from rollover.errors import ConflictError, PreconditionError, RolloverError
from rollover.ports import (
    Checkpoint,
    Clock,
    Deployer,
    LiveProbe,
    Observer,
    OwnershipLedger,
    Provider,
    Receipt,
    SigningAware,
    StateStore,
    no_checkpoint,
)

LEASE_SECONDS = 120.0
CUTOVER_HELD_AFTER = timedelta(minutes=1)
Output = Callable[[str], None]


@dataclass(frozen=True)
class AdvanceResult:
    rollover: Rollover
    progressed: bool
    message: str
    acted: bool = True  # False when another process holds the lease
    fault: str | None = None  # something broken held it at this advance and the one before


class Engine:
    def __init__(
        self,
        service: ServiceConfig,
        provider: Provider,
        store: StateStore,
        *,
        ownership: OwnershipLedger,
        observer: Observer,
        live: LiveProbe,
        clock: Clock,
        state_dir: str,
        safety_factor: float = 2.0,
        out: Output = lambda _line: None,
        cutover_timeout: timedelta = CUTOVER_TIMEOUT,
        wait_timeout: float = 120.0,
        on_event: Callable[[str, Rollover, str], None] | None = None,
        deployer: Deployer | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        shared: LiveProbe | None = None,
    ) -> None:
        self.service = service
        self.provider = provider
        self.store = store
        self.ownership = ownership
        self.observer = observer
        self.live = live
        self.clock = clock
        self.state_dir = state_dir
        self.safety_factor = safety_factor
        self.out = out
        self.cutover_timeout = cutover_timeout
        self.wait_timeout = wait_timeout
        self.on_event = on_event
        self.deployer = deployer
        self.checkpoint = checkpoint
        self.shared = shared  # the other hosts sharing the RRset (``tlsa_owner``)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- start -----------------------------------------------------------------------------
    def steady(self) -> tuple[tuple[x509.Certificate, ...], ...]:
        """The chains of the other hosts that share this RRset: presented all through."""
        if self.shared is None:
            return ()
        seen = self.shared()
        if seen.error is not None:
            raise PreconditionError(
                f"cannot probe a host that shares {self.service.owner} ({seen.error}); "
                "the RRset is theirs too"
            )
        return seen.chains

    def context(self, now: datetime) -> Context:
        service = self.service
        return Context(service.port, service.host, now, tuple(service.records))

    def plan(
        self, staged: Staged, *, allow_insecure: bool, passphrase_source: str | None = None
    ) -> Rollover:
        """Compute the rollover and check that it keeps every sender working; nothing is
        changed. A plan that cannot keep the rule is refused with the reason."""
        service = self.service
        now = self.clock.now()
        configured, warnings = service_associations(service, staged.material, now)
        for line in dict.fromkeys(warnings):
            self.out(f"warning: {line}")
        observation = self.observer.observe(service.owner)
        self._require_secure(observation, allow_insecure)
        self._require_signing(service.owner, allow_insecure)
        current = self.provider.read(service.owner)
        last = self.ownership.last_rrset(service.owner)
        previous = None if last is None else last[0]
        if last is not None and last[0] != current.records:
            # Changed since the tool last saw it, at an instant it cannot know: caches may
            # hold what it saw then for its TTL from now on.
            self.ownership.note_served(service.owner, {last[1]}, now, self._boot())
        note = follow(self.provider, self.ownership, service.owner, now, self._boot())
        if note is not None:
            self.out(f"plan: {note}")
        self.ownership.seen(service.owner, current.records, now, self._boot(), current.ttl)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); the starting "
                "point must be known before a rollover"
            )
        if not live.chains:
            raise PreconditionError("the server presented no certificate; nothing to roll from")
        if staged.encrypted and passphrase_source is None:
            raise PreconditionError(
                f"{staged.key_path}: the staged key is encrypted; give its passphrase with "
                "--passphrase-file or $ROLLOVER_PASSPHRASE so the deploy can read it"
            )
        presented = (*live.chains, *self._installed_not_loaded(live))
        plan = plan_rollover(
            current.records,
            presented,
            presented_order(staged),
            configured,
            self.context(now),
            stale=self._stale(current.records, live, now),
            steady=self.steady(),
            owned=self.ownership.owned(service.owner),
        )
        for note in plan.notes:
            self.out(f"plan: {note}")
        horizon_known = self._replaced_horizon(now)
        self.ownership.note_served(service.owner, {current.ttl}, now, self._boot())
        phase = Phase.PUBLISHING
        if not plan.bridge and self._aged_already(
            plan.new,
            current.records,
            observation.cache_horizon,
            now,
            previous=previous,
            replaced_horizon=horizon_known,
        ):
            phase = Phase.DEPLOYING  # "current + next": the wait happened ahead of time
        return Rollover(
            service=service.name,
            owner=service.owner,
            phase=phase,
            old=plan.old,
            new=plan.new,
            bridge=plan.bridge,
            final=plan.final,
            notes=plan.notes,
            staged_chain=staged.chain_path,
            staged_key=staged.key_path,
            staged_spki=staged.spki_sha256,
            staged_cert=_der_sha256(presented_order(staged)[0]),
            before=current.records,
            passphrase_source=passphrase_source if staged.encrypted else None,
            started_at=now,
            since=now,
            safety_factor=max(1.0, self.safety_factor),
            horizon_before=max(observation.cache_horizon, horizon_known),
            allow_insecure=allow_insecure,
        )

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
            chain = _leaf_first("the deployed chain", chain_pem)
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

    def _boot(self) -> tuple[str | None, float | None]:
        return self.clock.boot_id(), self.clock.boottime()

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
        wait = wait_seconds(horizon, self.service.ttl, self.safety_factor)
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

    def start(
        self,
        staged: Staged,
        *,
        allow_insecure: bool = False,
        passphrase_source: str | None = None,
    ) -> Rollover:
        planned = self.plan(
            staged, allow_insecure=allow_insecure, passphrase_source=passphrase_source
        )
        rollover = self.store.create(planned)
        self.store.append(
            rollover,
            self.clock.now(),
            "start",
            {
                "old": sorted(map(str, rollover.old)),
                "new": sorted(map(str, rollover.new)),
                "bridge": sorted(map(str, rollover.bridge)),
                "final": sorted(map(str, rollover.kept)),
                "notes": list(rollover.notes),
                "staged_spki_sha256": rollover.staged_spki,
                "horizon_before": rollover.horizon_before,
            },
        )
        return rollover

    # -- advance ---------------------------------------------------------------------------
    def advance(self) -> AdvanceResult:
        """Take every step whose guard holds now; stop at the first wait."""
        rollover = self.store.current(self.service.name)
        if rollover is None:
            raise PreconditionError(
                f"service {self.service.name} has no rollover (start one with rollover start)"
            )
        if rollover.phase in FINAL:
            return AdvanceResult(rollover, False, f"rollover {rollover.phase}")
        if not self._lease(rollover):
            return AdvanceResult(
                rollover, False, "another process is advancing this rollover", acted=False
            )
        progressed = False
        message = ""
        fault: str | None = None
        try:
            for _step in range(20):
                rollover = self.store.current(self.service.name) or rollover
                if rollover.phase in FINAL:
                    break
                if not self._renew(rollover):
                    message = "the lease was lost to another process; stopping here"
                    break
                facts = self._facts(rollover)
                now = self.clock.now()
                decision = decide(rollover, facts, now, self.cutover_timeout)
                message = decision.message
                if decision.action is not Action.NONE:
                    self._act(rollover, decision)
                if decision.action is Action.REPUBLISH:
                    # The world lost what the rollover stands on: held, and said at once.
                    fault = decision.message
                    rollover = self._save_wait(
                        rollover, replace(decision, waiting_until=now), decision.message
                    )
                    break
                if facts.fault is None and decision.phase == Phase.CUTTING_OVER:
                    waited = now - (rollover.deployed_at or rollover.since)
                    if decision.action is Action.NONE and waited > CUTOVER_HELD_AFTER:
                        # Still not every address on the new key a minute after the deploy:
                        # held (rollover_held shows it), with which address presents what.
                        facts = replace(facts, fault=decision.message)
                if decision.phase == rollover.phase and decision.action is Action.NONE:
                    # A fault is reported once something held the rollover at two advances in
                    # a row (its wording may differ: resolvers vary their EDE text): a single
                    # timeout under load is only recorded (status shows it), not alarmed on.
                    if facts.fault is not None and rollover.error is not None:
                        fault = facts.fault
                    rollover = self._save_wait(rollover, decision, facts.fault)
                    break
                previous = rollover.phase
                rollover = self._save_after(rollover, decision, now)
                self.store.append(
                    rollover,
                    now,
                    "transition",
                    {
                        "from": previous.value,
                        "to": rollover.phase.value,
                        "message": decision.message,
                    },
                )
                self.out(f"{self.service.name}: {rollover.phase}: {decision.message}")
                progressed = True
                if rollover.phase in FINAL:
                    self._event(rollover.phase.value, rollover, decision.message)
        except RolloverError as exc:
            rollover = self._record_error(rollover, str(exc))
            raise
        finally:
            self.store.release(rollover, self.holder)
        return AdvanceResult(rollover, progressed, message, fault=fault)

    def _event(self, event: str, rollover: Rollover, message: str) -> None:
        if self.on_event is not None:
            self.on_event(event, rollover, message)

    def acquire_lease(self, rollover: Rollover) -> bool:
        return self._lease(rollover)

    def _lease(self, rollover: Rollover) -> bool:
        """Take the lease; take it over from a holder on this host whose process is gone
        (a crashed ``advance``), without waiting for it to expire."""
        now = self.clock.monotonic()
        if self.store.acquire(rollover, self.holder, now, self.lease_term):
            return True
        holder = self.store.lease_holder(rollover, now)
        if holder is not None and _holder_dead(holder):
            self.store.break_lease(rollover, holder)
            self.store.append(rollover, self.clock.now(), "lease-broken", {"holder": holder})
            return self.store.acquire(rollover, self.holder, now, self.lease_term)
        return False

    def _save_after(self, rollover: Rollover, decision: Decision, now: datetime) -> Rollover:
        """Store a transition; when an action already changed the world and the record moved
        under us (a lease lost), say so and put it in the history, never "nothing written"."""
        try:
            return self.store.save(apply_decision(rollover, decision, now))
        except ConflictError:
            if decision.action is Action.NONE:
                raise
            what = f"the {decision.action} step was carried out"
            self.store.append(
                rollover,
                now,
                "error",
                {"error": f"{what}, but the rollover changed under this process"},
            )
            raise ConflictError(
                f"{what} (recorded in the history), but the rollover of {rollover.service} "
                "was changed by another process meanwhile; the next advance reconciles with "
                "what DNS and the server hold"
            ) from None

    def _renew(self, rollover: Rollover) -> bool:
        """Extend the lease before each step: a long advance (provider waits, probes) must not
        outlast it and let a second process act on the same rollover."""
        return self.store.acquire(rollover, self.holder, self.clock.monotonic(), self.lease_term)

    @property
    def lease_term(self) -> float:
        """Longer than the longest single call made under it (a provider wait), so that the
        renewal before each call (:meth:`_hold`) always lands inside the lease."""
        return max(LEASE_SECONDS, self.wait_timeout + 60.0)

    def _hold(self, rollover: Rollover) -> None:
        """Renew the lease before a call that may block (a provider change or wait, a probe, a
        DNS observation, a deploy): a step may take minutes, and a second process must never
        find the lease expired and act on the same rollover meanwhile. Lost: stop here."""
        if not self.store.acquire(rollover, self.holder, self.clock.monotonic(), self.lease_term):
            raise ConflictError(
                f"the lease on the rollover of {rollover.service} was lost to another process "
                "while this one worked; stopped before acting further"
            )

    def _save_wait(self, rollover: Rollover, decision: Decision, fault: str | None) -> Rollover:
        """A wait is stored with the fault that holds it (shown by status), or none."""
        if rollover.waiting_until == decision.waiting_until and rollover.error == fault:
            return rollover
        saved = self.store.save(
            replace(rollover, waiting_until=decision.waiting_until, error=fault)
        )
        if fault is not None and rollover.error is None:  # a new episode: once in history
            self.store.append(saved, self.clock.now(), "fault", {"fault": fault})
        return saved

    def _record_error(self, rollover: Rollover, error: str) -> Rollover:
        latest = self.store.current(self.service.name) or rollover
        try:
            saved = self.store.save(replace(latest, error=error))
            self.store.append(saved, self.clock.now(), "error", {"error": error})
            return saved
        except RolloverError:
            return latest

    # -- facts -----------------------------------------------------------------------------
    def _facts(self, r: Rollover) -> Facts:
        phase = r.phase
        if phase == Phase.PUBLISHING:
            return Facts(provider_records=self.provider.read(r.owner).records)
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
                f"{where} presents {_key_line(chain)}"
                for where, chain in seen
                if not _is_staged(r, chain[0]) or not self._authenticated(r.new, chain, now)
            ]
            ok = bool(live.chains) and not behind
            detail = None
            if behind:
                detail = (
                    "; ".join(behind) + f", not the new key (SPKI SHA-256 {r.staged_spki[:16]})"
                )
            return Facts(live_new=ok, cutover_detail=detail)
        return Facts()

    def _authenticated(
        self, records: frozenset[Association], chain: tuple[x509.Certificate, ...], now: datetime
    ) -> bool:
        service = self.service
        return match_chain(
            records, chain, port=service.port, reference_names=[service.host], now=now
        ).ok

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

    # -- actions ---------------------------------------------------------------------------
    def _act(self, r: Rollover, decision: Decision) -> None:
        if decision.action is Action.PUBLISH:
            self._publish(r)
        elif decision.action is Action.DEPLOY:
            self._deploy(r)
        elif decision.action is Action.RETIRE:
            self._retire(r)
        elif decision.action is Action.REPUBLISH:
            self._republish(r)

    def pending_change(self, r: Rollover) -> Change | None:
        """The provider change the current phase needs (publish or retire), or None."""
        if r.phase == Phase.PUBLISHING:
            change = plan_publish(self.provider.read(r.owner), r.published, self.service.ttl)
            return None if change.is_noop else change
        if r.phase == Phase.RETIRING:
            return self._retire_change(r)
        return None

    def before_change(self, r: Rollover, change: Change) -> None:
        if change.added:
            self.ownership.claim(r.owner, change.added, r.service, self.clock.now())

    def after_change(self, r: Rollover, change: Change, receipt: Receipt) -> None:
        """Record a change applied for this rollover (alone or in a batch); wait for it."""
        detail: dict[str, object] = {"provider": receipt.provider, "change_id": receipt.change_id}
        if change.added:
            detail["added"] = sorted(map(str, change.added))
        if change.removed:
            self.ownership.release(r.owner, change.removed)
            detail["removed"] = sorted(map(str, change.removed))
        now = self.clock.now()
        self.ownership.note_served(
            r.owner, {change.before.ttl, change.after.ttl}, now, self._boot()
        )
        self.ownership.seen(r.owner, change.after.records, now, self._boot(), change.after.ttl)
        self.store.append(r, self.clock.now(), "provider-change", detail)
        self._hold(r)
        self.provider.wait(receipt, self.wait_timeout)
        if change.added:
            self.ownership.confirm(r.owner, change.added, self.clock.now(), self._boot())
            mark(self.provider, self.ownership, r.owner)

    def _apply(self, r: Rollover, change: Change, point: str) -> None:
        self.before_change(r, change)
        self._hold(r)
        receipt = self.provider.apply(change)
        self.checkpoint(point)
        self.after_change(r, change, receipt)

    def _publish(self, r: Rollover) -> None:
        change = self.pending_change(r)
        if change is not None:
            self._apply(r, change, "after-publish")

    def _republish(self, r: Rollover) -> None:
        """Put back the new key's associations that vanished (out of band, or an abort that
        raced this advance) while the new key may be served; nothing is removed."""
        needed = r.kept if r.phase == Phase.VERIFYING else r.published
        change = plan_publish(self.provider.read(r.owner), needed, self.service.ttl)
        if not change.is_noop:
            self._apply(r, change, "after-publish")

    def staged(self, r: Rollover) -> Staged:
        """The staged chain and key as recorded at start (an encrypted key's passphrase read
        again from the source recorded then)."""
        staged = load_staged(r.staged_chain, r.staged_key, read_passphrase(r.passphrase_source))
        if staged.spki_sha256 != r.staged_spki:
            raise PreconditionError(
                f"{r.staged_key}: the staged key changed since the rollover "
                "started; its association is not the one published"
            )
        return staged

    def _deployer(self) -> Deployer:
        if self.deployer is not None:
            return self.deployer
        deploy = self.service.deploy
        if deploy is None:
            raise PreconditionError(f"services.{self.service.name}.deploy is not configured")
        return FileDeployer(deploy)

    def _deploy(self, r: Rollover) -> None:
        deployer = self._deployer()
        staged = self.staged(r)
        self._check_deploy_window(r, staged)
        if not deployer.matches(staged.chain, staged.key):
            self._backup(r, deployer)
            self._hold(r)
            deployer.install(staged.chain, staged.key)
            self.checkpoint("after-install")
        self._hold(r)
        deployer.reload()
        self.checkpoint("after-reload")
        self.store.append(
            r,
            self.clock.now(),
            "deploy",
            {"chain": deployer.describe(), "spki_sha256": r.staged_spki},
        )

    def _check_deploy_window(self, r: Rollover, staged: Staged) -> None:
        """The rule, checked on the world before the deploy: the RRset the provider holds now
        (every cache holds it, it aged) authenticates the chains presented now and the new."""
        records = self.provider.read(r.owner).records
        self._hold(r)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); not deploying while it cannot be seen"
            )
        now = self.clock.now()
        window = Window(
            "deploying", (records,), (*live.chains, presented_order(staged), *self.steady())
        )
        broken = violations([window], self.context(now))
        if broken:
            raise PreconditionError(f"not deploying: a sender would fail: {broken[0]}")

    def _backup(self, r: Rollover, deployer: Deployer) -> None:
        directory = self._backup_dir(r)
        if (directory / "chain.pem").exists():
            return  # the first backup is the previous deployment; keep it
        chain, key = deployer.deployed()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if chain is not None and key is not None:
            write_atomic(directory / "key.pem", key)
            write_atomic(directory / "chain.pem", chain)

    def _backup_dir(self, r: Rollover) -> Path:
        return Path(self.state_dir) / "backups" / f"{r.service}-{r.id}"

    def _retire_change(self, r: Rollover) -> Change | None:
        current = self.provider.read(r.owner)
        if not (r.new <= current.records or r.kept <= current.records):
            return None  # the guard: the decision republishes first
        self._hold(r)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); the old associations stay until it can be"
            )
        now = self.clock.now()
        presented = (*live.chains, *self.steady())
        # Old and bridging records still matching a presented chain stay; the new key's
        # transitional ones go once the final set carries the new key.
        retiring = {
            a
            for a in r.retiring & current.records
            if a in r.new or not any(self._authenticated(frozenset({a}), c, now) for c in presented)
        }
        after = (current.records - retiring) | r.kept
        if after == current.records:
            return None
        change = Change(current, TlsaRRset(r.owner, current.ttl or self.service.ttl, after))
        check_live(change, live, port=self.service.port, host=self.service.host, now=now)
        window = Window("retiring", (current.records, after), presented)
        broken = violations([window], self.context(now))
        if broken:
            raise PreconditionError(f"not retiring: a sender would fail: {broken[0]}")
        return change

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

    def _retire(self, r: Rollover) -> None:
        change = self._retire_change(r)
        if change is not None:
            self._apply(r, change, "after-retire")

    # -- abort and rollback ----------------------------------------------------------------
    def _claim(self, *, allow_failed: bool = False) -> Rollover:
        """The current rollover with its lease held: never two processes on one rollover."""
        r = self._current_active(allow_failed=allow_failed)
        if not self._lease(r):
            raise ConflictError(
                f"another process is advancing the rollover of {self.service.name}; "
                "nothing was changed: try again when it is done"
            )
        return self._current_active(allow_failed=allow_failed)

    def _presenting_new(self, r: Rollover) -> str | None:
        """Which address presents the staged key now (a probe that fails is a refusal too:
        not knowing is not permission)."""
        self._hold(r)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); not withdrawing the new associations "
                "while it cannot be seen"
            )
        seen = live.seen or tuple(("the server", c) for c in live.chains)
        return next((where for where, c in seen if spki_sha256(c[0]) == r.staged_spki), None)

    def _deployed_new(self, r: Rollover) -> bool:
        """Whether the new key is (or may be) installed where the server reads it."""
        if r.deployed_at is not None:
            return True
        try:
            chain, _key = self._deployer().deployed()
        except RolloverError:
            return True
        if chain is None:
            return False
        from rollover.core.material import parse_material

        try:
            certificates = parse_material("deployed chain", chain).certificates
        except RolloverError:
            return True
        return any(spki_sha256(c) == r.staged_spki for c in certificates)

    def abort(self) -> Rollover:
        r = self._claim()
        try:
            if r.phase not in (*BEFORE_DEPLOY, Phase.DEPLOYING) or self._deployed_new(r):
                raise PreconditionError(
                    f"the new key may already be deployed ({r.phase}); abort "
                    "is only possible before the deploy step: use rollover rollback"
                )
            presenting = self._presenting_new(r)
            if presenting:
                raise PreconditionError(
                    f"{presenting} presents the new key already; withdrawing its associations "
                    "would fail senders: use rollover rollback"
                )
            # The compare-and-swap first: an advance that raced us finds the rollover over.
            ended = self._end(r, Phase.ABORTED, "aborted before deploy; withdrawing the new")
            self._withdraw_new(ended)
            self._event(Phase.ABORTED.value, ended, "aborted before deploy")
            return ended
        finally:
            self.store.release(r, self.holder)

    def resume(self) -> Rollover:
        """Take a ``failed`` rollover back to the phase it failed in, once a person fixed the
        cause; the next advance checks that phase's guards again against the world."""
        r = self._claim(allow_failed=True)
        try:
            if r.phase != Phase.FAILED:
                raise PreconditionError(
                    f"the rollover of {self.service.name} is {r.phase}, not failed: "
                    "rollover advance carries it on"
                )
            phase = Phase(r.failed_in or Phase.CUTTING_OVER.value)
            now = self.clock.now()
            updates: dict[str, object] = {}
            if phase == Phase.CUTTING_OVER:
                updates["deployed_at"] = now  # the cut-over timeout counts from the resume
            resumed = self.store.save(
                replace(
                    r,
                    phase=phase,
                    since=now,
                    finished_at=None,
                    waiting_until=now,
                    error=None,
                    failed_in=None,
                    **updates,  # type: ignore[arg-type]
                )
            )
            self.store.append(
                resumed, now, "resumed", {"message": f"resumed in {phase} by a person"}
            )
            self.out(f"{self.service.name}: {phase}: resumed; the guards are checked again")
            return resumed
        finally:
            self.store.release(r, self.holder)

    def rollback(self) -> Rollover:
        r = self._claim(allow_failed=True)
        try:
            if r.phase in BEFORE_DEPLOY or not self._deployed_new(r):
                raise PreconditionError("nothing is deployed yet: use rollover abort")
            if r.phase not in (Phase.CUTTING_OVER, Phase.FAILED, Phase.DEPLOYING):
                raise PreconditionError(
                    f"too late to roll back ({r.phase}): the old associations "
                    "are being or have been retired"
                )
            directory = self._backup_dir(r)
            try:
                chain = (directory / "chain.pem").read_bytes()
                key = (directory / "key.pem").read_bytes()
            except OSError:
                raise PreconditionError(
                    f"no backup of the previous deployment in {directory}"
                ) from None
            self._require_old_published(r, chain)
            ended = self._end(
                replace(r, rolled_back=True), Phase.ABORTED, "rolling back to the previous key"
            )
            deployer = self._deployer()
            deployer.install(chain, key)
            deployer.reload()
            self.store.append(ended, self.clock.now(), "deploy", {"rolled_back": True})
            presenting = self._presenting_new(ended)
            if presenting:
                message = (
                    f"rolled back, but {presenting} still presents the new key: its "
                    "associations stay published; withdraw them (rollover withdraw) once "
                    "every address presents the previous key"
                )
                self._record_error(ended, message)
                raise PreconditionError(message)
            self._withdraw_new(ended)
            self._event(Phase.ABORTED.value, ended, "rolled back to the previous chain and key")
            return ended
        finally:
            self.store.release(r, self.holder)

    def _require_old_published(self, r: Rollover, chain_pem: bytes) -> None:
        chain = _leaf_first("backup chain", chain_pem)
        current = self.provider.read(r.owner).records
        if not chain or not self._authenticated(current, chain, self.clock.now()):
            raise PreconditionError(
                "the old associations are no longer published: redeploying "
                "the previous key would break delivery"
            )

    def _current_active(self, *, allow_failed: bool = False) -> Rollover:
        r = self.store.current(self.service.name)
        if r is None or (r.phase in FINAL and not (allow_failed and r.phase == Phase.FAILED)):
            raise PreconditionError(f"service {self.service.name} has no rollover in progress")
        return r

    def _withdraw_new(self, r: Rollover) -> None:
        """Withdraw what this rollover added (the new key's and the bridging associations),
        recorded in the history; the starting point's records stay."""
        current = self.provider.read(r.owner)
        ours = self.ownership.owned(r.owner)
        removing = (r.published - r.old - r.before) & current.records & ours
        if not removing:
            return
        remaining = current.records - removing
        change = Change(current, TlsaRRset(r.owner, current.ttl if remaining else None, remaining))
        try:
            receipt = self.provider.apply(change)
        except RolloverError as exc:
            self._record_error(r, f"withdrawing the new associations failed: {exc}")
            raise
        self.after_change(r, change, receipt)

    def _end(self, r: Rollover, phase: Phase, message: str) -> Rollover:
        now = self.clock.now()
        saved = self.store.save(
            replace(r, phase=phase, since=now, finished_at=now, waiting_until=None, error=None)
        )
        self.store.append(saved, now, phase.value, {"message": message})
        self.out(f"{self.service.name}: {phase}: {message}")
        return saved


def _leaf_first(label: str, chain_pem: bytes) -> tuple[x509.Certificate, ...]:
    """A PEM bundle as a server presents it, leaf first (empty when it holds none)."""
    from rollover.core.chain import build_chain
    from rollover.core.material import parse_material

    certificates = parse_material(label, chain_pem).certificates
    if not certificates:
        return ()
    return tuple(certificates[i] for i in build_chain(label, certificates).path)


def _der_sha256(certificate: x509.Certificate) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def _is_staged(r: Rollover, leaf: x509.Certificate) -> bool:
    """The staged leaf itself (the same key under another certificate, a renewal with the key
    reused or a new CA, is not the new chain); the key alone for rollovers from before."""
    if r.staged_cert is not None:
        return _der_sha256(leaf) == r.staged_cert
    return spki_sha256(leaf) == r.staged_spki


def _key_line(chain: tuple[x509.Certificate, ...]) -> str:
    leaf = chain[0]
    return (
        f"{describe_key(leaf)} key {spki_sha256(leaf)[:16]} in certificate "
        f"{_der_sha256(leaf)[:16]} ({leaf.subject.rfc4514_string()})"
    )


def _holder_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not (pid_text.isascii() and pid_text.isdigit()):
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


__all__ = ["AdvanceResult", "Engine"]
