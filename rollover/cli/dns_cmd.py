"""``rollover dns``: what every authoritative server serves and what resolvers hand to senders."""

# No `from __future__ import annotations`: typer evaluates the annotations (see record.py).
import sys
from typing import Annotated

import typer

HELP = """Show the TLSA RRset at an owner name as every authoritative server and every validating
resolver sees it, with the DNSSEC state a sending MTA acts on.

The zone is found by a SOA walk; its NS set gives the authoritative servers unless
--authoritative names them (hidden primaries, labs). Every server is asked directly (RD=0, DO=1,
UDP with TCP fallback); every resolver with DO=1.

\b
Examples:
  rollover dns --host mx1.example.com
  rollover dns --host mx1.example.com --resolver 9.9.9.9 --resolver 1.1.1.1 --json
  rollover dns --owner _25._tcp.mx1.example.com --authoritative 192.0.2.53:5300

Exit (Nagios convention): 0 OK, consistent and secure; 1 WARNING, insecure or indeterminate,
no records, or a resolver unreachable; 2 CRITICAL, bogus, or the authoritative servers disagree
or fail; 3 UNKNOWN, nothing could be observed (or bad input).
"""


def register(app: typer.Typer) -> None:
    app.command("dns", help=HELP)(dns_command)


def dns_command(
    host: Annotated[str | None, typer.Option("--host", "-H", help="Server host name.")] = None,
    port: Annotated[int, typer.Option("--port", help="Port of the service.")] = 25,
    proto: Annotated[str, typer.Option("--proto", help="Transport protocol label.")] = "tcp",
    owner: Annotated[
        str | None, typer.Option("--owner", help="Whole owner name instead of --host/--port.")
    ] = None,
    resolver: Annotated[
        list[str] | None,
        typer.Option(
            "--resolver",
            "-r",
            help="Validating resolver ADDR[:PORT] (repeatable; default: /etc/resolv.conf).",
        ),
    ] = None,
    authoritative: Annotated[
        list[str] | None,
        typer.Option(
            "--authoritative",
            "-a",
            help="Authoritative server ADDR[:PORT] (repeatable; default: the zone's NS set).",
        ),
    ] = None,
    ns_port: Annotated[
        int, typer.Option("--ns-port", help="Port for addresses found in the NS set.")
    ] = 53,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=60, help="Seconds per query attempt.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    import json

    from rollover.core.association import owner_name
    from rollover.core.observation import verdict
    from rollover.edges.observer import DnsObserver, system_resolvers
    from rollover.errors import InputError
    from rollover.render.dnsview import observation_json, observation_text

    if owner is None:
        if host is None:
            raise InputError("give --host (with --port/--proto) or --owner")
        owner = owner_name(host, port, proto)
    observer = DnsObserver(
        resolvers=list(resolver or []) or system_resolvers(),
        authoritative=list(authoritative or []),
        ns_port=ns_port,
        timeout=timeout,
    )
    observation = observer.observe(owner)
    result = verdict(observation)
    if as_json:
        sys.stdout.write(json.dumps(observation_json(observation, result), indent=2) + "\n")
    else:
        sys.stdout.write(observation_text(observation, result))
    raise typer.Exit(result.exit)
