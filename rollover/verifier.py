"""The network side of `rollover verify`: MX walk, address look-ups, probes, TLSA observation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from rollover.addresses import parse_server
from rollover.association import owner_name
from rollover.dnsparse import tolerate_malformed_tlsa
from rollover.errors import InputError, ObserverError
from rollover.observation import DnssecState, Observation
from rollover.observer import DnsObserver, internet
from rollover.probe import ProbeResult, TlsProbe
from rollover.publishing import LiveChains
from rollover.sources import load_presented_chain
from rollover.verify import AddressReport, evaluate, tlsa_view


@dataclass(frozen=True)
class MxTarget:
    host: str
    preference: int


def _ask(resolver: str, name: str, rdtype: str, timeout: float) -> dns.message.Message:
    address, port = parse_server(resolver)
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    try:
        return dns.query.udp_with_fallback(query, address, port=port, timeout=timeout)[0]
    except (dns.exception.DNSException, OSError, EOFError) as exc:
        raise ObserverError(f"resolver {resolver}: {name} {rdtype}: {exc or 'timed out'}") from None


def mx_targets(
    domain: str, resolvers: Sequence[str], timeout: float
) -> tuple[list[MxTarget], int, list[str]]:
    """MX hosts in preference order, the code the MX RRset's security earns, and notes.

    RFC 7672 section 2.2.1: DANE for SMTP rests on a secure MX RRset; an insecure one is a
    warning (senders may still use DANE for the hosts), a bogus one is critical.
    """
    if not resolvers:
        raise ObserverError("no resolver to look up the MX RRset with")
    name = dns.name.from_text(domain)
    response = _ask(resolvers[0], name.to_text(), "MX", timeout)
    rcode = response.rcode()
    if rcode == dns.rcode.SERVFAIL:
        return [], 2, [f"MX RRset of {domain} is bogus (SERVFAIL)"]
    notes: list[str] = []
    code = 0
    if not response.flags & dns.flags.AD:
        code = 1
        notes.append(
            f"MX RRset of {domain} is not DNSSEC-secure: DANE does not protect the "
            "choice of MX hosts"
        )
    records = [
        r
        for rrset in internet(response.answer)
        if rrset.rdtype == dns.rdatatype.MX and rrset.name == name
        for r in rrset
    ]
    if not records:
        notes.append(f"{domain} has no MX RRset: its own address is the implicit MX (RFC 5321)")
        return [MxTarget(name.to_text(), 0)], code, notes
    targets = []
    for record in sorted(records, key=lambda r: (r.preference, r.exchange.to_text())):
        if record.exchange == dns.name.root:
            notes.append(f"{domain} has a null MX: it accepts no mail (RFC 7505)")
            continue
        targets.append(MxTarget(record.exchange.to_text(), int(record.preference)))
    return targets, code, notes


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
        response = _ask(resolvers[0], host, rdtype, timeout)
        if response.rcode() == dns.rcode.SERVFAIL:
            raise ObserverError(f"{host} {rdtype}: SERVFAIL (bogus?)")
        for rrset in internet(response.answer):
            if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                addresses.extend(str(r.address) for r in rrset)
    if not addresses:
        raise ObserverError(f"{host}: no A or AAAA records")
    return list(dict.fromkeys(addresses))


@dataclass
class Verifier:
    observer: DnsObserver
    probe: TlsProbe
    resolvers: Sequence[str]
    timeout: float = 5.0

    def verify_host(
        self,
        host: str,
        *,
        port: int,
        starttls: str,
        connect: Sequence[str],
        reference_names: Sequence[str],
        now: datetime,
        warn_days: int,
    ) -> list[AddressReport]:
        observation, base, insecure_alias = self._tlsa_base(host, port)
        # The TLSA base domain is the name the leaf must carry (DANE-TA); an alias's own name
        # counts only where its records were used (Postfix does the same).
        others = {base, host.rstrip(".").lower()}
        reference_names = [
            base,
            *(n for n in reference_names if n.rstrip(".").lower() not in others),
        ]
        state, records, lookup_error = tlsa_view(observation)
        if insecure_alias:
            state, records, lookup_error = DnssecState.INSECURE, frozenset(), None
        servfail = tuple(
            e
            for r in observation.resolvers
            if r.state is DnssecState.BOGUS
            for e in r.extended_errors
        )
        if connect:
            endpoints = [parse_server(c, port) for c in connect]
        else:
            try:
                endpoints = [(a, port) for a in host_addresses(host, self.resolvers, self.timeout)]
            except ObserverError as exc:
                failed = ProbeResult(host, error=str(exc))
                return [
                    evaluate(
                        host,
                        state,
                        records,
                        lookup_error,
                        failed,
                        port=port,
                        reference_names=reference_names,
                        now=now,
                        warn_days=warn_days,
                        servfail=servfail,
                    )
                ]
        reports = []
        for address, address_port in endpoints:
            result = self.probe.probe(address, address_port, host, starttls)
            reports.append(
                evaluate(
                    host.rstrip(".") + ".",
                    state,
                    records,
                    lookup_error,
                    result,
                    port=port,
                    reference_names=reference_names,
                    now=now,
                    warn_days=warn_days,
                    servfail=servfail,
                )
            )
        return reports

    def _tlsa_base(self, host: str, port: int) -> tuple[Observation, str, bool]:
        """The TLSA RRset a sender uses for ``host`` (RFC 7672 section 2.2.2): when the host
        name is a CNAME whose expansion is secure, the fully expanded name's TLSA first, the
        original name's when the expanded one has none; when the expansion is not secure but
        the alias itself is, the original name's alone (as in Postfix); else no DANE at all.
        Returns the observation, its base name, and whether the host is an insecure alias."""
        target, secure = (None, False)
        if self.resolvers:
            try:
                target, secure = cname_target(host, self.resolvers, self.timeout)
            except ObserverError:
                target = None
        name = host.rstrip(".").lower()
        if target is None or not secure:
            insecure = target is not None and not alias_secure(host, self.resolvers, self.timeout)
            return self.observer.observe(owner_name(host, port)), name, insecure
        expanded = self.observer.observe(owner_name(target, port))
        if _has_secure_records(expanded):
            return expanded, target, False
        original = self.observer.observe(owner_name(host, port))
        if _has_secure_records(original):
            return original, name, False
        return expanded, target, False


def _has_secure_records(observation: Observation) -> bool:
    state, records, error = tlsa_view(observation)
    return error is None and state is DnssecState.SECURE and bool(records)


def alias_secure(host: str, resolvers: Sequence[str], timeout: float) -> bool:
    """Whether the resolver validates ``host``'s own CNAME record (AD on the CNAME query)."""
    try:
        response = _ask(resolvers[0], host, "CNAME", timeout)
    except ObserverError:
        return False
    return bool(response.flags & dns.flags.AD) and any(
        rrset.rdtype == dns.rdatatype.CNAME for rrset in internet(response.answer)
    )


def cname_target(host: str, resolvers: Sequence[str], timeout: float) -> tuple[str | None, bool]:
    """The fully expanded name when ``host`` is a CNAME (None when it is not), and whether
    the resolver validated the expansion (AD)."""
    name = dns.name.from_text(host)
    response = _ask(resolvers[0], name.to_text(), "A", timeout)
    aliases = {
        rrset.name: rrset[0].target
        for rrset in internet(response.answer)
        if rrset.rdtype == dns.rdatatype.CNAME
    }
    if name not in aliases:
        return None, False
    seen = {name}
    while name in aliases and aliases[name] not in seen:
        name = aliases[name]
        seen.add(name)
    return name.to_text().lower(), bool(response.flags & dns.flags.AD)


def live_chains(
    host: str,
    port: int,
    *,
    connect: Sequence[str],
    starttls: str | None,
    resolvers: Sequence[str],
    timeout: float,
) -> LiveChains:
    """Every distinct chain the server presents on every address (for the withdraw guard)."""
    from cryptography import x509

    from rollover.probe import default_starttls

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


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
