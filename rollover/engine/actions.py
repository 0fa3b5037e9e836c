"""Actions: the world changed on a decision: provider changes (compare-and-swap, recorded,
waited on), the deploy (backup, install, reload), the retire, and storing the result.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rollover.core.phases import (
    FINAL,
    Action,
    Decision,
    Phase,
    Rollover,
    apply_decision,
)
from rollover.core.plan import Change, TlsaRRset, plan_publish
from rollover.core.promise import Window, check_live, violations
from rollover.edges.files import write_atomic
from rollover.engine.continuity import mark
from rollover.engine.facts import FactFinding
from rollover.engine.staging import Staged, presented_order
from rollover.errors import ConflictError, PreconditionError
from rollover.ports import (
    Deployer,
    HistoryEvent,
    Receipt,
)

RETIRE_RETRY = timedelta(minutes=1)  # a retire held by a presented key is tried again


class Actions(FactFinding):
    # -- actions ---------------------------------------------------------------------------
    def _transition(self, rollover: Rollover, decision: Decision, now: datetime) -> Rollover:
        """Store a step to a new phase (or the same one after an action), on record in the
        history, said on the output, and the final phases sent to ``on_event``."""
        saved = self._save_after(rollover, decision, now)
        self.out(f"{self.service.name}: {saved.phase}: {decision.message}")
        if saved.phase in FINAL:
            self._event(saved.phase.value, saved, decision.message)
        return saved

    def _act_or_wait(self, rollover: Rollover, decision: Decision, now: datetime) -> Decision:
        """Act; a retire that may remove nothing yet becomes a wait, said once, not a loop of
        empty steps."""
        if self._act(rollover, decision):
            return decision
        return replace(
            decision,
            action=Action.NONE,
            waiting_until=now + RETIRE_RETRY,
            message="the old associations still match a key an address presents; "
            "they stay until no address needs them",
        )

    def _act(self, r: Rollover, decision: Decision) -> bool:
        """Carry out the decision's action; False when a retire found nothing it may remove
        yet (every old record still matches a chain some address presents)."""
        if decision.action is Action.PUBLISH:
            self._publish(r)
        elif decision.action is Action.DEPLOY:
            self._deploy(r)
        elif decision.action is Action.RETIRE:
            return self._retire(r)
        elif decision.action is Action.REPUBLISH:
            self._republish(r)
        return True

    def pending_change(self, r: Rollover) -> Change | None:
        """The provider change the current phase needs (publish or retire), or None."""
        if r.phase == Phase.PUBLISHING:
            change = plan_publish(
                self.provider.read(r.owner), r.published, self.published_ttl(r.owner)
            )
            return None if change.is_noop else change
        if r.phase == Phase.RETIRING:
            return self._retire_change(r)
        return None

    def before_change(self, r: Rollover, change: Change) -> None:
        """Claim what the change adds, and make the state durable: the change goes out
        only once its record would survive a power loss."""
        if change.added:
            self.ownership.claim(r.owner, change.added, r.service, self.clock.now())
        self._durable()

    def after_change(self, r: Rollover, change: Change, receipt: Receipt) -> None:
        """Record a change applied for this rollover (alone or in a batch); wait for it."""
        detail: dict[str, object] = {"provider": receipt.provider, "change_id": receipt.change_id}
        if change.added:
            detail["added"] = sorted(map(str, change.added))
        if change.removed:
            self.ownership.release(r.owner, change.removed)
            detail["removed"] = sorted(map(str, change.removed))
        now = self.clock.now()
        # The TTL really published: the receipt's change is the one the provider applied.
        ttl = receipt.change.after.ttl if receipt.change.owner == change.owner else None
        ttl = ttl or change.after.ttl
        self.ownership.note_served(r.owner, {change.before.ttl, ttl}, now, self._boot())
        self.ownership.seen(r.owner, change.after.records, now, self._boot(), ttl)
        self.store.append(r, self.clock.now(), "provider-change", detail)
        self._hold(r)
        self.provider.wait(receipt, self.wait_timeout)
        if change.added:
            self.ownership.confirm(r.owner, change.added, self.clock.now(), self._boot())
            mark(self.provider, self.ownership, r.owner)

    def _apply(self, r: Rollover, change: Change, point: str) -> None:
        self._hold(r)
        self.before_change(r, change)  # the claim and the sync last, right before the change
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
        change = plan_publish(self.provider.read(r.owner), needed, self.published_ttl(r.owner))
        if not change.is_noop:
            self._apply(r, change, "after-publish")

    def _deploy(self, r: Rollover) -> None:
        deployer = self._deployer()
        staged = self.staged(r)
        if self.service.members:
            self._require_members_staged(r)
        self._check_deploy_window(r, staged)
        if not deployer.matches(staged.chain, staged.key):
            self._backup(r, deployer)
            self._hold(r)
            self._durable()
            deployer.install(staged.chain, staged.key)
            self.checkpoint("after-install")
        self._hold(r)
        self._durable()
        deployer.reload()
        self.checkpoint("after-reload")
        self.store.append(
            r,
            self.clock.now(),
            "deploy",
            {"chain": deployer.describe(), "spki_sha256": r.staged_spki},
        )

    def _require_members_staged(self, r: Rollover) -> None:
        """A pool's gate opens only once every member's agent said the key staged on its
        host is the rollover's: a member without it could never present the new key, and
        the cut-over would wait for it in vain."""
        from rollover.core.members import member_states, not_staged

        states = member_states(
            [m.name for m in self.service.members],
            self.store.history(self.service.name),
            r.id,
            r.staged_spki,
        )
        missing = not_staged(states)
        if missing:
            faults = [f"{s.name}: {s.fault}" for s in states if s.fault]
            raise PreconditionError(
                f"not deploying: member(s) {', '.join(missing)} have not staged the new key "
                f"(SPKI SHA-256 {r.staged_spki[:16]}; run rollover agent --member NAME on "
                f"each){': ' + '; '.join(faults) if faults else ''}"
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
        ttl = current.ttl or self.published_ttl(r.owner)
        change = Change(current, TlsaRRset(r.owner, ttl, after))
        check_live(change, live, port=self.service.port, host=self.service.host, now=now)
        window = Window("retiring", (current.records, after), presented)
        broken = violations([window], self.context(now))
        if broken:
            raise PreconditionError(f"not retiring: a sender would fail: {broken[0]}")
        return change

    def _retire(self, r: Rollover) -> bool:
        change = self._retire_change(r)
        if change is None:
            return False
        self._apply(r, change, "after-retire")
        return True

    def _save_after(self, rollover: Rollover, decision: Decision, now: datetime) -> Rollover:
        """Store a transition; when an action already changed the world and the record moved
        under us (a lease lost), say so and put it in the history, never "nothing written"."""
        after = apply_decision(rollover, decision, now)
        transition = HistoryEvent(
            now,
            "transition",
            {"from": rollover.phase.value, "to": after.phase.value, "message": decision.message},
        )
        try:
            return self.store.save(after, [transition])
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

    def _save_wait(self, rollover: Rollover, decision: Decision, fault: str | None) -> Rollover:
        """A wait is stored with the fault that holds it (shown by status), or none."""
        if rollover.waiting_until == decision.waiting_until and rollover.error == fault:
            return rollover
        episode = fault is not None and rollover.error is None  # a new one: once in history
        return self.store.save(
            replace(rollover, waiting_until=decision.waiting_until, error=fault),
            [HistoryEvent(self.clock.now(), "fault", {"fault": fault})] if episode else [],
        )
