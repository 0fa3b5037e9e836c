"""The rollover state machine: phases, the persistent record, and the transition table. Pure.

RFC 6698 appendix A.4, RFC 7671 section 8, RFC 7672 section 3.1: publish the new association
beside the old, wait until every authoritative server serves it and every cache may have dropped
the old RRset, deploy, verify the server presents the new key, retire the old association.

:func:`decide` is the whole table: (rollover, facts observed now, now) -> what to do. The engine
gathers the facts a phase needs, executes the action, and stores the result; nothing here reads a
clock, a socket or a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from rollover.core.association import Association


def retiring_set(
    old: frozenset[Association],
    bridge: frozenset[Association],
    new: frozenset[Association],
    final: frozenset[Association],
) -> frozenset[Association]:
    """What the retire step removes: the old and the bridging associations and the new key's
    transitional ones, never one of the final set."""
    return (old | bridge | (new - final)) - final


class Phase(StrEnum):
    PUBLISHING = "publishing"  # add the new associations beside the old ones
    PROPAGATING = "propagating"  # wait: every authoritative server and resolver serves them
    AGING = "aging"  # wait: safety_factor x the largest TTL any cache may hold
    DEPLOYING = "deploying"  # install the new chain and key, reload the server
    CUTTING_OVER = "cutting_over"  # wait: every address presents the new key
    RETIRING = "retiring"  # remove the old associations
    VERIFYING = "verifying"  # the final RRset everywhere
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


FINAL = frozenset({Phase.DONE, Phase.ABORTED, Phase.FAILED})
BEFORE_DEPLOY = frozenset({Phase.PUBLISHING, Phase.PROPAGATING, Phase.AGING})


@dataclass(frozen=True)
class Rollover:
    """Everything the state store keeps about one rollover of one service."""

    service: str
    owner: str
    phase: Phase
    old: frozenset[Association]  # matched the chain presented when the rollover began
    new: frozenset[Association]  # of the staged chain, one per configured parameter set
    staged_chain: str  # path of the staged full chain
    staged_key: str  # path of the staged private key (never copied, never logged)
    staged_spki: str  # SHA-256 of the staged SPKI: what must be deployed
    started_at: datetime
    since: datetime  # when the current phase began
    safety_factor: float = 2.0
    horizon_before: int = 0  # the cache horizon observed before publishing
    horizon: int = 0
    allow_insecure: bool = False
    published_at: datetime | None = None
    propagated_at: datetime | None = None
    waiting_until: datetime | None = None
    deployed_at: datetime | None = None
    cut_over_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    failed_in: str | None = None
    rolled_back: bool = False
    bridge: frozenset[Association] = frozenset()  # the current key's, for the transition
    final: frozenset[Association] = frozenset()  # the new key's after retiring (empty: ``new``)
    passphrase_source: str | None = None  # where the staged key's passphrase comes from
    aging_boot_id: str | None = None  # the boot the ageing deadline was measured on...
    aging_until_boottime: float | None = None  # ...and the deadline on its non-jumping clock
    notes: tuple[str, ...] = ()  # what the plan does and why (RFC 7671 section 8)
    before: frozenset[Association] = frozenset()  # the RRset the rollover began at
    staged_cert: str | None = None  # SHA-256 of the staged leaf certificate (DER)
    id: int | None = None
    version: int = 0

    @property
    def published(self) -> frozenset[Association]:
        """What the publish step adds: the new key's and the bridging associations."""
        return self.new | self.bridge

    @property
    def kept(self) -> frozenset[Association]:
        """The new key's associations that stay after the retire step."""
        return self.final or self.new

    @property
    def retiring(self) -> frozenset[Association]:
        return retiring_set(self.old, self.bridge, self.new, self.kept)


@dataclass(frozen=True)
class Facts:
    """What the engine observed for the phase at hand; None means "not asked"."""

    provider_records: frozenset[Association] | None = None
    authoritative_ok: bool | None = None  # every server answers with the wanted RRset
    resolvers_ok: bool | None = None  # every resolver returns it, secure (or insecure allowed)
    horizon: int | None = None  # cache horizon of what the servers serve now
    files_deployed: bool | None = None  # the deployed files equal the staged ones
    live_new: bool | None = None  # every chain presented on every address matches ``new``
    live_error: str | None = None
    detail: str = ""
    fault: str | None = None  # something broken holds the phase (reported, not just waited on)
    boot_id: str | None = None  # this boot, and its clock that does not jump (CLOCK_BOOTTIME)
    boottime: float | None = None
    cutover_detail: str | None = None  # which address presents which key


class Action(StrEnum):
    NONE = "none"
    PUBLISH = "publish"
    DEPLOY = "deploy"  # install files (if needed) and reload
    RETIRE = "retire"
    REPUBLISH = "republish"  # the new associations vanished after the deploy: put them back


@dataclass(frozen=True)
class Decision:
    """The next phase (same phase = waiting), what to do first, and until when to wait."""

    phase: Phase
    action: Action = Action.NONE
    waiting_until: datetime | None = None
    message: str = ""
    updates: dict[str, object] = field(default_factory=dict)


