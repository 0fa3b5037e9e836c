"""The state backend a configuration names: the embedded SQLite store of the state directory,
or PostgreSQL shared by several hosts (``state: {backend: postgresql, dsn_file: ...}``).

Both give the same two edges, a :class:`rollover.ports.StateStore` and a
:class:`rollover.ports.OwnershipLedger`, on one connection per process."""

from __future__ import annotations

from dataclasses import dataclass

from rollover.config import Config
from rollover.ports import OwnershipLedger, StateStore


@dataclass(frozen=True)
class StateBackend:
    store: StateStore
    ownership: OwnershipLedger
    label: str  # what errors and `rollover state` name: the database file or the DSN file


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
        return StateBackend(pg, PostgresOwnership(pg), source)
    from rollover.state.ownership import OwnershipStore
    from rollover.state.store import SqliteStateStore

    directory = str(state_dir or config.state_dir)
    sqlite = SqliteStateStore(directory)
    ownership = OwnershipStore(
        directory, connection=sqlite.connection, lock=sqlite.lock, synced=sqlite.synced
    )
    return StateBackend(sqlite, ownership, str(sqlite.path))
