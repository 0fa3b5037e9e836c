"""The network side of `rollover verify`: MX walk, address look-ups, probes, TLSA observation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from rollover.config import ServiceConfig
from rollover.core.addresses import parse_server
from rollover.core.association import owner_name
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.matching import spki_sha256
from rollover.core.observation import DnssecState, Observation
from rollover.core.presented import ProbeResult
from rollover.core.verdicts import AddressReport, evaluate, pinned_issuer_check, tlsa_view
from rollover.edges.live import ask_resolver, host_addresses
from rollover.edges.observer import DnsObserver, internet
from rollover.edges.probe import TlsProbe
from rollover.edges.trust import load_anchors, pkix_validator
from rollover.errors import ObserverError


@dataclass(frozen=True)
class MxTarget:
    host: str
    preference: int


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
    response = ask_resolver(resolvers[0], name.to_text(), "MX", timeout)
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


@dataclass
class Verifier:
    observer: DnsObserver
    probe: TlsProbe
    resolvers: Sequence[str]
    timeout: float = 5.0
    # The TLSA observation the last verify_host judged by (its signatures: `metrics`).
    observed: Observation | None = field(default=None, init=False, repr=False)

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
        self.observed = observation
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
                    pkix=pkix_validator,
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
        response = ask_resolver(resolvers[0], host, "CNAME", timeout)
    except ObserverError:
        return False
    return bool(response.flags & dns.flags.AD) and any(
        rrset.rdtype == dns.rdatatype.CNAME for rrset in internet(response.answer)
    )


def cname_target(host: str, resolvers: Sequence[str], timeout: float) -> tuple[str | None, bool]:
    """The fully expanded name when ``host`` is a CNAME (None when it is not), and whether
    the resolver validated the expansion (AD)."""
    name = dns.name.from_text(host)
    response = ask_resolver(resolvers[0], name.to_text(), "A", timeout)
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


def check_pinning(service: ServiceConfig, reports: list[AddressReport]) -> list[AddressReport]:
    """WARNING where a presented chain's issuer is not among the service's pinned
    ``trust_anchors``: ``verify --service`` and ``metrics`` both judge a service by this."""
    if not service.trust_anchors:
        return reports
    pinned = {spki_sha256(c) for c in load_anchors(service.trust_anchors)}
    return [pinned_issuer_check(report, pinned) for report in reports]


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
