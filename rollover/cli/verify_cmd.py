"""``rollover verify``: a DANE check as strict as Postfix, for people, cron and Nagios."""

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from datetime import datetime

    from rollover.core.posture import Posture

HELP = """Check what DANE senders will see: the TLSA RRset's DNSSEC state, the chains the
server presents (every address, every key algorithm it offers), and which record matches.

\b
Examples:
  rollover verify --host mx1.example.com
  rollover verify --domain example.com --warn 21 --json
  rollover verify --service mx1 --config /etc/rollover/rollover.yaml
  rollover verify --host mx1.example.com --connect 192.0.2.25:25

With --domain, also the domain's posture: TLS-RPT records, MTA-STS (record, policy, mx cover),
DANE coverage of the MX hosts, and DNSSEC signature lifetimes (WARNING under --signatures-warn
days, default 7; CRITICAL under one day). A missing TLS-RPT record is at most a WARNING.

Exit (Nagios): 0 OK; 1 WARNING (insecure zone, expiry within --warn days); 2 CRITICAL (no usable
record matches, bogus, STARTTLS missing, expired under usage 2); 3 UNKNOWN (lookup or connection
failed). With several hosts the most severe wins: CRITICAL > UNKNOWN > WARNING > OK.
"""


DEFAULT_TIMEOUT = 10.0


def probe_timeout(option: float | None, configured: float | None) -> float:
    """``--timeout`` when given (even when it equals the default), else the service's
    ``probe.timeout``, else 10 s."""
    if option is not None:
        return option
    return configured if configured is not None else DEFAULT_TIMEOUT


def posture_of(
    domain: str,
    mx_hosts: list[str],
    resolvers: list[str],
    *,
    now: "datetime",
    warn_days: int,
    port: int,
    authoritative: list[str],
    mta_sts_connect: str | None,
    mta_sts_ca: str | None,
    timeout: float,
    notes: list[str],
) -> "Posture | None":
    """``--domain``'s posture (rollover.workflows.posture), or None with a note when it cannot
    be looked up; ``--mta-sts-connect`` overrides where the policy is fetched from (the name
    is still validated)."""
    from rollover.core.addresses import parse_server
    from rollover.errors import ObserverError
    from rollover.workflows.posture import domain_posture

    address, https_port = parse_server(mta_sts_connect, 443) if mta_sts_connect else ("", 443)
    try:
        return domain_posture(
            domain,
            mx_hosts,
            resolvers,
            now=now,
            warn_days=warn_days,
            port=port,
            authoritative=authoritative,
            mta_sts_ca_file=mta_sts_ca,
            mta_sts_addresses=[address] if address else [],
            https_port=https_port,
            timeout=timeout,
        )
    except ObserverError as exc:
        notes.append(f"posture not checked: {exc}")
        return None


def register(app: typer.Typer) -> None:
    app.command("verify", help=HELP)(verify_command)


