"""The clock, passed in so tests (and the crash campaign) can inject one.

Three readings, for three jobs:

- ``now()``: the wall clock (UTC), for what people read and what is stored.
- ``monotonic()``: seconds since the epoch, for leases shared by processes through the state
  store (they must compare across processes, and a lease only ever errs on the safe side).
- ``boottime()``: this boot's own clock (Linux ``CLOCK_BOOTTIME``: it does not jump when the wall
  clock is stepped, and it counts suspended time, as TTLs do), with ``boot_id()`` naming the boot.
  The ageing deadline is kept on it as well as on the wall clock, so a forward step of the wall
  clock (an NTP step) cannot shorten the wait. Across a reboot only the wall clock is left.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class SystemClock:
    """The :class:`rollover.ports.Clock` of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def monotonic(self) -> float:
        return time.time()

    def boottime(self) -> float | None:
        clock = getattr(time, "CLOCK_BOOTTIME", None)
        if clock is None:
            return time.monotonic()
        return time.clock_gettime(clock)

    def boot_id(self) -> str | None:
        try:
            return _BOOT_ID.read_text(encoding="ascii").strip() or None
        except OSError:
            return None


class SharedClock(SystemClock):
    """This machine's clock set to the shared state store's (PostgreSQL's ``clock_timestamp()``,
    read once when the store is opened): coordinators on several hosts then agree on when a
    record was published and when its TTLs ran out, whatever their own clocks say. A host
    whose clock is an hour ahead would otherwise judge an association aged an hour early and
    deploy a key no cache may know yet. ``offset``: database clock minus this host's."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.time() + self.offset
