"""``rollover publish`` and ``rollover withdraw``: one exact, compare-and-swap provider change."""

from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.config import ServiceConfig
    from rollover.core.association import Association

PUBLISH_HELP = """Publish the service's TLSA parameter sets for a certificate or key, next to what
is already there. Idempotent: associations already published are left alone.

The planned change is printed first (+ added, = kept, foreign records marked); --dry-run stops
there. The change is sent as one compare-and-swap: if someone else changed the RRset in between,
nothing is changed and the exit status is 6.

\b
Examples:
  rollover publish mx1 --cert /etc/letsencrypt/live/mx1.example.com/fullchain.pem
  rollover publish mx1 --key /etc/ssl/private/mx1-next.key --dry-run
"""

WITHDRAW_HELP = """Remove the named associations from the service's TLSA RRset: those of a
certificate or key (--cert/--key), or those with the given association data (--data HEX).
Nothing else is touched. Refuses, unless --force, to leave the owner name without any association
published by rollover, and to remove the last association that matches a chain the live server
presents (the service's probe settings say where to connect); when the server cannot be probed it
refuses too.

\b
Examples:
  rollover withdraw mx1 --cert old-fullchain.pem
  rollover withdraw mx1 --data 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6
"""


def register(app: typer.Typer) -> None:
    app.command("publish", help=PUBLISH_HELP, no_args_is_help=True)(publish_command)
    app.command("withdraw", help=WITHDRAW_HELP, no_args_is_help=True)(withdraw_command)


SourceCert = Annotated[
    str | None, typer.Option("--cert", help="Certificate, chain or any SOURCE of `record`.")
]
SourceKey = Annotated[str | None, typer.Option("--key", help="Private/public key or CSR.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")]
WaitTimeout = Annotated[
    float,
    typer.Option("--wait-timeout", min=1, help="Seconds to wait for the change to be in effect."),
]


def _source_associations(
    service: "ServiceConfig",
    cert: str | None,
    key: str | None,
    passphrase_file: str | None,
    passphrase_env: str,
) -> "frozenset[Association]":
    from datetime import UTC, datetime

    from rollover.core.material import parse_material
    from rollover.edges.files import read_source
    from rollover.engine.associations import service_associations
    from rollover.errors import InputError

    chosen = [s for s in (cert, key) if s is not None]
    if len(chosen) != 1:
        raise InputError("give exactly one of --cert and --key")
    material = parse_material(
        chosen[0], read_source(chosen[0]), common.passphrase(passphrase_file, passphrase_env)
    )
    associations, warnings = service_associations(service, material, datetime.now(UTC))
    for line in dict.fromkeys(warnings):
        common.warn(line)
    return associations


def publish_command(
    service_name: Annotated[str, typer.Argument(metavar="SERVICE", help="Configured service.")],
    cert: SourceCert = None,
    key: SourceKey = None,
    dry_run: DryRun = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
    passphrase_file: common.PassphraseFileOption = None,
    passphrase_env: common.PassphraseEnvOption = common.DEFAULT_PASSPHRASE_ENV,
    wait_timeout: WaitTimeout = 120.0,
) -> None:
    from rollover.engine.build import SharedEdges
    from rollover.workflows.publishing import publish

    cfg = common.load_config(config)
    service = cfg.service(service_name)
    associations = _source_associations(service, cert, key, passphrase_file, passphrase_env)
    provider = common.make_provider(cfg, service.provider)
    edges = SharedEdges(cfg, common.state_dir(cfg, state_dir))
    publish(
        service,
        provider,
        edges.ownership(),
        associations,
        now=edges.clock().now(),
        out=_out,
        dry_run=dry_run,
        wait_timeout=wait_timeout,
    )


def withdraw_command(
    service_name: Annotated[str, typer.Argument(metavar="SERVICE", help="Configured service.")],
    cert: SourceCert = None,
    key: SourceKey = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Association data (hex) to remove.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow leaving no association of rollover's.")
    ] = False,
    dry_run: DryRun = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
    passphrase_file: common.PassphraseFileOption = None,
    passphrase_env: common.PassphraseEnvOption = common.DEFAULT_PASSPHRASE_ENV,
    wait_timeout: WaitTimeout = 120.0,
) -> None:
    from rollover.engine.build import SharedEdges
    from rollover.errors import InputError
    from rollover.workflows.publishing import associations_by_data, withdraw

    cfg = common.load_config(config)
    service = cfg.service(service_name)
    provider = common.make_provider(cfg, service.provider)
    if data is not None:
        if cert is not None or key is not None:
            raise InputError("give --data or --cert/--key, not both")
        current = provider.read(service.owner)
        associations = associations_by_data(current.records, data)
        if not associations:
            raise InputError(f"--data: no record at {service.owner} has that association data")
    else:
        associations = _source_associations(service, cert, key, passphrase_file, passphrase_env)
    edges = SharedEdges(cfg, common.state_dir(cfg, state_dir))
    live = common.service_live(cfg, service)
    withdraw(
        service,
        provider,
        edges.ownership(),
        associations,
        out=_out,
        now=edges.clock().now(),
        live=live,
        force=force,
        dry_run=dry_run,
        wait_timeout=wait_timeout,
    )


def _out(line: str) -> None:
    common.say(line)
