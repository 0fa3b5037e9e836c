"""The state directory: created 0700 and checked writable. State files are replaced with
:func:`rollover.edges.files.write_atomic` (0600 whatever the umask, fsync, atomic rename) under
:func:`rollover.edges.files.locked`."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rollover.errors import ConfigError


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {path}: cannot create: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir {path}: not writable")


Kind = TypeVar("Kind", bound=type)


def serialized(cls: Kind) -> Kind:
    """Every public method of ``cls`` holds ``self.lock`` (an RLock) while it runs: the
    stores of one process share one SQLite connection, and a tick advances services from
    several threads, so one thread's transaction must never take in another's statements."""
    for name, attribute in list(vars(cls).items()):
        if not name.startswith("_") and callable(attribute):
            setattr(cls, name, _holding_lock(attribute))
    return cls


def _holding_lock(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return call
