"""The DNS look-ups of the posture checks (:mod:`rollover.core.posture`): TXT records, TLSA
RRsets with their signatures, zone keys and the parent's DS, through a validating resolver.

Security comes from the resolver's AD bit (RFC 6840 section 5.7), as in :mod:`.live`.
Signatures are read with DO set; the keys and DS RRsets with CD set as well, so that a broken
chain of trust can still be looked at and named. DS digests are computed from the DNSKEYs
with dnspython's ``dns.dnssec.make_ds``, and each DNSKEY RRSIG is checked against the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from rollover.core.addresses import format_server, parse_server
from rollover.core.association import associations_from_rdata, owner_name
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.posture import Dnskey, Ds, HostTlsa, Rrsig, SignedRRset, TxtAnswer, ZoneKeys
from rollover.edges.dnsquery import exchange
from rollover.edges.observer import internet
from rollover.errors import ObserverError

MAX_CNAME_HOPS = 8


def _ask(
    server: str,
    name: dns.name.Name,
    rdtype: str,
    timeout: float,
    *,
    recursive: bool = True,
    dnssec: bool = True,
    checking_disabled: bool = False,
) -> dns.message.Message:
    address, port = parse_server(server)
    return exchange(
        address,
        port,
        name,
        rdtype,
        recursive=recursive,
        timeout=timeout,
        tries=2,
        dnssec=dnssec,
        checking_disabled=checking_disabled,
    )[0]


def _final(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> tuple[dns.name.Name, dns.rrset.RRset | None]:
    """The name at the end of the answer's CNAME chain and its RRset of ``rdtype``."""
    answer = internet(response.answer)
    current = name
    for _ in range(MAX_CNAME_HOPS + 1):
        for rrset in answer:
            if rrset.name == current and rrset.rdtype == rdtype:
                return current, rrset
        cname = next(
            (r for r in answer if r.name == current and r.rdtype == dns.rdatatype.CNAME), None
        )
        if cname is None:
            break
        current = cname[0].target
    return current, None


def _signatures(
    response: dns.message.Message,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    server: str,
) -> list[Rrsig]:
    return [
        Rrsig(
            key_tag=int(sig.key_tag),
            algorithm=int(sig.algorithm),
            signer=sig.signer.to_text(),
            inception=datetime.fromtimestamp(int(sig.inception), UTC),
            expiration=datetime.fromtimestamp(int(sig.expiration), UTC),
            server=server,
        )
        for rrset in internet(response.answer)
        if rrset.name == name and rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == rdtype
        for sig in rrset
    ]


def _zone_of(response: dns.message.Message, signatures: Sequence[Rrsig]) -> str | None:
    """The zone that signed the answer (the RRSIG signer), or for a denial the SOA's owner."""
    if signatures:
        return signatures[0].signer
    for rrset in internet(response.authority):
        if rrset.rdtype == dns.rdatatype.SOA:
            return str(rrset.name.to_text())
    for rrset in internet(response.authority):
        if rrset.rdtype == dns.rdatatype.RRSIG:
            return str(rrset[0].signer.to_text())
    return None


def txt_records(resolver: str, name: str, timeout: float) -> TxtAnswer:
    """The TXT records at ``name`` (CNAMEs followed), each record's strings concatenated."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        return TxtAnswer(name, error=f"not a DNS name: {exc}")
    label = qname.to_text()
    try:
        response = _ask(resolver, qname, "TXT", timeout, dnssec=False)
    except ObserverError as exc:
        return TxtAnswer(label, error=f"resolver {exc}")
    rcode = response.rcode()
    if rcode == dns.rcode.SERVFAIL:
        return TxtAnswer(label, error="SERVFAIL (bogus or unreachable)")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return TxtAnswer(label, error=f"answered {dns.rcode.to_text(rcode)}")
    _, rrset = _final(response, qname, dns.rdatatype.TXT)
    texts = (
        ()
        if rrset is None
        else tuple(b"".join(r.strings).decode("utf-8", "replace") for r in rrset)
    )
    return TxtAnswer(label, tuple(sorted(texts)))


def signed_rrset(
    resolver: str,
    name: str,
    rdtype: str,
    timeout: float,
    authoritative: Sequence[str] = (),
) -> tuple[SignedRRset, dns.message.Message | None, str | None]:
    """An RRset's signatures as the resolver hands them out (asked again with CD when it
    answers SERVFAIL, to see what is broken), plus those every ``authoritative`` server
    serves (a lagging server may hand out older signatures). Also the resolver's response
    and the DNSSEC state senders see: ``secure`` (AD), ``bogus`` (SERVFAIL) or
    ``insecure``; None when the look-up failed."""
    qname = dns.name.from_text(name)
    kind = dns.rdatatype.from_text(rdtype)
    try:
        response = _ask(resolver, qname, rdtype, timeout)
        state = "secure" if response.flags & dns.flags.AD else "insecure"
        if response.rcode() == dns.rcode.SERVFAIL:
            state = "bogus"
            response = _ask(resolver, qname, rdtype, timeout, checking_disabled=True)
    except ObserverError as exc:
        failed = SignedRRset(qname.to_text(), rdtype, None, False, error=f"resolver {exc}")
        return failed, None, None
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        error = f"answered {dns.rcode.to_text(response.rcode())}"
        if state == "bogus":
            error = "SERVFAIL (bogus), and " + error + " with checking disabled"
        return SignedRRset(qname.to_text(), rdtype, None, False, error=error), response, None
    final, rrset = _final(response, qname, kind)
    signatures = _signatures(response, final, kind, format_server(*parse_server(resolver)))
    for server in authoritative:
        signatures += _authoritative_signatures(server, final, kind, timeout)
    signed = any(
        r.rdtype == dns.rdatatype.RRSIG for r in internet((*response.answer, *response.authority))
    )
    view = SignedRRset(
        final.to_text(),
        rdtype,
        _zone_of(response, signatures),
        rrset is not None,
        tuple(signatures),
        zone_signed=signed,
    )
    return view, response, state


def _authoritative_signatures(
    server: str, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, timeout: float
) -> list[Rrsig]:
    """Signatures an authoritative server serves for ``name``; a server that is not
    authoritative for it (no AA) or does not answer adds none: the resolver's view stands."""
    try:
        response = _ask(server, name, rdtype.name, timeout, recursive=False)
    except ObserverError:
        return []
    if not response.flags & dns.flags.AA or response.rcode() != dns.rcode.NOERROR:
        return []
    return _signatures(response, name, rdtype, format_server(*parse_server(server)))


