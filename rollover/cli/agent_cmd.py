"""``rollover agent --member NAME``: a pool member's own part of its services' rollovers."""

from typing import Annotated

import typer

from rollover.cli import common


def agent(
    member: Annotated[
        str, typer.Option("--member", help="This host's member name (services.*.members).")
    ],
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """On a pool member's host, from its own timer: for every service that lists this member,
    say whether the key staged here is the rollover's, deploy it once the coordinator opened
    the gate (install, reload, probe this member's addresses, record it in the shared store),
    and put the previous key back after a rollback. Needs the shared state store, not the DNS
    credentials (the providers' sections are not read); the private key never leaves here.

    Exit: 0 every service fine (or nothing to do); 9 a service's step here failed (said on its
    line, recorded as the member's fault); 3, 4, 11 bad input, configuration, state store.
    """
    from rollover.engine.base import node_name
    from rollover.engine.build import SharedEdges
    from rollover.workflows.agent import Agent, pooled, probe_member

    cfg = common.load_config(config, provider_settings=False)
    services = pooled(cfg, member)
    edges = SharedEdges(cfg, common.state_dir(cfg, state_dir))
    clock = edges.clock()
    worker = Agent(edges.store(), edges.state_dir, clock.now, node_name(), probe_member)
    failed = False
    for service, entry in services:
        outcome = worker.run(service, entry)
        line = f"{service.name}: member {member}: {outcome.action}: {outcome.message}"
        if outcome.action == "fault":
            common.warn(line)
            failed = True
        else:
            typer.echo(line)
    raise typer.Exit(9 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