def wait_seconds(horizon_before: int, horizon_after: int, safety_factor: float) -> float:
    """RFC 7671 section 8.1: at least two TTLs (``safety_factor``, never below 1) of the largest
    TTL any cache may hold for the old or the new answer."""
    return max(1.0, safety_factor) * max(horizon_before, horizon_after, 0)


def planned_seconds(
    horizon_before: int, ttl: int, safety_factor: float, cutover_timeout: float = 300.0
) -> float:
    """How long a rollover is planned to take, at most, for the signature check at start:
    twice the ageing wait, propagation and the deploy (an hour here), and the cut-over
    beyond its first half hour (the service's ``cutover_timeout``)."""
    wait = wait_seconds(horizon_before, ttl, safety_factor)
    return 2 * wait + 3600.0 + max(0.0, cutover_timeout - 1800.0)


def signatures_run_out(expirations: list[datetime], now: datetime, planned: float) -> str | None:
    """Why the rollover would outlast the TLSA RRset's current signatures, or None.

    A zone whose signer keeps re-signing never gets here: signers refresh a signature well
    before it expires (BIND re-signs when a quarter of ``sig-validity-interval`` is left,
    days ahead; Knot and PowerDNS likewise), far more than a rollover of a few TTLs lasts.
    So a signature with less validity left than the rollover's planned length is one nothing
    is refreshing: every DANE sender's validation of the RRset, old and new associations
    alike, fails when it runs out, in the middle of the rollover."""
    if not expirations:
        return None
    earliest = min(expirations)
    left = (earliest - now).total_seconds()
    if left >= planned:
        return None
    return (
        f"the TLSA RRset's signatures expire at {earliest:%Y-%m-%dT%H:%M:%SZ} "
        f"({max(0.0, left) / 3600:.1f} h left), before this rollover's planned end "
        f"({planned / 3600:.1f} h): the zone is not being re-signed in time"
    )


CUTOVER_TIMEOUT = timedelta(minutes=5)
RETRY = timedelta(seconds=1)


def decide(
    r: Rollover, facts: Facts, now: datetime, cutover_timeout: timedelta = CUTOVER_TIMEOUT
) -> Decision:
    """The transition table."""
    if r.phase in FINAL:
        return Decision(r.phase, message=f"rollover {r.phase}")
    handler = _TABLE[r.phase]
    return handler(r, facts, now, cutover_timeout)


