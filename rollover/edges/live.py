"""The live server, seen as a sender sees it: every A and AAAA address of the host, and the
chains each presents (every key algorithm), for the withdraw guard and the cut-over."""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from rollover.core.addresses import parse_server
from rollover.core.material import load_presented_chain
from rollover.core.presented import LiveChains
from rollover.edges.dnsquery import exchange
from rollover.edges.observer import internet
from rollover.edges.probe import TlsProbe
from rollover.errors import InputError, ObserverError


def ask_resolver(resolver: str, name: str, rdtype: str, timeout: float) -> dns.message.Message:
    """One question to a validating resolver (``ADDR[:PORT]``), through the one query helper.
    Its callers read the records and the AD bit, never a signature: the query sets AD (which
    a validating resolver answers, RFC 6840 section 5.7) and not DO, so the answer carries no
    RRSIGs or NSEC3 chains to parse."""
    address, port = parse_server(resolver)
    try:
        return exchange(address, port, name, rdtype, recursive=True, timeout=timeout, dnssec=False)[
            0
        ]
    except ObserverError as exc:
        raise ObserverError(f"resolver {exc} ({name} {rdtype})") from None


def host_addresses(host: str, resolvers: Sequence[str], timeout: float) -> list[str]:
    """Every A and AAAA address of ``host`` (through the resolver when one is given)."""
    if not resolvers:
        import socket

        try:
            infos = socket.getaddrinfo(host.rstrip("."), None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ObserverError(f"{host}: address look-up failed: {exc.strerror}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        response = ask_resolver(resolvers[0], host, rdtype, timeout)
        if response.rcode() == dns.rcode.SERVFAIL:
            raise ObserverError(f"{host} {rdtype}: SERVFAIL (bogus?)")
        for rrset in internet(response.answer):
            if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                addresses.extend(str(r.address) for r in rrset)
    if not addresses:
        raise ObserverError(f"{host}: no A or AAAA records")
    return list(dict.fromkeys(addresses))


def live_chains(
    host: str,
    port: int,
    *,
    connect: Sequence[str],
    starttls: str | None,
    resolvers: Sequence[str],
    timeout: float,
) -> LiveChains:
    """Every distinct chain the server presents on every address and key algorithm (the
    withdraw guard and the cut-over)."""
    from cryptography import x509

    from rollover.edges.probe import default_starttls

    try:
        endpoints = (
            [parse_server(c, port) for c in connect]
            if connect
            else [(a, port) for a in host_addresses(host, resolvers, min(timeout, 3.0))]
        )
    except ObserverError as exc:
        return LiveChains(error=str(exc))
    probe = TlsProbe(timeout=timeout)
    chains: list[tuple[x509.Certificate, ...]] = []
    seen: list[tuple[str, tuple[x509.Certificate, ...]]] = []
    for address, address_port in endpoints:
        result = probe.probe(address, address_port, host, starttls or default_starttls(port))
        if result.error is not None:
            return LiveChains(error=f"{result.address}: {result.error}")
        for presented in result.chains:
            try:
                chain = load_presented_chain(result.address, presented.certificates)
            except InputError as exc:
                return LiveChains(error=str(exc))
            if chain and chain not in chains:
                chains.append(chain)
            if chain:
                seen.append((f"{result.address} ({presented.asked})", chain))
    return LiveChains(tuple(chains), seen=tuple(seen))
