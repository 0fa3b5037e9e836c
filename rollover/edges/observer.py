"""Ask DNS what every authoritative server serves and what validating resolvers hand to senders.

This is the I/O edge for :mod:`rollover.core.observation`: dnspython queries, bounded timeouts,
UDP with TCP fallback on truncation, servers asked in parallel. dnspython is imported here only,
so commands that do not look at DNS never load it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from rollover.core.addresses import format_server, parse_server
from rollover.core.association import Association, associations_from_rdata
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.observation import (
    Observation,
    ResolverAnswer,
    ServerAnswer,
    classify,
)
from rollover.edges.dnsquery import exchange
from rollover.errors import InputError, ObserverError

MAX_CNAME_HOPS = 8


def system_resolvers() -> list[str]:
    """The nameservers of /etc/resolv.conf."""
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except (dns.resolver.NoResolverConfiguration, OSError):
        return []
    return [format_server(str(ns), 53) for ns in resolver.nameservers]


Ask = Callable[[dns.name.Name, dns.rdatatype.RdataType], dns.message.Message]


Each = TypeVar("Each")
Answer = TypeVar("Answer")


def _each(ask: Callable[[Each], Answer], servers: Sequence[Each]) -> list[Answer]:
    """``ask`` of every server at once (one thread each), or directly when there is one."""
    if len(servers) <= 1:
        return [ask(server) for server in servers]
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        return list(pool.map(ask, servers))


@dataclass
class DnsObserver:
    """Observe TLSA owner names.

    ``resolvers``: validating resolvers (``ADDR[:PORT]``); ``authoritative``: fixed authoritative
    servers (hidden primaries, labs) instead of the zone's NS set; ``ns_port``: the port used for
    addresses found through the NS set.
    """

    resolvers: list[str] = field(default_factory=list)
    authoritative: list[str] = field(default_factory=list)
    ns_port: int = 53
    timeout: float = 2.0
    tries: int = 2
    serials: bool = True  # ask each server its zone's SOA serial (a sender's view needs none)

    def __post_init__(self) -> None:
        self._resolvers = [parse_server(r) for r in self.resolvers]
        self._authoritative = [parse_server(a) for a in self.authoritative]
        self._zones: dict[dns.name.Name, dns.name.Name] = {}  # found once per process

    # -- queries ---------------------------------------------------------------------------
    def _send(
        self,
        address: str,
        port: int,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        recursive: bool,
        checking_disabled: bool = False,
        dnssec: bool = True,
    ) -> tuple[dns.message.Message, str]:
        return exchange(
            address,
            port,
            qname,
            rdtype,
            recursive=recursive,
            timeout=self.timeout,
            tries=self.tries,
            checking_disabled=checking_disabled,
            dnssec=dnssec,
        )

    def _asker(self, address: str, port: int, *, recursive: bool) -> Ask:
        """Infrastructure look-ups (SOA walk, NS set) go with CD=1: a bogus zone must still be
        located, so that its servers can be asked and the failure shown. They read no
        signature, so they ask for none (DO clear)."""

        def ask(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
            return self._send(
                address,
                port,
                qname,
                rdtype,
                recursive=recursive,
                checking_disabled=recursive,
                dnssec=False,
            )[0]

        return ask

    # -- zone and servers ------------------------------------------------------------------
    def find_zone(self, name: dns.name.Name) -> dns.name.Name:
        """The zone holding ``name``: the closest enclosing SOA (asked of a resolver, or of the
        first fixed authoritative server when there is no resolver)."""
        if name not in self._zones:
            self._zones[name] = self._closest_zone(name)
        return self._zones[name]

    def _closest_zone(self, name: dns.name.Name) -> dns.name.Name:
        askers: list[Ask] = [self._asker(a, p, recursive=True) for a, p in self._resolvers]
        askers += [self._asker(a, p, recursive=False) for a, p in self._authoritative]
        if not askers:
            raise ObserverError("no resolver and no authoritative server to ask")
        errors = []
        for ask in askers:
            try:
                return _closest_soa(name, ask)
            except ObserverError as exc:
                errors.append(str(exc))
        raise ObserverError(f"cannot find the zone of {name}: {'; '.join(errors)}")

    def zone_servers(self, zone: dns.name.Name) -> list[tuple[str, int]]:
        """The fixed authoritative servers, or every address of the zone's NS set."""
        if self._authoritative:
            return list(self._authoritative)
        if not self._resolvers:
            raise ObserverError("no resolver to look up the NS set with")
        address, port = self._resolvers[0]
        ask = self._asker(address, port, recursive=True)
        ns_names = [r.target for r in _rrset(ask(zone, dns.rdatatype.NS), zone, "NS")]
        servers: list[tuple[str, int]] = []
        for ns in sorted(ns_names):
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                for rdata in _rrset(ask(ns, rdtype), ns, rdtype.name):
                    server = (str(rdata.address), self.ns_port)
                    if server not in servers:
                        servers.append(server)
        if not servers:
            raise ObserverError(f"no addresses found for the NS set of {zone}")
        return servers

    # -- observation -----------------------------------------------------------------------
    def observe(self, owner: str) -> Observation:
        """Ask every authoritative server and every resolver about the TLSA RRset at ``owner``."""
        try:
            name = dns.name.from_text(owner)
        except dns.exception.DNSException as exc:
            raise InputError(f"owner name {owner!r}: {exc}") from None
        try:
            zone = self.find_zone(name)
            target, chain, answers = self._authoritative_view(name, zone)
        except ObserverError as exc:
            return Observation(owner, None, owner, (), (), (), error=str(exc))
        signed = any(a.signed for a in answers)
        resolvers = tuple(
            _each(lambda server: self._resolver_answer(server, name, signed), self._resolvers)
        )
        return Observation(
            owner=name.to_text(),
            zone=zone.to_text(),
            target=target.to_text(),
            cname_chain=tuple(n.to_text() for n in chain),
            authoritative=answers,
            resolvers=resolvers,
        )

    def _authoritative_view(
        self, name: dns.name.Name, zone: dns.name.Name
    ) -> tuple[dns.name.Name, list[dns.name.Name], tuple[ServerAnswer, ...]]:
        """Follow CNAMEs at the owner (the shared ``_dane`` RRset pattern) to where the TLSA
        records really live, and ask every server of that zone."""
        chain: list[dns.name.Name] = []
        current = name
        for _hop in range(MAX_CNAME_HOPS + 1):
            servers = self.zone_servers(zone)
            answers = _each(partial(self._server_answer, name=current, zone=zone), servers)
            targets = {a[1] for a in answers if a[1] is not None}
            if not targets:
                return current, chain, tuple(a[0] for a in answers)
            if len(targets) > 1:
                raise ObserverError(f"{current}: servers disagree on the CNAME target")
            chain.append(current)
            current = targets.pop()
            if current in chain:
                raise ObserverError(f"CNAME loop at {current}")
            zone = self.find_zone(current)
        raise ObserverError(f"more than {MAX_CNAME_HOPS} CNAMEs from {name}")

    def _server_answer(
        self, server: tuple[str, int], name: dns.name.Name, zone: dns.name.Name
    ) -> tuple[ServerAnswer, dns.name.Name | None]:
        address, port = server
        label = format_server(address, port)
        try:
            response, transport = self._send(
                address, port, name, dns.rdatatype.TLSA, recursive=False
            )
            problem = _authoritative_problem(response)
            if problem:
                return ServerAnswer(label, error=problem), None
            cname = _find(response, name, dns.rdatatype.CNAME)
            if cname is not None and _find(response, name, dns.rdatatype.TLSA) is None:
                return ServerAnswer(label), cname[0].target
            serial_response = (
                self._send(address, port, zone, dns.rdatatype.SOA, recursive=False, dnssec=False)[0]
                if self.serials
                else None
            )
        except ObserverError as exc:
            return ServerAnswer(label, error=str(exc).removeprefix(f"{label}: ")), None
        return _parse_server_answer(
            label,
            response=response,
            serial_response=serial_response,
            name=name,
            zone=zone,
            transport=transport,
        ), None

    def _resolver_answer(
        self, server: tuple[str, int], name: dns.name.Name, signed: bool
    ) -> ResolverAnswer:
        address, port = server
        label = format_server(address, port)
        try:
            response, _ = self._send(address, port, name, dns.rdatatype.TLSA, recursive=True)
        except ObserverError as exc:
            return ResolverAnswer(label, error=str(exc).removeprefix(f"{label}: "))
        rcode = dns.rcode.to_text(response.rcode())
        ede = tuple(
            f"EDE {e.code}{': ' + e.text if e.text else ''}" for e in response.extended_errors()
        )
        if rcode not in ("NOERROR", "NXDOMAIN", "SERVFAIL"):
            return ResolverAnswer(label, rcode=rcode, error=f"answered {rcode}")
        ad = bool(response.flags & dns.flags.AD)
        state = classify(rcode, ad, signed)
        # A SERVFAIL whose Extended DNS Errors are not DNSSEC ones (a lame delegation, an
        # unreachable server) is still a failed lookup that senders defer on: kept as the
        # state senders act on, with the EDE saying which (rollover.core.observation).
        rrset = _final_rrset(response, name)
        return ResolverAnswer(
            label,
            state=state,
            rcode=rcode,
            ad=ad,
            records=_associations(rrset),
            ttl=rrset.ttl if rrset is not None else None,
            extended_errors=ede,
        )


