"""Leases: one process at a time acts on a rollover. Taken before an advance, renewed before
every call that may block, taken over at once from a dead holder on this host, otherwise
only once expired (judged by the shared lease clock).
"""

from __future__ import annotations

import os
import socket

from rollover.core.phases import (
    Rollover,
)
from rollover.engine.base import EngineBase
from rollover.errors import ConflictError

LEASE_SECONDS = 120.0


class Leases(EngineBase):
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
