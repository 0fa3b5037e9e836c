"""The state backend a configuration names: the embedded SQLite store of the state directory,
or PostgreSQL shared by several hosts (``state: {backend: postgresql, dsn_file: ...}``).

Both give the same two edges, a :class:`rollover.ports.StateStore` and a
:class:`rollover.ports.OwnershipLedger`, on one connection per process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rollover.config import Config
from rollover.ports import OwnershipLedger, StateStore


@dataclass(frozen=True)
class StateBackend:
    store: StateStore
    ownership: OwnershipLedger
    label: str  # what errors and `rollover state` name: the database file or the DSN file
    # Seconds to add to this host's clock to read the store's (None: the host's clock is the
    # store's, as for SQLite on this host).
    clock_offset: float | None = None


def postgres_dsn(config: Config) -> tuple[str, str]:
    """The DSN (password included: never printed) and what to call it in messages."""
    from rollover.state.postgres import read_dsn_file

    if config.state.dsn_file is None:
        return "", "PostgreSQL (libpq environment)"
    return read_dsn_file(config.state.dsn_file), config.state.dsn_file


def open_state(config: Config, state_dir: str | None = None) -> StateBackend:
    """The store and ownership ledger of ``config`` (``state_dir``: SQLite's directory, when
    given on the command line)."""
    if config.state.backend == "postgresql":
        from rollover.state.postgres import PostgresOwnership, PostgresStateStore

        dsn, source = postgres_dsn(config)
        pg = PostgresStateStore(dsn, source=source)
        return StateBackend(pg, PostgresOwnership(pg), source, clock_offset(pg.database_now))
    from rollover.state.ownership import OwnershipStore
    from rollover.state.store import SqliteStateStore

    directory = str(state_dir or config.state_dir)
    sqlite = SqliteStateStore(directory)
    ownership = OwnershipStore(
        directory, connection=sqlite.connection, lock=sqlite.lock, synced=sqlite.synced
    )
    return StateBackend(sqlite, ownership, str(sqlite.path))


def clock_offset(database_now: Callable[[], datetime]) -> float:
    """The database clock minus this host's, read once, halfway through the round trip."""
    before = time.time()
    there = database_now().timestamp()
    after = time.time()
    return there - (before + after) / 2
