"""``rollover record``: print TLSA records derived from certificates, chains, keys and CSRs."""

# No `from __future__ import annotations` here: typer would eval() every annotation string at
# start-up (measured: ~3 ms of `rollover record`).
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.core.material import Material
from rollover.errors import InputError

HELP = """Print TLSA records derived from each SOURCE.

SOURCE is a PEM or DER certificate, a PEM bundle (any order: the leaf is found by issuer links),
a private key (PKCS#8, RSA, EC, OpenSSH; encrypted with --passphrase-file or the
ROLLOVER_PASSPHRASE environment variable), a public key, a CSR, a combined key+certificate PEM,
or - for standard input.

Usages 1 and 3 hash the leaf; usages 0 and 2 hash the leaf's issuer from the bundle (choose
another with --ta-index or --ta-subject); a single certificate is hashed itself.

\b
Examples:
  rollover record /etc/letsencrypt/live/mx1.example.com/fullchain.pem --host mx1.example.com
  rollover record fullchain.pem -p "3 1 1" -p "dane-ta cert sha2-256" --ttl 300
  rollover record privkey.pem --format json
  rollover record *.pem --host mx1.example.com --format nsupdate > tlsa.nsupdate
  openssl x509 -in cert.pem | rollover record -
  rollover record --connect mx1.example.com:25 --host mx1.example.com

Exit: 0 records printed; 1 warnings under --strict; 3 a source or option was bad (the other
sources are still printed).
"""


def register(app: typer.Typer) -> None:
    app.command("record", help=HELP, no_args_is_help=True)(record)


def record(
    sources: Annotated[
        list[str] | None, typer.Argument(metavar="SOURCE...", help="Files; - is stdin.")
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--params",
            "-p",
            help='Parameter set, e.g. "3 1 1" or "dane-ee spki sha2-256" (repeatable; '
            "default 3 1 1).",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", "-H", help="Server host name.")] = None,
    port: Annotated[int, typer.Option("--port", help="Port of the service.")] = 25,
    proto: Annotated[str, typer.Option("--proto", help="Transport protocol label.")] = "tcp",
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=0, max=2147483647, help="TTL to print.")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="zone, json, generic (RFC 3597), nsupdate, route53."),
    ] = "zone",
    ta_index: Annotated[
        int | None,
        typer.Option("--ta-index", help="Trust anchor for usages 0/2: 0-based bundle position."),
    ] = None,
    ta_subject: Annotated[
        str | None,
        typer.Option("--ta-subject", help="Trust anchor for usages 0/2: text in its subject."),
    ] = None,
    passphrase_file: common.PassphraseFileOption = None,
    passphrase_env: common.PassphraseEnvOption = common.DEFAULT_PASSPHRASE_ENV,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on any warning.")] = False,
    connect: Annotated[
        str | None,
        typer.Option(
            "--connect",
            help="Derive from the chain a live server presents: "
            "HOST[:PORT] (port defaults to --port).",
        ),
    ] = None,
    starttls: Annotated[
        str | None,
        typer.Option(
            "--starttls", help="With --connect: smtp, imap, pop3, xmpp or none (default by port)."
        ),
    ] = None,
) -> None:
    from rollover.core.association import owner_name
    from rollover.core.derive import DeriveOptions, derive, port_warnings
    from rollover.core.material import parse_material
    from rollover.core.params import DEFAULT_PARAMS, parse_params
    from rollover.edges.files import read_source
    from rollover.render.records import FORMATS, render, unique

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    wanted = tuple(dict.fromkeys(parse_params(p) for p in params or ())) or (DEFAULT_PARAMS,)
    options = DeriveOptions(
        params=wanted,
        owner=owner_name(host, port, proto),
        port=port,
        ttl=ttl,
        ta_index=ta_index,
        ta_subject=ta_subject,
    )
    passphrase = common.passphrase(passphrase_file, passphrase_env)
    sources = list(sources or [])
    if not sources and connect is None:
        raise InputError("give a SOURCE file or --connect HOST[:PORT]")
    if sources.count("-") > 1:
        raise InputError("standard input (-) can be read only once")
    now = datetime.now(UTC)
    warnings = port_warnings(wanted, port)
    errors: list[str] = []
    records = []
    materials = []
    if connect is not None:
        try:
            materials = _live_materials(connect, port, starttls, host)
        except InputError as exc:
            errors.append(str(exc))
    for material in materials:
        result = derive(material, options, now)
        records.extend(result.records)
        warnings.extend(result.warnings)
        errors.extend(result.errors)
    for source in sources:
        try:
            material = parse_material(source, read_source(source), passphrase)
        except InputError as exc:
            errors.append(str(exc))
            continue
        result = derive(material, options, now)
        records.extend(result.records)
        warnings.extend(result.warnings)
        errors.extend(result.errors)
    text = render(unique(records), fmt)
    sys.stdout.write(text)
    sys.stdout.flush()
    for line in dict.fromkeys(warnings):
        print(f"rollover: warning: {line}", file=sys.stderr)
    for line in errors:
        print(f"rollover: error: {line}", file=sys.stderr)
    if errors:
        raise typer.Exit(InputError.exit_code)
    if strict and warnings:
        raise typer.Exit(1)


def _live_materials(
    connect: str, port: int, starttls: str | None, host: str | None
) -> list["Material"]:
    """Each distinct chain the server presents (every key algorithm it offers)."""
    import socket

    from rollover.core.addresses import split_host_port
    from rollover.core.material import Material, load_presented_chain
    from rollover.edges.probe import TlsProbe, default_starttls

    name, target_port = split_host_port(connect, port, what="--connect")
    try:
        address = socket.getaddrinfo(name, target_port, type=socket.SOCK_STREAM)[0][4][0]
    except socket.gaierror as exc:
        raise InputError(f"--connect {connect}: cannot resolve: {exc.strerror}") from None
    result = TlsProbe().probe(
        str(address),
        target_port,
        host or name,
        starttls or default_starttls(target_port),
    )
    if result.error is not None:
        raise InputError(f"{result.address}: {result.error}")
    materials = []
    for presented in result.distinct_chains:
        chain = load_presented_chain(result.address, presented.certificates)
        materials.append(Material(f"{result.address} ({presented.asked})", chain))
    return materials
