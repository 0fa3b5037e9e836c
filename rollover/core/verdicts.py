"""`rollover verify`: what a DANE sender will conclude about each host and address.

:func:`evaluate` is pure (observation + probe result + clock in, verdict out). :class:`Verifier`
is the driver: MX walk, address look-ups, probes, via the observer and the probe passed in.
Exit codes follow Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; across hosts the most severe
wins, CRITICAL > UNKNOWN > WARNING > OK.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography import x509

from rollover.core.association import Association
from rollover.core.matching import Match, match_chain, spki_sha256, usable_records
from rollover.core.observation import DnssecState, Observation, servfail_reason
from rollover.core.presented import PresentedChain, ProbeResult

STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
SEVERITY = {0: 0, 1: 1, 3: 2, 2: 3}


def worst(codes: Sequence[int]) -> int:
    return max(codes, key=lambda c: SEVERITY[c], default=0)


PkixValidator = Callable[[str, datetime], Callable[[Sequence[x509.Certificate]], bool]]


@dataclass(frozen=True)
class ChainReport:
    asked: str
    protocol: str
    cipher: str
    certificates: tuple[dict[str, str], ...]
    match: Match | None
    problems: tuple[str, ...]
    days_left: int | None


@dataclass(frozen=True)
class AddressReport:
    host: str
    address: str
    exit: int
    dnssec: str | None
    reasons: tuple[str, ...]
    chains: tuple[ChainReport, ...] = ()
    unusable: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return STATUS[self.exit]


def _describe(certificate: x509.Certificate) -> dict[str, str]:
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "spki_sha256": spki_sha256(certificate),
        "not_after": certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def tlsa_view(
    observation: Observation,
) -> tuple[DnssecState | None, frozenset[Association], str | None]:
    """The DNSSEC state and the records a sender would use, or an error."""
    if observation.error is not None:
        return None, frozenset(), observation.error
    answered = [r for r in observation.resolvers if r.error is None]
    if answered:
        states = [r.state for r in answered]
        for state in (DnssecState.BOGUS, DnssecState.INDETERMINATE, DnssecState.INSECURE):
            if state in states:
                return state, observation.records, None
        return DnssecState.SECURE, answered[0].records, None
    if observation.resolvers:
        return None, frozenset(), "; ".join(r.error or "" for r in observation.resolvers)
    return None, observation.records, None


def evaluate(
    host: str,
    state: DnssecState | None,
    records: frozenset[Association],
    lookup_error: str | None,
    probe: ProbeResult,
    *,
    port: int,
    reference_names: Sequence[str],
    now: datetime,
    warn_days: int,
    servfail: tuple[str, ...] = (),
    pkix: PkixValidator | None = None,
) -> AddressReport:
    """``servfail``: the Extended DNS Errors of a resolver's SERVFAIL, which say whether it
    is a DNSSEC failure (bogus) or a lookup failure (a lame delegation, a server failure).
    ``pkix`` builds the PKIX check of usages 0 and 1 for a name and a time (the system trust
    store, :func:`rollover.edges.trust.pkix_validator`); without it they never match."""
    reasons: list[str] = []
    codes: list[int] = []

    def note(code: int, reason: str) -> None:
        codes.append(code)
        reasons.append(reason)

    dnssec = None if state is None else str(state)
    usable = usable_records(records, port)[0]
    if lookup_error is not None:
        note(3, f"TLSA lookup failed: {lookup_error}")
    elif state is DnssecState.BOGUS:
        note(2, servfail_reason(servfail))
    elif state in (DnssecState.INSECURE, DnssecState.INDETERMINATE):
        note(1, f"TLSA RRset is {state}: mail is not DANE-protected (opportunistic TLS)")
    elif state is DnssecState.SECURE and not records:
        note(
            1,
            "no TLSA records (a secure denial, RFC 7672 section 2.2): senders use "
            "opportunistic TLS; mail is not DANE-protected",
        )
    elif state is DnssecState.SECURE and not usable:
        note(
            1,
            "only unusable TLSA records (RFC 7672 section 2.2): senders use TLS without "
            "authentication; mail is not DANE-protected",
        )
    secure = state is DnssecState.SECURE and bool(usable)
    if probe.error is not None:
        if probe.starttls_missing:
            note(
                2 if secure else 1,
                f"{probe.error}: under a secure TLSA RRset this is a hard failure (RFC 7672)"
                if secure
                else probe.error,
            )
        else:
            note(3, f"probe failed: {probe.error}")
    reports = []
    unusable: tuple[str, ...] = ()
    for presented in probe.distinct_chains:
        report, chain_codes, chain_reasons, unusable = _chain(
            presented,
            records,
            port=port,
            reference_names=reference_names,
            now=now,
            warn_days=warn_days,
            enforce=secure,
            pkix=pkix,
        )
        reports.append(report)
        codes.extend(chain_codes)
        reasons.extend(chain_reasons)
    return AddressReport(
        host, probe.address, worst(codes), dnssec, tuple(reasons), tuple(reports), unusable
    )


def _chain(
    presented: PresentedChain,
    records: frozenset[Association],
    *,
    port: int,
    reference_names: Sequence[str],
    now: datetime,
    warn_days: int,
    enforce: bool,
    pkix: PkixValidator | None,
) -> tuple[ChainReport, list[int], list[str], tuple[str, ...]]:
    codes: list[int] = []
    reasons: list[str] = []
    from rollover.core.material import split_presented

    # An issuer in a loose (BER) encoding is reported, and the leaf still counts (a sender
    # matching 3 1 1 never needs the issuer); without the leaf nothing is authenticated.
    chain, unparsed = split_presented(presented.certificates)
    leaf_unparsed = bool(presented.certificates) and not chain
    pkix_ok = None
    if (
        pkix is not None
        and port != 25
        and reference_names
        and any(a.params.usage in (0, 1) for a in records)
    ):
        pkix_ok = pkix(reference_names[0], now)
    result = match_chain(
        records, chain, port=port, reference_names=reference_names, now=now, pkix_ok=pkix_ok
    )
    kind = presented.asked if presented.asked != "default" else "default handshake"
    if leaf_unparsed:
        codes.append(2 if enforce else 1)
        reasons.append(f"{kind}: {unparsed[0]}: no sender can authenticate it")
    for problem in unparsed[1 if leaf_unparsed else 0 :]:
        reasons.append(f"{kind}: {problem} (ignored)")
    if result.usable and not result.ok and not leaf_unparsed:
        codes.append(2 if enforce else 1)
        reasons.append(f"{kind}: " + "; ".join(result.problems))
    days_left = None
    if chain:
        leaf = chain[0]
        days_left = (leaf.not_valid_after_utc - now).days
        expired_ok = result.matched is not None and result.matched.association.params.usage == 3
        if days_left < 0:
            if not expired_ok:
                codes.append(1)
            reasons.append(
                f"{kind}: the leaf expired {-days_left} days ago"
                + (" (DANE-EE ignores expiry)" if expired_ok else "")
            )
        elif days_left <= warn_days:
            codes.append(1)
            reasons.append(f"{kind}: the leaf expires in {days_left} days")
    report = ChainReport(
        presented.asked,
        presented.protocol,
        presented.cipher,
        tuple(_describe(c) for c in chain),
        result.matched,
        result.problems,
        days_left,
    )
    unusable = tuple(f"{a}: {why}" for a, why in result.unusable)
    return report, codes, reasons, unusable


def report_json(reports: Sequence[AddressReport], notes: Sequence[str] = ()) -> dict[str, Any]:
    code = worst([r.exit for r in reports] + ([3] if not reports else []))
    return {
        "status": STATUS[code],
        "exit": code,
        "notes": list(notes),
        "results": [
            {
                "host": r.host,
                "address": r.address,
                "status": r.status,
                "exit": r.exit,
                "dnssec": r.dnssec,
                "reasons": list(r.reasons),
                "unusable_records": list(r.unusable),
                "chains": [
                    {
                        "asked": c.asked,
                        "protocol": c.protocol,
                        "cipher": c.cipher,
                        "matched": None
                        if c.match is None
                        else {
                            "record": str(c.match.association),
                            "depth": c.match.depth,
                            "subject": c.match.subject,
                        },
                        "problems": list(c.problems),
                        "days_left": c.days_left,
                        "certificates": list(c.certificates),
                    }
                    for c in r.chains
                ],
            }
            for r in reports
        ],
    }


def report_text(reports: Sequence[AddressReport], notes: Sequence[str] = ()) -> str:
    lines = [f"note: {n}" for n in notes]
    for r in reports:
        lines.append(f"{r.status:<8} {r.host} {r.address}  TLSA {r.dnssec or 'unknown'}")
        for c in r.chains:
            if c.match is not None:
                lines.append(
                    f"  {c.asked}: matched {c.match.association.params} at depth "
                    f"{c.match.depth} ({c.match.subject}); {c.protocol} {c.cipher}"
                )
            else:
                lines.append(f"  {c.asked}: no match; {c.protocol} {c.cipher}")
            for depth, cert in enumerate(c.certificates):
                lines.append(f"    [{depth}] {cert['subject']}  issuer {cert['issuer']}")
                lines.append(
                    f"        spki sha256 {cert['spki_sha256']}  notAfter {cert['not_after']}"
                )
            if c.days_left is not None:
                lines.append(f"    leaf expires in {c.days_left} days")
        for u in r.unusable:
            lines.append(f"  ignored record {u}")
        for reason in r.reasons:
            lines.append(f"  - {reason}")
    code = worst([r.exit for r in reports] + ([3] if not reports else []))
    lines.append(STATUS[code])
    return "\n".join(lines) + "\n"


def pinned_issuer_check(report: AddressReport, pinned: set[str]) -> AddressReport:
    """The report with a WARNING for each presented chain whose issuer's SPKI (SHA-256 hex)
    is not in ``pinned`` (trust-anchor pinning: an unexpected CA signed the server's leaf)."""
    reasons = list(report.reasons)
    code = report.exit
    for chain in report.chains:
        if len(chain.certificates) > 1 and chain.certificates[1]["spki_sha256"] not in pinned:
            reasons.append(
                f"{chain.asked}: the served issuer {chain.certificates[1]['subject']}"
                " is not among the pinned trust_anchors"
            )
            code = worst([code, 1])
    return replace(report, reasons=tuple(reasons), exit=code)
