"""``rollover hook certbot | acme.sh | dehydrated | lego``: renewal hooks for ACME clients."""

import os
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.engine.machine import Engine

HELP = """Take a renewal from an ACME client: stage the new chain and key, then start the rollover
and return at once (`rollover advance --all` from a timer carries it on), or, when the key did
not change and the published associations already match, deploy at once.

\b
certbot:    certbot renew --deploy-hook "rollover hook certbot"
acme.sh:    acme.sh --install-cert -d mx1.example.com --reloadcmd "rollover hook acme.sh"
dehydrated: HOOK=examples/dehydrated-hook.sh (runs: rollover hook dehydrated "$@")
lego:       lego ... renew --renew-hook "rollover hook lego"

Services: those whose `acme: {lineage: ...}` or `acme: {domain: ...}` matches, else those whose
host is one of the renewed domains. Exit 0 when every service was staged (and its rollover
started or deployed); 4 when no service matches; the error's own code otherwise.
"""

CLIENTS = ("certbot", "acme.sh", "dehydrated", "lego")


def register(app: typer.Typer) -> None:
    app.command(
        "hook",
        help=HELP,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(hook)


def hook(
    client: Annotated[
        str, typer.Argument(metavar="CLIENT", help="certbot, acme.sh, dehydrated or lego.")
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ARGS]...", help="dehydrated's handler arguments."),
    ] = None,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:

    from rollover.cli.rollover_cmd import batched_tick, engine_for, report_outcomes
    from rollover.engine.build import SharedEdges
    from rollover.errors import ConfigError, InputError
    from rollover.workflows import renewals as hooks

    if client not in CLIENTS:
        raise InputError(f"unknown ACME client {client!r}: use {', '.join(CLIENTS)}")
    env = dict(os.environ)
    if client == "certbot":
        renewal = hooks.certbot_renewal(env)
    elif client == "acme.sh":
        renewal = hooks.acmesh_renewal(env)
    elif client == "lego":
        renewal = hooks.lego_renewal(env)
    else:
        found = hooks.dehydrated_renewal(list(args or []))
        if found is None:
            return  # another dehydrated handler: not ours, quietly
        renewal = found
    cfg = common.load_config(config)
    services = hooks.services_for(cfg, renewal)
    if not services:
        raise ConfigError(
            f"{cfg.source}: no service takes renewals of "
            f"{', '.join(renewal.domains) or renewal.fullchain} (set "
            "services.NAME.acme.lineage or .domain, or a matching host)"
        )
    shared = SharedEdges(cfg, state_dir)
    now = shared.clock().now()
    started: dict[str, Engine] = {}
    for service in services:
        engine = engine_for(cfg, service.name, state_dir, _say, shared)
        taken = hooks.take_renewal(
            engine,
            service,
            renewal,
            state_dir=common.state_dir(cfg, state_dir),
            now=now,
            out=_say,
            publish=len(services) == 1,
        )
        if taken == "started":
            started[service.name] = engine
    if len(services) > 1 and started:
        # A renewal of many names: their publications go out as one change per zone.
        tick = batched_tick(started, batched=True, single=False, concurrency=cfg.concurrency)
        worst = report_outcomes(tick, verbose=False)
        if worst:
            raise typer.Exit(worst)


def _say(line: str) -> None:
    common.say(line)