def verify_command(
    host: Annotated[str | None, typer.Option("--host", "-H", help="Host to check.")] = None,
    domain: Annotated[
        str | None, typer.Option("--domain", "-d", help="Check every MX host of a domain.")
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="A configured service.")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 25).")] = None,
    connect: Annotated[
        list[str] | None,
        typer.Option(
            "--connect", help="ADDR[:PORT] to probe instead of every A/AAAA (repeatable)."
        ),
    ] = None,
    starttls: Annotated[
        str | None,
        typer.Option("--starttls", help="smtp, imap, pop3, xmpp or none (default by port)."),
    ] = None,
    resolver: Annotated[
        list[str] | None, typer.Option("--resolver", "-r", help="Validating resolver.")
    ] = None,
    authoritative: Annotated[
        list[str] | None, typer.Option("--authoritative", "-a", help="Authoritative server.")
    ] = None,
    ns_port: Annotated[int, typer.Option("--ns-port", help="Port for NS addresses.")] = 53,
    warn: Annotated[
        int, typer.Option("--warn", min=0, help="WARNING when the leaf expires within DAYS.")
    ] = 14,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.5,
            help="Seconds per address probe (default: the service's probe.timeout, else 10).",
        ),
    ] = None,
    signatures_warn: Annotated[
        int,
        typer.Option(
            "--signatures-warn",
            min=0,
            help="With --domain: WARNING when DNSSEC signatures expire within DAYS.",
        ),
    ] = 7,
    mta_sts_connect: Annotated[
        str | None,
        typer.Option(
            "--mta-sts-connect",
            help="With --domain: ADDR[:PORT] to fetch the MTA-STS policy from.",
        ),
    ] = None,
    mta_sts_ca: Annotated[
        str | None,
        typer.Option(
            "--mta-sts-ca",
            help="With --domain: CA file for the policy host (default: system trust store).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    config: common.ConfigOption = None,
) -> None:
    import json
    from datetime import UTC, datetime

    from rollover.core.posture import fold_into
    from rollover.core.verdicts import AddressReport, report_json, report_text
    from rollover.edges.observer import DnsObserver, system_resolvers
    from rollover.edges.probe import TlsProbe, default_starttls
    from rollover.errors import InputError, ObserverError
    from rollover.workflows.verification import Verifier, check_pinning, mx_targets

    if sum(x is not None for x in (host, domain, service)) != 1:
        raise InputError("give exactly one of --host, --domain and --service")
    resolvers = list(resolver or [])
    auth = list(authoritative or [])
    connects = list(connect or [])
    if service is not None:
        cfg = common.load_config(config)
        svc = cfg.service(service)
        host = svc.host
        port = port or svc.port
        starttls = starttls or svc.probe.starttls
        connects = connects or list(svc.probe.connect)
        resolvers = resolvers or list(svc.resolvers or cfg.resolvers)
        auth = auth or list(svc.authoritative)
    timeout = probe_timeout(timeout, svc.probe.timeout if service is not None else None)
    port = port or 25
    resolvers = resolvers or system_resolvers()
    verifier = Verifier(
        DnsObserver(
            resolvers=resolvers,
            authoritative=auth,
            ns_port=ns_port,
            timeout=min(timeout, 3.0),
            serials=False,
        ),
        TlsProbe(timeout=timeout),
        resolvers,
        timeout=min(timeout, 3.0),
    )
    now = datetime.now(UTC)
    proto = starttls or default_starttls(port)
    reports: list[AddressReport] = []
    notes: list[str] = []
    posture = None
    if domain is not None:
        try:
            targets, mx_code, notes = mx_targets(domain, resolvers, min(timeout, 3.0))
        except ObserverError as exc:
            targets, mx_code, notes = [], 3, [str(exc)]
        if mx_code:
            reports.append(AddressReport(domain, "MX", mx_code, None, tuple(notes)))
        for target in targets:
            reports += verifier.verify_host(
                target.host,
                port=port,
                starttls=proto,
                connect=connects,
                reference_names=[target.host, domain],
                now=now,
                warn_days=warn,
            )
        posture = posture_of(
            domain,
            [t.host for t in targets],
            resolvers,
            now=now,
            warn_days=signatures_warn,
            port=port,
            authoritative=auth,
            mta_sts_connect=mta_sts_connect,
            mta_sts_ca=mta_sts_ca,
            timeout=timeout,
            notes=notes,
        )
    elif host is not None:
        reports = verifier.verify_host(
            host,
            port=port,
            starttls=proto,
            connect=connects,
            reference_names=[host],
            now=now,
            warn_days=warn,
        )
    if service is not None:
        reports = check_pinning(svc, reports)
    document, text = report_json(reports, notes), report_text(reports, notes)
    if posture is not None:
        document, text = fold_into(document, text, posture)
    sys.stdout.write(json.dumps(document, indent=2) + "\n" if as_json else text)
    raise typer.Exit(document["exit"])
