"""``rollover state migrate|import``: the PostgreSQL state backend's schema and its import from
a SQLite state directory."""

from pathlib import Path
from typing import Annotated

import typer

from rollover.cli import common

state_app = typer.Typer(help="Manage the state store (PostgreSQL backend).", no_args_is_help=True)


def _postgres(config: str | None) -> tuple[str, str]:
    from rollover.errors import ConfigError
    from rollover.state.backends import postgres_dsn

    cfg = common.load_config(config)
    if cfg.state.backend != "postgresql":
        raise ConfigError(
            f"{cfg.source}: state.backend is {cfg.state.backend}: `rollover state` manages "
            "the postgresql backend (set state: {backend: postgresql, dsn_file: ...})"
        )
    return postgres_dsn(cfg)


@state_app.command("migrate")
def migrate(config: common.ConfigOption = None) -> None:
    """Create the PostgreSQL schema or bring it up to date: versioned migrations, each in its
    own transaction, safe to run twice or from two hosts at once. A schema newer than this
    version knows is refused (upgrade rollover first).

    Exit: 0 done (or nothing to do); 4 the configuration names no postgresql backend; 11 the
    database cannot be reached or migrated.
    """
    from rollover.state.postgres import migrate as run_migrations

    dsn, source = _postgres(config)
    before, after = run_migrations(dsn, source)
    if before == after:
        typer.echo(f"{source}: schema at version {after}: nothing to do")
    else:
        typer.echo(f"{source}: schema migrated from version {before or 0} to {after}")


@state_app.command("import")
def import_state(
    source_dir: Annotated[
        Path, typer.Argument(metavar="SQLITE_STATE_DIR", help="The state_dir to copy from.")
    ],
    config: common.ConfigOption = None,
) -> None:
    """Copy a SQLite state directory (rollovers, history, ownership records) into the
    configured PostgreSQL store, in one transaction. Importing the same directory twice
    changes nothing; a store that holds anything else is refused with nothing written.
    Stop the timers of the host the directory belongs to first: its leases are not copied.

    Exit: 0 imported (or already there); 4 no postgresql backend configured; 11 the source
    or the database refused.
    """
    from rollover.errors import StateError
    from rollover.state.postgres import PostgresStateStore, import_sqlite

    if not (source_dir / "state.db").is_file() and not (source_dir / "ownership.json").is_file():
        raise StateError(f"{source_dir}: no state.db here: not a rollover state directory")
    dsn, source = _postgres(config)
    store = PostgresStateStore(dsn, source=source)
    try:
        counts = import_sqlite(str(source_dir), store)
    finally:
        store.close()
    done = "imported" if counts.get("written") else "already there, nothing written"
    typer.echo(
        f"{source_dir} -> {source}: {counts['rollovers']} rollovers ({counts['active']} "
        f"active), {counts['history']} history entries, {counts['ownership']} ownership "
        f"records, {counts['reports']} TLS-RPT reports: {done}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")