def host_tlsa(
    resolver: str,
    host: str,
    port: int,
    timeout: float,
    authoritative: Sequence[str] = (),
) -> tuple[HostTlsa, SignedRRset]:
    """The TLSA RRset at ``_PORT._tcp.HOST``: its DNSSEC state and records for coverage, its
    signatures for signing health. A bogus RRset's records count for nothing."""
    owner = owner_name(host, port)
    view, response, state = signed_rrset(resolver, owner, "TLSA", timeout, authoritative)
    if response is None or state is None:
        return HostTlsa(host, owner, None, error=view.error), view
    _, rrset = _final(response, dns.name.from_text(owner), dns.rdatatype.TLSA)
    records = frozenset() if rrset is None or state == "bogus" else associations_from_rdata(rrset)
    return HostTlsa(host, owner, state, records), view


def zone_keys(
    resolver: str, zone: str, timeout: float, authoritative: Sequence[str] = ()
) -> ZoneKeys:
    """The zone's DNSKEY RRset (each RRSIG checked against the keys), the digests of each key
    for the DS digest types the parent uses, and the parent's DS RRset."""
    import dns.dnssec
    from dns.dnssectypes import DSDigest

    name = dns.name.from_text(zone)
    label = name.to_text()
    view, response, _ = signed_rrset(resolver, label, "DNSKEY", timeout, authoritative)
    ds: list[Ds] = []
    ds_error = None
    if name != dns.name.root:
        try:
            ds_response = _ask(resolver, name, "DS", timeout, checking_disabled=True)
            if ds_response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                ds_error = f"answered {dns.rcode.to_text(ds_response.rcode())}"
            else:
                _, ds_rrset = _final(ds_response, name, dns.rdatatype.DS)
                ds = [
                    Ds(int(r.key_tag), int(r.algorithm), int(r.digest_type), r.digest.hex())
                    for r in (ds_rrset or [])
                ]
        except ObserverError as exc:
            ds_error = f"resolver {exc}"
    if view.error is not None or response is None:
        return ZoneKeys(label, view, ds=tuple(ds), ds_error=ds_error)
    _, rrset = _final(response, name, dns.rdatatype.DNSKEY)
    if rrset is None:
        return ZoneKeys(label, view, ds=tuple(ds), ds_error=ds_error)
    digest_types = sorted({d.digest_type for d in ds})
    keys = []
    for key in rrset:
        digests = []
        for digest_type in digest_types:
            try:
                made = dns.dnssec.make_ds(name, key, DSDigest.make(digest_type))
            except (dns.exception.DNSException, ValueError):
                continue  # a digest type dnspython does not know: no match possible
            digests.append((digest_type, made.digest.hex()))
        keys.append(
            Dnskey(dns.dnssec.key_id(key), int(key.algorithm), int(key.flags), tuple(digests))
        )
    verified = _verify_dnskey_signatures(response, name, rrset, view.signatures)
    return ZoneKeys(
        label,
        SignedRRset(view.name, "DNSKEY", label, True, verified),
        tuple(keys),
        tuple(ds),
        ds_error,
    )


def _verify_dnskey_signatures(
    response: dns.message.Message,
    name: dns.name.Name,
    rrset: dns.rrset.RRset,
    signatures: Sequence[Rrsig],
) -> tuple[Rrsig, ...]:
    """Each RRSIG over the DNSKEY RRset, with ``verified`` set: whether it is a good signature
    by one of the keys (checked at its own inception time, so that expiry is judged apart);
    None for an algorithm dnspython cannot check."""
    import dataclasses

    import dns.dnssec
    from dns.exception import UnsupportedAlgorithm, ValidationFailure

    rdatas = {
        (int(sig.key_tag), int(sig.algorithm), int(sig.expiration)): sig
        for rr in internet(response.answer)
        if rr.name == name
        and rr.rdtype == dns.rdatatype.RRSIG
        and rr.covers == dns.rdatatype.DNSKEY
        for sig in rr
    }
    checked = []
    for sig in signatures:
        rdata = rdatas.get((sig.key_tag, sig.algorithm, int(sig.expiration.timestamp())))
        verified: bool | None = None
        if rdata is not None:
            try:
                dns.dnssec.validate_rrsig(
                    rrset, rdata, {name: rrset}, now=float(rdata.inception) + 1
                )
                verified = True
            except UnsupportedAlgorithm:
                verified = None
            except ValidationFailure:
                verified = False
        checked.append(dataclasses.replace(sig, verified=verified))
    return tuple(checked)


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
