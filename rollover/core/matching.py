"""DANE matching of a presented chain against TLSA records (RFC 6698, 7671, 7672). Pure.

- DANE-EE(3): the leaf's certificate or SPKI matches; names and expiry are ignored.
- DANE-TA(2): a certificate the server presented matches; the chain from the leaf up to it
  validates (signatures, CA constraints), the leaf carries a reference identifier (RFC 6125
  wildcards), nothing below the trust anchor is expired. The anchor must be in the chain sent.
- PKIX-TA(0)/PKIX-EE(1): unusable for SMTP (RFC 7672 section 3.1.3); elsewhere they also need
  PKIX validation, supplied by the caller as ``pkix_ok``.
- Digest agility (RFC 7671 section 9): for each usage/selector pair only the strongest digest
  present counts; SHA2-512 records hide the SHA2-256 ones.
- Unusable records (unknown parameters, wrong digest length) are ignored and reported.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives._serialization import Encoding

from rollover.core.association import Association, association_data
from rollover.core.material import spki_der


@dataclass(frozen=True)
class Match:
    association: Association
    depth: int  # 0 = the leaf, 1 = its issuer...
    subject: str


@dataclass(frozen=True)
class MatchResult:
    matched: Match | None
    usable: tuple[Association, ...]
    unusable: tuple[tuple[Association, str], ...]
    problems: tuple[str, ...]  # why usable records did not match

    @property
    def ok(self) -> bool:
        return self.matched is not None


def usable_records(
    records: frozenset[Association], port: int
) -> tuple[list[Association], list[tuple[Association, str]]]:
    usable: list[Association] = []
    unusable: list[tuple[Association, str]] = []
    for record in sorted(records):
        p = record.params
        if p.usage > 3 or p.selector > 1 or p.mtype > 2:
            unusable.append((record, f"unknown parameters {p}"))
        elif not record.is_well_formed():
            unusable.append(
                (record, f"digest of {len(record.data)} bytes for matching type {p.mtype}")
            )
        elif p.usage in (0, 1) and port == 25:
            unusable.append((record, "PKIX usages are unusable for SMTP (RFC 7672)"))
        else:
            usable.append(record)
    # Digest algorithm agility: the strongest digest present per usage/selector.
    strongest: dict[tuple[int, int], int] = {}
    for record in usable:
        if record.params.mtype in (1, 2):
            key = (record.params.usage, record.params.selector)
            strongest[key] = max(strongest.get(key, 0), record.params.mtype)
    kept = []
    for record in usable:
        key = (record.params.usage, record.params.selector)
        if record.params.mtype in (1, 2) and record.params.mtype < strongest[key]:
            unusable.append(
                (
                    record,
                    "a stronger digest is published for this usage/selector (RFC 7671 section 9)",
                )
            )
        else:
            kept.append(record)
    return kept, unusable


def _matches(record: Association, certificate: x509.Certificate) -> bool:
    der = certificate.public_bytes(Encoding.DER)
    data = association_data(record.params.selector, record.params.mtype, der, spki_der(certificate))
    return data == record.data


def name_matches(certificate: x509.Certificate, reference: str) -> bool:
    """RFC 6125: DNS-ID in subjectAltName (CN only when there is no DNS-ID); a wildcard only as
    the whole left-most label, matching exactly one label."""
    wanted = reference.rstrip(".").lower()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(a.value)
            for a in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    for name in names:
        presented = name.rstrip(".").lower()
        if presented == wanted:
            return True
        # "*.example" (a wildcard just below a top-level name) matches nothing (OpenSSL).
        if presented.startswith("*.") and "." in wanted and "." in presented[2:]:
            label, _, rest = wanted.partition(".")
            if label and rest == presented[2:] and not _is_ip(wanted):
                return True
    return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def match_chain(
    records: frozenset[Association],
    chain: Sequence[x509.Certificate],
    *,
    port: int,
    reference_names: Sequence[str],
    now: datetime,
    pkix_ok: Callable[[Sequence[x509.Certificate]], bool] | None = None,
) -> MatchResult:
    """The first usable record that authenticates ``chain`` (leaf first, as presented)."""
    usable, unusable = usable_records(records, port)
    problems: list[str] = []
    if not chain:
        return MatchResult(None, tuple(usable), tuple(unusable), ("no certificate presented",))
    leaf = chain[0]
    # DANE-EE first: the cheapest and what RFC 7672 recommends.
    for record in sorted(usable, key=lambda r: (r.params.usage != 3, r.params.usage)):
        usage = record.params.usage
        if usage in (1, 3):
            if not _matches(record, leaf):
                continue
            if usage == 1 and not (pkix_ok and pkix_ok(chain)):
                problems.append(f"{record.params} matches the leaf but PKIX validation failed")
                continue
            return MatchResult(
                Match(record, 0, leaf.subject.rfc4514_string()), tuple(usable), tuple(unusable), ()
            )
        for depth, certificate in enumerate(chain):
            if not _matches(record, certificate):
                continue
            if depth == 0:
                # OpenSSL matches DANE-TA only on issuers the server sends, never the leaf.
                problems.append(
                    f"{record.params} names the leaf itself: a DANE-TA record is a trust "
                    "anchor only for certificates below it, so it does not match"
                )
                continue
            failure = _ta_failure(chain, depth, reference_names, now)
            if failure is None and usage == 0 and not (pkix_ok and pkix_ok(chain)):
                failure = "PKIX validation failed"
            if failure is not None:
                problems.append(
                    f"{record.params} matches {certificate.subject.rfc4514_string()} but {failure}"
                )
                continue
            return MatchResult(
                Match(record, depth, certificate.subject.rfc4514_string()),
                tuple(usable),
                tuple(unusable),
                (),
            )
        if usage == 2 and record.params.mtype == 0:
            # A full certificate or public key in the record is an anchor the server need
            # not send (OpenSSL adds it to the chain it builds); a digest is not.
            anchor = _unsent_anchor(record, chain)
            if anchor is not None:
                extended = [*chain, anchor]
                failure = _ta_failure(extended, len(chain), reference_names, now)
                if failure is None:
                    return MatchResult(
                        Match(record, len(chain), anchor.subject.rfc4514_string()),
                        tuple(usable),
                        tuple(unusable),
                        (),
                    )
                problems.append(f"{record.params} (not sent) is an anchor but {failure}")
    if usable and not problems:
        problems.append("no usable TLSA record matches the presented chain")
    if not usable:
        problems.append("no usable TLSA records")
    return MatchResult(None, tuple(usable), tuple(unusable), tuple(problems))


def _unsent_anchor(
    record: Association, chain: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The trust anchor a ``2 0 0`` / ``2 1 0`` record carries, when the chain sent does not
    hold it: the certificate itself, or for a bare public key a stand-in certificate with that
    key named as the issuer of the chain's top (only its key and name are used)."""
    if record.params.selector == 0:
        try:
            certificate = x509.load_der_x509_certificate(record.data)
        except ValueError:
            return None
        return None if certificate in chain else certificate
    from rollover.core.tapath import stand_in_anchor

    return stand_in_anchor(record.data, chain)


def _ta_failure(
    chain: Sequence[x509.Certificate], anchor: int, reference_names: Sequence[str], now: datetime
) -> str | None:
    """Why the chain does not validate up to the trust anchor at ``anchor``, or None: the path
    by ``cryptography.x509.verification`` (rollover.core.tapath), then the names (RFC 7672 section
    3.2.3: DANE-TA needs a reference identifier in the leaf)."""
    from rollover.core.tapath import ta_failure

    failure = ta_failure(chain, anchor, now)
    if failure is not None:
        return failure
    if reference_names and not any(name_matches(chain[0], n) for n in reference_names):
        return f"the leaf's names do not include {', '.join(reference_names)}"
    return None


def spki_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(spki_der(certificate)).hexdigest()