def _publishing(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    if facts.provider_records is not None and r.published <= facts.provider_records:
        return Decision(
            Phase.PROPAGATING,
            waiting_until=now + RETRY,
            message="new associations published; waiting for every server",
            updates={"published_at": r.published_at or now},
        )
    return Decision(Phase.PUBLISHING, Action.PUBLISH, message="publishing the new associations")


def _propagating(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    if facts.provider_records is not None and not r.published <= facts.provider_records:
        return Decision(
            Phase.PUBLISHING,
            message="the new associations vanished from the provider; publishing again",
        )
    if facts.authoritative_ok and facts.resolvers_ok:
        horizon = max(r.horizon_before, facts.horizon or 0)
        seconds = wait_seconds(r.horizon_before, facts.horizon or 0, r.safety_factor)
        updates: dict[str, object] = {"propagated_at": now, "horizon": horizon}
        if facts.boottime is not None:
            # The wall clock may be stepped (NTP): the deadline is kept on both clocks.
            updates.update(
                aging_boot_id=facts.boot_id, aging_until_boottime=facts.boottime + seconds
            )
        return Decision(
            Phase.AGING,
            waiting_until=now + timedelta(seconds=seconds),
            message=f"served everywhere; ageing {r.safety_factor:g} x {horizon} s",
            updates=updates,
        )
    return Decision(
        Phase.PROPAGATING,
        waiting_until=now + RETRY,
        message=facts.detail or "waiting until every server serves the new RRset",
    )


def _aging(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    if r.waiting_until is not None and now < r.waiting_until:
        return Decision(
            Phase.AGING,
            waiting_until=r.waiting_until,
            message="waiting for caches to drop the old RRset",
        )
    left = boottime_left(r, facts)
    if left > 0:
        # The wall clock says the deadline passed, the boot's own clock does not: a forward
        # step. Waiting the boot clock out is what keeps the caches' TTLs honoured.
        return Decision(
            Phase.AGING,
            waiting_until=now + timedelta(seconds=left),
            message=f"waiting for caches to drop the old RRset ({left:.0f} s on this boot's "
            "clock; the wall clock was stepped forward)",
        )
    return Decision(Phase.DEPLOYING, message="aged; deploying")


def boottime_left(r: Rollover, facts: Facts) -> float:
    """Seconds of the ageing wait left on the boot's non-jumping clock (0 on another boot:
    across a reboot only the wall clock is left, and it is trusted)."""
    if r.aging_until_boottime is None or facts.boottime is None:
        return 0.0
    if r.aging_boot_id is None or r.aging_boot_id != facts.boot_id:
        return 0.0
    return max(0.0, r.aging_until_boottime - facts.boottime)


def _deploying(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    # The invariant: never deploy a key whose association is not published and served.
    if facts.provider_records is not None and not r.published <= facts.provider_records:
        return Decision(
            Phase.PUBLISHING,
            message="the new associations are gone; publishing again and restarting the clock",
        )
    if facts.authoritative_ok is False and facts.fault is not None:
        # Not seeing is not a regression: hold (the key may be live already, after a crash
        # between the reload and the state write), never send the rollover back before the
        # deploy, where abort would withdraw what the server may present.
        return Decision(
            Phase.DEPLOYING,
            waiting_until=now + RETRY,
            message=f"holding the deploy: {facts.fault}",
        )
    if facts.authoritative_ok is False:
        return Decision(
            Phase.PROPAGATING,
            waiting_until=now + RETRY,
            message=facts.detail or "a server no longer serves the new associations; waiting again",
        )
    if facts.resolvers_ok is False:
        # A validating resolver that finds the RRset bogus (or lost it) holds the deploy: the
        # clock need not restart (the authoritative servers still serve it), but no key
        # changes while any observed view of the pin is in doubt.
        return Decision(
            Phase.DEPLOYING,
            waiting_until=now + RETRY,
            message=f"holding the deploy: {facts.detail or 'a resolver does not validate'}",
        )
    return Decision(
        Phase.CUTTING_OVER,
        Action.DEPLOY,
        waiting_until=now + RETRY,
        message="deploying the new chain and key",
        updates={"deployed_at": now},
    )


def _cutting_over(r: Rollover, facts: Facts, now: datetime, cutover_timeout: timedelta) -> Decision:
    if facts.live_new:
        return Decision(
            Phase.RETIRING, message="the server presents the new key", updates={"cut_over_at": now}
        )
    since = r.deployed_at or r.since
    reason = facts.live_error or facts.cutover_detail or "the server still presents another key"
    if now - since >= cutover_timeout:
        return Decision(
            Phase.FAILED,
            message=f"{reason} {int((now - since).total_seconds())} s "
            "after deploying; old and new associations both stay published",
            updates={"error": reason, "failed_in": Phase.CUTTING_OVER.value},
        )
    return Decision(Phase.CUTTING_OVER, waiting_until=now + RETRY, message=reason)


def _missing(r: Rollover, records: frozenset[Association]) -> str:
    return (
        f"the new associations are not published ({len(r.kept - records)} of "
        f"{len(r.kept)} missing at the provider; removed out of band?): republishing "
        "them, the old ones stay"
    )


def _retiring(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    records = facts.provider_records
    if records is None:
        return Decision(Phase.RETIRING, waiting_until=now + RETRY, message="reading the RRset")
    # A guard that looks at the world: never retire the old before the new is there.
    if not (r.new <= records or r.kept <= records):
        return Decision(Phase.RETIRING, Action.REPUBLISH, message=_missing(r, records))
    if r.retiring & records or not r.kept <= records:
        return Decision(Phase.RETIRING, Action.RETIRE, message="retiring the old associations")
    return Decision(Phase.VERIFYING, waiting_until=now, message="old associations retired")


def _verifying(r: Rollover, facts: Facts, now: datetime, _t: timedelta) -> Decision:
    if facts.provider_records is not None and not r.kept <= facts.provider_records:
        return Decision(
            Phase.VERIFYING, Action.REPUBLISH, message=_missing(r, facts.provider_records)
        )
    if facts.authoritative_ok and facts.resolvers_ok is not False:
        return Decision(Phase.DONE, message="rollover complete", updates={"finished_at": now})
    return Decision(
        Phase.VERIFYING,
        waiting_until=now + RETRY,
        message=facts.detail or "waiting for every server to serve the final RRset",
    )


_TABLE = {
    Phase.PUBLISHING: _publishing,
    Phase.PROPAGATING: _propagating,
    Phase.AGING: _aging,
    Phase.DEPLOYING: _deploying,
    Phase.CUTTING_OVER: _cutting_over,
    Phase.RETIRING: _retiring,
    Phase.VERIFYING: _verifying,
}


def apply_decision(r: Rollover, decision: Decision, now: datetime) -> Rollover:
    """The record after a decision (the engine stores it with compare-and-swap)."""
    changes: dict[str, object] = dict(decision.updates)
    if decision.phase != r.phase:
        changes["since"] = now
        changes["error"] = decision.updates.get("error")
    # The ageing deadline is set once, when propagation is seen; later waits keep it.
    if decision.phase != Phase.AGING or "propagated_at" in decision.updates:
        changes["waiting_until"] = decision.waiting_until
    if decision.phase == Phase.PUBLISHING and decision.phase != r.phase:
        changes.update(published_at=None, propagated_at=None)
    return replace(r, phase=decision.phase, **changes)  # type: ignore[arg-type]
