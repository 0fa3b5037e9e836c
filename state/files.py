"""The state directory: created 0700 and checked writable. State files are replaced with
:func:`rollover.edges.files.write_atomic` (0600 whatever the umask, fsync, atomic rename) under
:func:`rollover.edges.files.locked`."""

from __future__ import annotations

import os
from pathlib import Path

from rollover.errors import ConfigError


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {path}: cannot create: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir {path}: not writable")
