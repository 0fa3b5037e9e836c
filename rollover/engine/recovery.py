"""Recovery: abort, rollback and resume, each under the lease, each refusing what would
break a sender (abort after the deploy, rollback once the old records are retired).
"""

from __future__ import annotations

from dataclasses import replace

from rollover.core.matching import spki_sha256
from rollover.core.phases import (
    BEFORE_DEPLOY,
    FINAL,
    Phase,
    Rollover,
)
from rollover.core.plan import Change, TlsaRRset
from rollover.engine.actions import Actions
from rollover.engine.base import leaf_first
from rollover.errors import ConflictError, PreconditionError, RolloverError
from rollover.ports import HistoryEvent


class Recovery(Actions):
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
        """Withdraw the new associations of a rollover that never deployed (a failed one too:
        it is judged by what the server's files and addresses hold, like any other)."""
        r = self._claim(allow_failed=True)
        try:
            if r.phase not in (*BEFORE_DEPLOY, Phase.DEPLOYING, Phase.FAILED) or self._deployed_new(
                r
            ):
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
            self.release_lease(r)

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
                ),
                [HistoryEvent(now, "resumed", {"message": f"resumed in {phase} by a person"})],
            )
            self.out(f"{self.service.name}: {phase}: resumed; the guards are checked again")
            return resumed
        finally:
            self.release_lease(r)

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
            if self.service.members:
                ended = self._pool_rollback(r)
            else:
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
                self._durable()
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
            self.release_lease(r)

    def _require_old_published(self, r: Rollover, chain_pem: bytes) -> None:
        chain = leaf_first("backup chain", chain_pem)
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
        self._durable()
        try:
            receipt = self.provider.apply(change)
        except RolloverError as exc:
            self._record_error(r, f"withdrawing the new associations failed: {exc}")
            raise
        self.after_change(r, change, receipt)

    def _pool_rollback(self, r: Rollover) -> Rollover:
        """A pool's rollback: ended as rolled back, which each member's agent reads and
        answers by putting its own backup back. The old associations must still be published
        (every member may present the old key again at once); the new ones stay until no
        address presents the new key (the lines after say so while any still does)."""
        current = self.provider.read(r.owner).records
        if not r.old <= current:
            raise PreconditionError(
                "too late to roll back: the old associations are no longer all published"
            )
        return self._end(
            replace(r, rolled_back=True),
            Phase.ABORTED,
            "rolling back: each member's agent puts its previous chain and key back",
        )

    def _end(self, r: Rollover, phase: Phase, message: str) -> Rollover:
        now = self.clock.now()
        saved = self.store.save(
            replace(r, phase=phase, since=now, finished_at=now, waiting_until=None, error=None),
            [HistoryEvent(now, phase.value, {"message": message})],
        )
        self.out(f"{self.service.name}: {phase}: {message}")
        return saved
