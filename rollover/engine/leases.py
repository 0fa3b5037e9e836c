"""Leases: one process at a time acts on a rollover. Taken before an advance, renewed before
every call that may block, taken over at once from a dead holder on this host, otherwise
only once expired (judged by the shared lease clock).
"""

from __future__ import annotations

import os

from rollover.core.phases import (
    Rollover,
)
from rollover.engine.base import EngineBase, node_name
from rollover.errors import ConflictError

LEASE_SECONDS = 120.0
# A lease renewed this recently is not written again: at least ``lease_term - RENEW_AFTER``
# of it is left, still more than the longest call made under it (a provider wait), so a
# fleet's tick writes a service's lease twice per advance (take, release), not at every step;
# in between each renewal only reads that the lease is still this engine's.
RENEW_AFTER = 15.0


class Leases(EngineBase):
    def acquire_lease(self, rollover: Rollover) -> bool:
        return self._lease(rollover)

    def release_lease(self, rollover: Rollover) -> None:
        self._renewed.pop(rollover.id, None)
        self.store.release(rollover, self.holder)

    def _take(self, rollover: Rollover, now: float) -> bool:
        taken = self.store.acquire(rollover, self.holder, now, self.lease_term)
        if taken:
            self._renewed[rollover.id] = now
        else:
            self._renewed.pop(rollover.id, None)
        return taken

    def _lease(self, rollover: Rollover) -> bool:
        """Take the lease; take it over from a holder on this host whose process is gone
        (a crashed ``advance``), without waiting for it to expire."""
        now = self.clock.monotonic()
        if self._take(rollover, now):
            return True
        holder = self.store.lease_holder(rollover, now)
        if holder is not None and _holder_dead(holder):
            self.store.break_lease(rollover, holder)
            self.store.append(rollover, self.clock.now(), "lease-broken", {"holder": holder})
            return self._take(rollover, now)
        return False

    def _renew(self, rollover: Rollover) -> bool:
        """Extend the lease before each step: a long advance (provider waits, probes) must not
        outlast it and let a second process act on the same rollover. Written only when the
        last renewal is older than :data:`RENEW_AFTER`; until then it is read (a lease taken
        over meanwhile, from a holder presumed dead, is still seen at once)."""
        now = self.clock.monotonic()
        last = self._renewed.get(rollover.id)
        if last is not None and 0 <= now - last < RENEW_AFTER:
            if self.store.lease_holder(rollover, now) == self.holder:
                return True
            self._renewed.pop(rollover.id, None)
            return False
        return self._take(rollover, now)

    @property
    def lease_term(self) -> float:
        """Longer than the longest single call made under it (a provider wait), so that the
        renewal before each call (:meth:`_hold`) always lands inside the lease."""
        if self.lease_seconds is not None:  # configured (state.lease_seconds): checked there
            return self.lease_seconds
        return max(LEASE_SECONDS, self.wait_timeout + 60.0)

    def _hold(self, rollover: Rollover) -> None:
        """Renew the lease before a call that may block (a provider change or wait, a probe, a
        DNS observation, a deploy): a step may take minutes, and a second process must never
        find the lease expired and act on the same rollover meanwhile. Lost: stop here."""
        if not self._renew(rollover):
            raise ConflictError(
                f"the lease on the rollover of {rollover.service} was lost to another process "
                "while this one worked; stopped before acting further"
            )


def _holder_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != node_name() or not (pid_text.isascii() and pid_text.isdigit()):
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
