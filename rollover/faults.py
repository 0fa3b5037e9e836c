"""Crash points for the fault-injection tests.

``ROLLOVER_FAULT_CRASH_AT=<point>`` makes the process die (``os._exit(137)``, like SIGKILL: no
cleanup, no state write) when it reaches that point. Unset, this costs one dictionary look-up.
The points: after-publish (provider changed, state not written), after-install (files written,
server not reloaded), after-reload (reloaded, state not written), during-cutover (probing),
after-retire (old records removed, state not written).
"""

from __future__ import annotations

import os
import sys


def crash_point(name: str) -> None:
    if os.environ.get("ROLLOVER_FAULT_CRASH_AT") == name:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)
