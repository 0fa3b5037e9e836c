"""The crash campaign's entry point: ``python -m tests.crashing_cli POINT ARGS...`` runs the
rollover CLI with a checkpoint that kills the process at ``POINT`` (``os._exit(137)``, like
SIGKILL: no cleanup, no state write). The product itself never crashes on purpose."""

from __future__ import annotations

import os
import sys

KILLED = 137


def die_at(point: str):  # type: ignore[no-untyped-def]
    def checkpoint(name: str) -> None:
        if name == point:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(KILLED)

    return checkpoint


if __name__ == "__main__":
    from rollover.cli import common, main

    point, *args = sys.argv[1:]
    common.checkpoint = die_at(point)
    sys.argv = ["rollover", *args]
    main()
