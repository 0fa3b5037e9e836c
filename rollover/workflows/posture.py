"""``rollover verify --domain``'s posture beside the MX walk: TLS-RPT, MTA-STS, DANE coverage
and signing health, looked up through the validating resolver and judged by
:mod:`rollover.core.posture`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rollover.core.association import owner_name
from rollover.core.posture import (
    HostTlsa,
    Posture,
    SignedRRset,
    ZoneKeys,
    check_coverage,
    check_mta_sts,
    check_signing,
    check_tlsrpt,
)
from rollover.edges.live import host_addresses
from rollover.edges.mtasts import fetch_policy, policy_host, policy_url
from rollover.edges.posture_dns import host_tlsa, signed_rrset, txt_records, zone_keys
from rollover.errors import InputError, ObserverError
from rollover.workflows.verification import cname_target

DEFAULT_TIMEOUT = 10.0


def domain_posture(
    domain: str,
    mx_hosts: Sequence[str],
    resolvers: Sequence[str],
    *,
    now: datetime,
    warn_days: int = 7,
    port: int = 25,
    authoritative: Sequence[str] = (),
    mta_sts_ca_file: str | None = None,
    mta_sts_addresses: Sequence[str] = (),
    https_port: int = 443,
    timeout: float = DEFAULT_TIMEOUT,
) -> Posture:
    """The posture of ``domain`` whose MX hosts (preference order, as ``mx_targets`` gives
    them) are ``mx_hosts``. DNS goes to ``resolvers[0]`` (validating); ``authoritative``
    servers, when given, add the signatures they serve (the earliest expiration counts).
    The policy host ``mta-sts.<domain>`` is resolved through the resolver unless
    ``mta_sts_addresses`` are given; ``https_port`` and ``mta_sts_ca_file`` are for tests and
    private PKIs. ``timeout`` bounds each DNS question (at most 3 s) and the policy fetch."""
    if not resolvers:
        raise ObserverError("no resolver to look up the posture with")
    resolver = resolvers[0]
    dns_timeout = min(timeout, 3.0)
    domain = domain.rstrip(".").lower()
    hosts = [h.rstrip(".").lower() + "." for h in mx_hosts]  # as mx_targets names them

    tlsrpt = check_tlsrpt(
        txt_records(resolver, f"_smtp._tls.{domain}.", dns_timeout),
        [txt_records(resolver, f"_smtp._tls.{h}", dns_timeout) for h in hosts],
    )

    views: list[HostTlsa] = []
    rrsets: list[SignedRRset] = []
    for host in hosts:
        view, signed = _tlsa_for(resolver, host, port, dns_timeout, authoritative)
        views.append(view)
        rrsets.append(signed)
    coverage = check_coverage(views, port=port)

    record = txt_records(resolver, f"_mta-sts.{domain}.", dns_timeout)
    text, error = None, None
    if record.error is None and any(t.startswith("v=STSv1") for t in record.texts):
        text, error = _policy(
            domain,
            resolvers,
            addresses=mta_sts_addresses,
            https_port=https_port,
            ca_file=mta_sts_ca_file,
            timeout=timeout,
        )
    mta_sts = check_mta_sts(record, text, error, views, url=policy_url(domain), port=port)

    mx_view = signed_rrset(resolver, f"{domain}.", "MX", dns_timeout, authoritative)[0]
    rrsets.insert(0, mx_view)
    signing = check_signing(
        rrsets,
        _zones(resolver, rrsets, dns_timeout, authoritative),
        now=now,
        warn_days=warn_days,
    )
    return Posture(tlsrpt, mta_sts, coverage, signing)


def _tlsa_for(
    resolver: str, host: str, port: int, timeout: float, authoritative: Sequence[str]
) -> tuple[HostTlsa, SignedRRset]:
    """RFC 7672 section 2.2.2: for a host whose CNAME expansion is secure, the expanded name's
    TLSA RRset first and the original name's when the expanded one gives no DANE."""
    try:
        owner_name(host, port)
    except InputError as exc:
        return HostTlsa(host, "", None, error=str(exc)), SignedRRset(
            host, "TLSA", None, False, error=str(exc)
        )
    try:
        target, secure = cname_target(host, [resolver], timeout)
    except ObserverError:
        target, secure = None, False
    if target is not None and secure:
        view, signed = host_tlsa(resolver, target, port, timeout, authoritative)
        if view.dane(port):
            return HostTlsa(host, view.owner, view.state, view.records), signed
        original = host_tlsa(resolver, host, port, timeout, authoritative)
        if original[0].dane(port):
            return original
        return HostTlsa(host, view.owner, view.state, view.records, view.error), signed
    return host_tlsa(resolver, host, port, timeout, authoritative)


def _policy(
    domain: str,
    resolvers: Sequence[str],
    *,
    addresses: Sequence[str],
    https_port: int,
    ca_file: str | None,
    timeout: float,
) -> tuple[str | None, str | None]:
    if not addresses:
        try:
            addresses = host_addresses(policy_host(domain), resolvers, min(timeout, 3.0))
        except ObserverError as exc:
            return None, str(exc)
    fetched = fetch_policy(domain, addresses, port=https_port, ca_file=ca_file, timeout=timeout)
    return fetched.text, fetched.error


def _zones(
    resolver: str, rrsets: Sequence[SignedRRset], timeout: float, authoritative: Sequence[str]
) -> list[ZoneKeys]:
    """The keys of every signed zone holding a checked name (each zone once; the zone of a
    denial counts too: a broken chain shows there first)."""
    zones = dict.fromkeys(r.zone for r in rrsets if r.zone_signed and r.zone is not None)
    return [zone_keys(resolver, zone, timeout, authoritative) for zone in zones if zone]