def _find(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    for rrset in internet(response.answer):
        if rrset.name == name and rrset.rdtype == rdtype:
            return rrset
    return None


def internet(section: Iterable[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """The class IN RRsets of a section. A server may add others (a CH-class A record parses as
    opaque data with no address): they are never what was asked for."""
    return [rrset for rrset in section if rrset.rdclass == dns.rdataclass.IN]


def _has(response: dns.message.Message, name: dns.name.Name, rdtype: str) -> bool:
    return _find(response, name, dns.rdatatype.from_text(rdtype)) is not None


def _rrset(response: dns.message.Message, name: dns.name.Name, rdtype: str) -> list[Any]:
    rrset = _find(response, name, dns.rdatatype.from_text(rdtype))
    return [] if rrset is None else list(rrset)


def _closest_soa(name: dns.name.Name, ask: Ask) -> dns.name.Name:
    """Walk up from ``name`` until a SOA sits exactly at the name asked."""
    candidate = name
    while True:
        response = ask(candidate, dns.rdatatype.SOA)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise ObserverError(
                f"SOA query for {candidate} answered {dns.rcode.to_text(response.rcode())}"
            )
        if _has(response, candidate, "SOA"):
            return candidate
        # A NODATA/NXDOMAIN answer names the zone in its authority SOA, unless a CNAME led away.
        if not _has(response, candidate, "CNAME"):
            for rrset in internet(response.authority):
                if rrset.rdtype == dns.rdatatype.SOA and candidate.is_subdomain(rrset.name):
                    return rrset.name
        if candidate == dns.name.root:
            raise ObserverError(f"no SOA found above {name}")
        candidate = candidate.parent()


def _authoritative_problem(response: dns.message.Message) -> str | None:
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return f"answered {dns.rcode.to_text(rcode)}"
    if not response.flags & dns.flags.AA:
        return "not authoritative for the zone (no AA bit: lame delegation?)"
    return None


def _parse_server_answer(
    label: str,
    *,
    response: dns.message.Message,
    serial_response: dns.message.Message | None,
    name: dns.name.Name,
    zone: dns.name.Name,
    transport: str,
) -> ServerAnswer:
    tlsa = _find(response, name, dns.rdatatype.TLSA)
    sigs = [
        r
        for r in internet(response.answer)
        if r.name == name and r.rdtype == dns.rdatatype.RRSIG and r.covers == dns.rdatatype.TLSA
    ]
    signed = any(r.rdtype == dns.rdatatype.RRSIG for r in (*response.answer, *response.authority))
    serial = None
    serial_rrsets = serial_response.answer if serial_response is not None else []
    for rrset in internet((*serial_rrsets, *response.authority)):
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == zone:
            serial = int(rrset[0].serial)
            break
    if tlsa is not None:
        original_ttl = max((int(s.original_ttl) for sig in sigs for s in sig), default=None)
        expiration = min((int(s.expiration) for sig in sigs for s in sig), default=None)
        return ServerAnswer(
            label,
            serial=serial,
            exists=True,
            ttl=tlsa.ttl,
            records=_associations(tlsa),
            signed=signed,
            rrsig_original_ttl=original_ttl,
            rrsig_expiration=None
            if expiration is None
            else datetime.fromtimestamp(expiration, UTC),
            transport=transport,
        )
    negative = None
    for rrset in internet(response.authority):
        if rrset.rdtype == dns.rdatatype.SOA:
            negative = min(rrset.ttl, int(rrset[0].minimum))
    return ServerAnswer(
        label,
        serial=serial,
        exists=False,
        signed=signed,
        negative_ttl=negative,
        transport=transport,
    )


def _final_rrset(response: dns.message.Message, name: dns.name.Name) -> dns.rrset.RRset | None:
    """The TLSA RRset at the end of the CNAME chain in a resolver's answer."""
    current = name
    for _ in range(MAX_CNAME_HOPS + 1):
        answer = internet(response.answer)
        for rrset in answer:
            if rrset.name == current and rrset.rdtype == dns.rdatatype.TLSA:
                return rrset
        cname = next(
            (r for r in answer if r.name == current and r.rdtype == dns.rdatatype.CNAME),
            None,
        )
        if cname is None:
            return None
        current = cname[0].target
    return None


def _associations(rrset: dns.rrset.RRset | None) -> frozenset[Association]:
    return frozenset() if rrset is None else associations_from_rdata(rrset)


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
