"""The rollover engine: gathers the facts each phase needs, executes actions, stores results.

Every step is idempotent and resumable. The engine never trusts its own record over the world:
each advance reads the provider, DNS and the live server again, so a process killed between a
provider change and the state write (or between deploy and reload) is picked up where things
really stand, with no duplicate or lost change. A lease per rollover keeps two processes from
acting on the same rollover at once; a crashed holder's lease expires.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from rollover.core.phases import (
    FINAL,
    Action,
    Phase,
    Rollover,
    decide,
    planned_seconds,
    signatures_run_out,
)
from rollover.core.promise import plan_rollover
from rollover.engine.associations import service_associations
from rollover.engine.base import der_sha256
from rollover.engine.continuity import follow
from rollover.engine.recovery import Recovery
from rollover.engine.staging import Staged, presented_order
from rollover.errors import PreconditionError, RolloverError
from rollover.ports import HistoryEvent

CUTOVER_HELD_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class AdvanceResult:
    rollover: Rollover
    progressed: bool
    message: str
    acted: bool = True  # False when another process holds the lease
    fault: str | None = None  # something broken held it at this advance and the one before
    deferred: bool = False  # stopped before a provider change, left to its zone's batch


class Engine(Recovery):
    """The engine of one service: start (plan, check, publish) and advance (decide, act,
    store), the sections below it holding the facts, actions, leases and recovery."""

    def plan(
        self,
        staged: Staged,
        *,
        allow_insecure: bool,
        passphrase_source: str | None = None,
        allow_expiring: bool = False,
    ) -> Rollover:
        """Compute the rollover and check that it keeps every sender working; nothing is
        changed. A plan that cannot keep the rule is refused with the reason."""
        service = self.service
        now = self.clock.now()
        configured, warnings = service_associations(service, staged.material, now)
        for line in dict.fromkeys(warnings):
            self.out(f"{service.name}: warning: {line}")
        for other in self.serialized_with:
            running = self.store.current(other)
            if running is not None and running.phase not in FINAL:
                raise PreconditionError(
                    f"{other} is rolling over the same RRset ({running.phase}): the members "
                    "of a key-per-member pool roll one at a time; start this one after it"
                )
        observation = self.observer.observe(service.owner)
        self._require_secure(observation, allow_insecure)
        self._require_signing(service.owner, allow_insecure)
        expiring = signatures_run_out(
            [a.rrsig_expiration for a in observation.authoritative if a.rrsig_expiration],
            now,
            planned_seconds(
                observation.cache_horizon,
                self.published_ttl(service.owner),
                self.safety_factor,
                self.cutover_timeout.total_seconds(),
            ),
        )
        if expiring is not None and not (allow_expiring or allow_insecure):
            raise PreconditionError(
                f"{expiring}; fix the signing first (or --allow-expiring-signatures)"
            )
        current = self.provider.read(service.owner)
        last = self.ownership.last_rrset(service.owner)
        previous = None if last is None else last[0]
        if last is not None and last[0] != current.records:
            # Changed since the tool last saw it, at an instant it cannot know: caches may
            # hold what it saw then for its TTL from now on.
            self.ownership.note_served(service.owner, {last[1]}, now, self._boot())
        note = follow(self.provider, self.ownership, service.owner, now, self._boot())
        if note is not None:
            self.out(f"{service.name}: plan: {note}")
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
            self.out(f"{service.name}: plan: {note}")
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
            staged_cert=der_sha256(presented_order(staged)[0]),
            before=current.records,
            passphrase_source=passphrase_source if staged.encrypted else None,
            started_at=now,
            since=now,
            safety_factor=max(1.0, self.safety_factor),
            horizon_before=max(observation.cache_horizon, horizon_known),
            allow_insecure=allow_insecure,
        )

    def start(
        self,
        staged: Staged,
        *,
        allow_insecure: bool = False,
        passphrase_source: str | None = None,
        allow_expiring: bool = False,
    ) -> Rollover:
        planned = self.plan(
            staged,
            allow_insecure=allow_insecure,
            passphrase_source=passphrase_source,
            allow_expiring=allow_expiring,
        )
        started = HistoryEvent(
            self.clock.now(),
            "start",
            {
                "old": sorted(map(str, planned.old)),
                "new": sorted(map(str, planned.new)),
                "bridge": sorted(map(str, planned.bridge)),
                "final": sorted(map(str, planned.kept)),
                "notes": list(planned.notes),
                "staged_spki_sha256": planned.staged_spki,
                "horizon_before": planned.horizon_before,
            },
        )
        return self.store.create(planned, [started])

    # -- advance ---------------------------------------------------------------------------
    def advance(self, *, defer_changes: bool = False) -> AdvanceResult:
        """Take every step whose guard holds now; stop at the first wait. ``defer_changes``
        (``advance --all``): stop before a publish or retire instead, so that the tick sends
        the changes of one zone together (:mod:`rollover.engine.batching`)."""
        rollover = self.store.current(self.service.name)
        if rollover is None:
            raise PreconditionError(
                f"service {self.service.name} has no rollover (start one with rollover start)"
            )
        if rollover.phase in FINAL:
            return AdvanceResult(rollover, False, f"rollover {rollover.phase}")
        if self._ageing_wait(rollover):
            # The ageing guard is the clock alone: until its deadline an advance decides
            # nothing, so it takes no lease and writes nothing (a fleet's tick then costs a
            # waiting service one indexed read).
            return AdvanceResult(rollover, False, "waiting for caches to drop the old RRset")
        if not self._lease(rollover):
            return AdvanceResult(
                rollover, False, "another process is advancing this rollover", acted=False
            )
        progressed = False
        message = ""
        fault: str | None = None
        deferred = False
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
                if defer_changes and decision.action in (Action.PUBLISH, Action.RETIRE):
                    deferred = True
                    message = f"{decision.message} (sent with its zone's batch)"
                    break
                if decision.action is not Action.NONE:
                    decision = self._act_or_wait(rollover, decision, now)
                    message = decision.message
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
                rollover = self._transition(rollover, decision, now)
                progressed = True
        except RolloverError as exc:
            rollover = self._record_error(rollover, str(exc))
            raise
        finally:
            self.release_lease(rollover)
        return AdvanceResult(rollover, progressed, message, fault=fault, deferred=deferred)

    def _ageing_wait(self, rollover: Rollover) -> bool:
        """Ageing, its deadline still ahead on the wall clock, and no fault held: what
        :func:`~rollover.core.phases.decide` would answer is known without a look at DNS. (A
        wall clock stepped back only makes the wait longer; one stepped forward reaches the
        deadline and the full advance checks the boot's own clock.)"""
        until = rollover.waiting_until
        return (
            rollover.phase == Phase.AGING
            and until is not None
            and rollover.error is None
            and self.clock.now() < until
        )


__all__ = ["AdvanceResult", "Engine"]
