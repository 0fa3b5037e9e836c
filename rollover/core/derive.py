"""Derive TLSA records from loaded material: which certificate each usage hashes, and the advice.

Pure: the current time comes in as an argument, nothing is read or printed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives._serialization import Encoding
from cryptography.hazmat.primitives.asymmetric import rsa

from rollover.core.association import Association, association_data
from rollover.core.chain import build_chain, is_ca, select_trust_anchor
from rollover.core.keys import describe_key, key_type
from rollover.core.material import Material, spki_der
from rollover.core.params import TlsaParams
from rollover.errors import InputError


@dataclass(frozen=True)
class DerivedRecord:
    """One TLSA record plus what it was computed from (for JSON output and warnings)."""

    owner: str
    ttl: int | None
    association: Association
    source: str
    key_type: str
    subject: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None


@dataclass
class Derivation:
    records: list[DerivedRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeriveOptions:
    params: tuple[TlsaParams, ...]
    owner: str
    port: int = 25
    ttl: int | None = None
    ta_index: int | None = None
    ta_subject: str | None = None


def port_warnings(params: tuple[TlsaParams, ...], port: int) -> list[str]:
    """Advice that depends only on the parameters, not on the source."""
    warnings = []
    for p in params:
        if port == 25 and p.usage in (0, 1):
            warnings.append(
                f"usage {p.usage} ({p.mnemonic.split()[0]}) on port 25: RFC 7672 section 3.1.3 "
                "says SMTP servers SHOULD NOT publish PKIX-TA(0) or PKIX-EE(1); use 3 1 1 or 2 0 1"
            )
        if p.selector == 0 and p.mtype == 0:
            warnings.append(
                f"{p}: a full-certificate record (x 0 0) is large and breaks at every renewal; "
                "prefer 3 1 1"
            )
    return warnings


def derive(material: Material, options: DeriveOptions, now: datetime) -> Derivation:
    """Every record the options ask for from one source, with warnings and per-record errors."""
    result = Derivation(warnings=list(material.notes))
    if material.certificates:
        _derive_from_certificates(material, options, now, result)
    else:
        _derive_from_key(material, options, result)
    return result


def _derive_from_key(material: Material, options: DeriveOptions, result: Derivation) -> None:
    if material.key_spki is None or material.public_key is None:
        raise InputError(f"{material.label}: holds no certificate, key or CSR")
    kind = material.key_kind or "key"
    _warn_weak_key(material.label, material.public_key, result)
    for p in options.params:
        if p.selector == 0:
            result.errors.append(
                f"{material.label}: a {kind} has no certificate; selector 0 ({p}) needs a "
                "certificate source (use selector 1, e.g. 3 1 1)"
            )
            continue
        data = association_data(p.selector, p.mtype, None, material.key_spki)
        result.records.append(
            DerivedRecord(
                options.owner,
                options.ttl,
                Association(p, data),
                material.label,
                key_type(material.public_key),
            )
        )


def _derive_from_certificates(
    material: Material, options: DeriveOptions, now: datetime, result: Derivation
) -> None:
    label = material.label
    chain = build_chain(label, material.certificates)
    if chain.note:
        result.warnings.append(chain.note)
    ta_index: int | None = None
    for p in options.params:
        if p.usage in (0, 2):
            if ta_index is None:
                try:
                    ta_index = select_trust_anchor(
                        label, chain, options.ta_index, options.ta_subject
                    )
                except InputError as exc:
                    result.errors.append(str(exc))
                    continue
            certificate = chain.certificates[ta_index]
            if p.usage == 2 and not is_ca(certificate):
                result.warnings.append(
                    f"{label}: usage 2 (DANE-TA) hashes {certificate.subject.rfc4514_string()}, "
                    "which is not a CA certificate"
                )
        else:
            certificate = chain.leaf
        if p.usage != 3:
            _warn_validity(label, certificate, p, now, result)
        _warn_weak_key(label, _public_key(certificate), result)
        cert_der = certificate.public_bytes(Encoding.DER)
        data = association_data(p.selector, p.mtype, cert_der, spki_der(certificate))
        result.records.append(
            DerivedRecord(
                options.owner,
                options.ttl,
                Association(p, data),
                label,
                describe_key(certificate),
                certificate.subject.rfc4514_string(),
                certificate.issuer.rfc4514_string(),
                certificate.not_valid_before_utc,
                certificate.not_valid_after_utc,
            )
        )


def _warn_validity(
    label: str, certificate: x509.Certificate, p: TlsaParams, now: datetime, result: Derivation
) -> None:
    """Usages 0, 1 and 2 check expiry (RFC 7672 section 3.1.2); DANE-EE(3) ignores it."""
    subject = certificate.subject.rfc4514_string()
    if now > certificate.not_valid_after_utc:
        result.warnings.append(
            f"{label}: {subject} expired on {certificate.not_valid_after_utc:%Y-%m-%d}; "
            f"usage {p.usage} records fail once the certificate is expired"
        )
    elif now < certificate.not_valid_before_utc:
        result.warnings.append(
            f"{label}: {subject} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}; "
            f"usage {p.usage} records fail until then"
        )


def _public_key(certificate: x509.Certificate) -> object:
    """The parsed key, or None for one this library cannot parse (its SPKI still hashes)."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def _warn_weak_key(label: str, public_key: object, result: Derivation) -> None:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        result.warnings.append(f"{label}: RSA key of {public_key.key_size} bits is under 2048 bits")
