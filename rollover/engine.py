"""The rollover engine: gathers the facts each phase needs, executes actions, stores results.

Every step is idempotent and resumable. The engine never trusts its own record over the world:
each advance reads the provider, DNS and the live server again, so a process killed between a
provider change and the state write (or between deploy and reload) is picked up where things
really stand, with no duplicate or lost change. A lease per rollover keeps two processes from
acting on the same rollover at once; a crashed holder's lease expires.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from providers.base import Provider, Receipt
from rollover.association import Association
from rollover.clock import Clock
from rollover.config import ServiceConfig
from rollover.deploy import DeployError, FileDeployer, write_file
from rollover.errors import InputError, PreconditionError, RolloverError
from rollover.faults import crash_point
from rollover.matching import match_chain
from rollover.observation import DnssecState, Observation, resolver_lag
from rollover.observer import DnsObserver
from rollover.phases import (
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
from rollover.plan import Change, TlsaRRset, plan_publish
from rollover.provider_view import ProviderObserver
from rollover.publishing import LiveChains, check_live, service_associations
from rollover.sources import Material, parse_material, read_source, same_key, spki_der
from state.ownership import OwnershipStore
from state.store import StateStore

LEASE_SECONDS = 120.0
Output = Callable[[str], None]


@dataclass(frozen=True)
class Staged:
    chain_path: str
    key_path: str
    chain: bytes
    key: bytes
    material: Material
    spki_sha256: str


def load_staged(chain_path: str, key_path: str, passphrase: bytes | None) -> Staged:
    """The staged chain and key; refused unless the key belongs to the chain's leaf."""
    from rollover.chain import build_chain

    chain_bytes, key_bytes = read_source(chain_path), read_source(key_path)
    material = parse_material(chain_path, chain_bytes)
    if not material.certificates:
        raise InputError(f"{chain_path}: holds no certificate")
    key = parse_material(key_path, key_bytes, passphrase)
    if key.key_kind != "private key":
        raise InputError(f"{key_path}: not a private key")
    leaf = build_chain(chain_path, material.certificates).leaf
    if key.public_key is None or not same_key(leaf, key.public_key):
        raise InputError(
            f"{key_path}: this key does not belong to the leaf certificate of "
            f"{chain_path}; refusing to stage them"
        )
    return Staged(
        chain_path,
        key_path,
        chain_bytes,
        key_bytes,
        material,
        hashlib.sha256(spki_der(leaf)).hexdigest(),
    )


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
        ownership: OwnershipStore,
        observer: DnsObserver | ProviderObserver,
        live: Callable[[], LiveChains],
        clock: Clock,
        state_dir: str,
        safety_factor: float = 2.0,
        out: Output = lambda _line: None,
        cutover_timeout: timedelta = CUTOVER_TIMEOUT,
        wait_timeout: float = 120.0,
        on_event: Callable[[str, Rollover, str], None] | None = None,
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
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- start -----------------------------------------------------------------------------
    def plan(self, staged: Staged, *, allow_insecure: bool) -> Rollover:
        """Compute the rollover and check the starting point is sound; nothing is changed."""
        service = self.service
        now = self.clock.now()
        new, warnings = service_associations(service, staged.material, now)
        for line in dict.fromkeys(warnings):
            self.out(f"warning: {line}")
        observation = self.observer.observe(service.owner)
        self._require_secure(observation, allow_insecure)
        self._require_signing(service.owner, allow_insecure)
        current = self.provider.read(service.owner)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); the starting "
                "point must be known before a rollover"
            )
        old: set[Association] = set()
        for chain in live.chains:
            matching = {a for a in current.records if _matches(a, chain, service, now)}
            if current.exists and not matching:
                raise PreconditionError(
                    f"{service.owner}: the server presents {chain[0].subject.rfc4514_string()}, "
                    "which no published TLSA record matches; fix that before rolling over"
                )
            old |= matching
        phase = Phase.PUBLISHING
        if self._aged_already(new, current.records, observation.cache_horizon, now):
            phase = Phase.DEPLOYING  # "current + next": the wait happened ahead of time
        return Rollover(
            service=service.name,
            owner=service.owner,
            phase=phase,
            old=frozenset(old),
            new=new,
            staged_chain=staged.chain_path,
            staged_key=staged.key_path,
            staged_spki=staged.spki_sha256,
            started_at=now,
            since=now,
            safety_factor=max(1.0, self.safety_factor),
            horizon_before=observation.cache_horizon,
            allow_insecure=allow_insecure,
        )

    def _aged_already(
        self,
        new: frozenset[Association],
        published: frozenset[Association],
        horizon: int,
        now: datetime,
    ) -> bool:
        """Every new association was published (confirmed by the provider) long enough ago."""
        if not new <= published:
            return False
        confirmed = self.ownership.published_at(self.service.owner)
        wait = timedelta(seconds=wait_seconds(horizon, self.service.ttl, self.safety_factor))
        return all((at := confirmed.get(a)) is not None and at + wait <= now for a in new)

    def _require_signing(self, owner: str, allow_insecure: bool) -> None:
        """Providers that can say whether they sign the zone (Route 53's GetDNSSEC) are asked."""
        signing = getattr(self.provider, "dnssec_signing", None)
        if signing is None or allow_insecure:
            return
        if not signing(owner):
            raise PreconditionError(
                f"{self.provider.name} reports that it does not sign the "
                f"zone of {owner} (DNSSEC); TLSA records would protect "
                "nothing (use --allow-insecure to roll over anyway)"
            )

    def _require_secure(self, observation: Observation, allow_insecure: bool) -> None:
        if observation.error is not None:
            raise PreconditionError(f"cannot observe DNS: {observation.error}")
        if not observation.resolvers and getattr(self.provider, "dnssec_signing", None):
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

    def start(self, staged: Staged, *, allow_insecure: bool = False) -> Rollover:
        rollover = self.store.create(self.plan(staged, allow_insecure=allow_insecure))
        self.store.append(
            rollover,
            self.clock.now(),
            "start",
            {
                "old": sorted(map(str, rollover.old)),
                "new": sorted(map(str, rollover.new)),
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
                facts = self._facts(rollover)
                now = self.clock.now()
                decision = decide(rollover, facts, now, self.cutover_timeout)
                message = decision.message
                if decision.action is not Action.NONE:
                    self._act(rollover, decision)
                if decision.phase == rollover.phase and decision.action is Action.NONE:
                    # A fault is reported once something held the rollover at two advances in
                    # a row (its wording may differ: resolvers vary their EDE text): a single
                    # timeout under load is only recorded (status shows it), not alarmed on.
                    if facts.fault is not None and rollover.error is not None:
                        fault = facts.fault
                    rollover = self._save_wait(rollover, decision, facts.fault)
                    break
                previous = rollover.phase
                rollover = self.store.save(apply_decision(rollover, decision, now))
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
        if self.store.acquire(rollover, self.holder, now, LEASE_SECONDS):
            return True
        holder = self.store.lease_holder(rollover, now)
        if holder is not None and _holder_dead(holder):
            self.store.break_lease(rollover, holder)
            self.store.append(rollover, self.clock.now(), "lease-broken", {"holder": holder})
            return self.store.acquire(rollover, self.holder, now, LEASE_SECONDS)
        return False

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
        if phase in (Phase.PROPAGATING, Phase.DEPLOYING, Phase.VERIFYING):
            records = self.provider.read(r.owner).records
            observation = self.observer.observe(r.owner)
            final = phase == Phase.VERIFYING
            served = self._served(r, observation, final=final)
            return replace(served, provider_records=records, horizon=observation.cache_horizon)
        if phase == Phase.CUTTING_OVER:
            crash_point("during-cutover")
            live = self.live()
            if live.error is not None:
                return Facts(live_new=False, live_error=live.error, fault=live.error)
            now = self.clock.now()
            ok = bool(live.chains) and all(
                match_chain(
                    r.new,
                    chain,
                    port=self.service.port,
                    reference_names=[self.service.host],
                    now=now,
                ).ok
                for chain in live.chains
            )
            return Facts(live_new=ok)
        return Facts()

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
        gone = r.old - r.new

        def good(records: frozenset[Association]) -> bool:
            return r.new <= records and not (final and gone & records)

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

    def pending_change(self, r: Rollover) -> Change | None:
        """The provider change the current phase needs (publish or retire), or None."""
        if r.phase == Phase.PUBLISHING:
            change = plan_publish(self.provider.read(r.owner), r.new, self.service.ttl)
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
        self.store.append(r, self.clock.now(), "provider-change", detail)
        self.provider.wait(receipt, self.wait_timeout)
        if change.added:
            self.ownership.confirm(r.owner, change.added, self.clock.now())

    def _publish(self, r: Rollover) -> None:
        change = self.pending_change(r)
        if change is None:
            return
        self.before_change(r, change)
        receipt = self.provider.apply(change)
        crash_point("after-publish")
        self.after_change(r, change, receipt)

    def _deploy(self, r: Rollover) -> None:
        deploy = self.service.deploy
        if deploy is None:
            raise PreconditionError(f"services.{r.service}.deploy is not configured")
        staged = load_staged(r.staged_chain, r.staged_key, None)
        if staged.spki_sha256 != r.staged_spki:
            raise PreconditionError(
                f"{r.staged_key}: the staged key changed since the rollover "
                "started; its association is not the one published"
            )
        deployer = FileDeployer(deploy)
        if not deployer.matches(staged.chain, staged.key):
            self._backup(r, deployer)
            deployer.install(staged.chain, staged.key)
            crash_point("after-install")
        deployer.reload()
        crash_point("after-reload")
        self.store.append(
            r, self.clock.now(), "deploy", {"chain": deploy.chain, "spki_sha256": r.staged_spki}
        )

    def _backup(self, r: Rollover, deployer: FileDeployer) -> None:
        directory = self._backup_dir(r)
        if (directory / "chain.pem").exists():
            return  # the first backup is the previous deployment; keep it
        chain, key = deployer.deployed()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if chain is not None and key is not None:
            write_file(str(directory / "key.pem"), key, private=True)
            write_file(str(directory / "chain.pem"), chain, private=True)

    def _backup_dir(self, r: Rollover) -> Path:
        return Path(self.state_dir) / "backups" / f"{r.service}-{r.id}"

    def _retire_change(self, r: Rollover) -> Change | None:
        current = self.provider.read(r.owner)
        live = self.live()
        if live.error is not None:
            raise PreconditionError(
                f"cannot probe the server ({live.error}); the old associations stay until it can be"
            )
        now = self.clock.now()
        retiring = {
            a
            for a in (r.old - r.new) & current.records
            if not any(_matches(a, chain, self.service, now) for chain in live.chains)
        }
        if not retiring:
            return None
        change = Change(current, TlsaRRset(r.owner, current.ttl, current.records - retiring))
        check_live(change, live, port=self.service.port, host=self.service.host, now=now)
        return change

    def _reconcile_retired(self, r: Rollover, records: frozenset[Association]) -> None:
        """A removal the provider applied but whose reply never came back (a dropped connection,
        a kill between the call and its record) is recorded once it is seen: the history says
        so and the associations stop counting as ours."""
        vanished = (self.ownership.owned(r.owner) & (r.old - r.new)) - records
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
        if change is None:
            return
        receipt = self.provider.apply(change)
        crash_point("after-retire")
        self.after_change(r, change, receipt)

    # -- abort and rollback ----------------------------------------------------------------
    def abort(self) -> Rollover:
        r = self._current_active()
        if r.phase not in BEFORE_DEPLOY:
            raise PreconditionError(
                f"the new key may already be deployed ({r.phase}); abort "
                "is only possible before the deploy step: use rollover "
                "rollback"
            )
        self._withdraw_new(r)
        return self._finish(r, Phase.ABORTED, "aborted before deploy; new associations withdrawn")

    def rollback(self) -> Rollover:
        r = self._current_active(allow_failed=True)
        if r.phase in BEFORE_DEPLOY:
            raise PreconditionError("nothing is deployed yet: use rollover abort")
        if r.phase not in (Phase.CUTTING_OVER, Phase.FAILED, Phase.DEPLOYING):
            raise PreconditionError(
                f"too late to roll back ({r.phase}): the old associations "
                "are being or have been retired"
            )
        current = self.provider.read(r.owner)
        if r.old and not (r.old - r.new) & current.records:
            raise PreconditionError(
                "the old associations are no longer published: redeploying "
                "the previous key would break delivery"
            )
        directory = self._backup_dir(r)
        try:
            chain = (directory / "chain.pem").read_bytes()
            key = (directory / "key.pem").read_bytes()
        except OSError:
            raise PreconditionError(
                f"no backup of the previous deployment in {directory}"
            ) from None
        deploy = self.service.deploy
        assert deploy is not None
        deployer = FileDeployer(deploy)
        deployer.install(chain, key)
        deployer.reload()
        r = replace(r, rolled_back=True)
        return self._finish(r, Phase.ABORTED, "rolled back to the previous chain and key")

    def _current_active(self, *, allow_failed: bool = False) -> Rollover:
        r = self.store.current(self.service.name)
        if r is None or (r.phase in FINAL and not (allow_failed and r.phase == Phase.FAILED)):
            raise PreconditionError(f"service {self.service.name} has no rollover in progress")
        return r

    def _withdraw_new(self, r: Rollover) -> None:
        current = self.provider.read(r.owner)
        ours = self.ownership.owned(r.owner)
        removing = (r.new - r.old) & current.records & ours
        if not removing:
            return
        change = Change(
            current,
            TlsaRRset(
                r.owner,
                current.ttl if current.records - removing else None,
                current.records - removing,
            ),
        )
        receipt = self.provider.apply(change)
        self.ownership.release(r.owner, frozenset(removing))
        self.provider.wait(receipt, self.wait_timeout)

    def _finish(self, r: Rollover, phase: Phase, message: str) -> Rollover:
        now = self.clock.now()
        if r.rolled_back:
            self._withdraw_new(r)
        saved = self.store.save(
            replace(r, phase=phase, since=now, finished_at=now, waiting_until=None, error=None)
        )
        self.store.append(saved, now, phase.value, {"message": message})
        self._event(phase.value, saved, message)
        self.out(f"{self.service.name}: {phase}: {message}")
        return saved


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


def _matches(
    association: Association,
    chain: tuple[x509.Certificate, ...],
    service: ServiceConfig,
    now: datetime,
) -> bool:
    return match_chain(
        frozenset({association}), chain, port=service.port, reference_names=[service.host], now=now
    ).ok


__all__ = ["AdvanceResult", "DeployError", "Engine", "Staged", "load_staged"]
