"""DANE-TA path validation (RFC 7671 section 5.2.2, RFC 7672 section 3.1.2): the chain from the
leaf up to the certificate a usage 2 record names, validated by ``cryptography.x509.verification``
with that certificate as the only trust root. Pure.

The policy is the WebPKI one relaxed where OpenSSL, the DANE code inside Postfix and Exim, does
not insist: key identifiers and keyUsage may be absent, and the leaf need not carry a
subjectAltName (the name is checked here, RFC 6125, with the common name only when there is no
DNS-ID, as OpenSSL does). What it keeps: signatures, CA basic constraints and keyCertSign where
keyUsage is present, pathLenConstraint, name constraints, unknown critical extensions refused,
a leaf extendedKeyUsage that allows server authentication, every certificate within its dates.
The anchor's own dates count too: OpenSSL checks them when the anchor is sent in the chain
(RFC 5280 section 6.1 would let a validator ignore them). What cryptography refuses beyond
OpenSSL (see the README): signature algorithms outside the WebPKI set, such as Ed25519 or SHA-1,
and RSA keys under 2048 bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

_SERVER_AUTH = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
_ANY_EKU = x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE


def _eku_allows_server(_policy: Any, _cert: x509.Certificate, ext: Any) -> None:
    if ext is not None and _SERVER_AUTH not in ext and _ANY_EKU not in ext:
        raise ValueError("the leaf's extendedKeyUsage does not allow server authentication")


def _verifier(anchor: x509.Certificate, now: datetime) -> Any:
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )

    agnostic = Criticality.AGNOSTIC
    ca = (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.AuthorityKeyIdentifier, agnostic, None)
        .may_be_present(x509.SubjectKeyIdentifier, agnostic, None)
        .may_be_present(x509.KeyUsage, agnostic, _key_cert_sign)
    )
    ee = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.AuthorityKeyIdentifier, agnostic, None)
        .may_be_present(x509.SubjectAlternativeName, agnostic, None)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _eku_allows_server)
    )
    return (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(now)
        .extension_policies(ca_policy=ca, ee_policy=ee)
        .build_client_verifier()  # the name is checked by the caller (CN fallback)
    )


def _key_cert_sign(_policy: Any, _cert: x509.Certificate, ext: Any) -> None:
    if ext is not None and not ext.key_cert_sign:
        raise ValueError("a CA certificate whose keyUsage lacks keyCertSign")


def ta_failure(chain: Sequence[x509.Certificate], anchor: int, now: datetime) -> str | None:
    """Why ``chain`` (leaf first, as presented) does not validate up to ``chain[anchor]``
    (1 or more: DANE-TA names an issuer), or None when it does."""
    from cryptography.x509.verification import VerificationError

    trust = chain[anchor]
    at = now
    if not _within(trust, now):
        if _self_signed(trust):
            when = (
                f"expired on {trust.not_valid_after_utc:%Y-%m-%d}"
                if now > trust.not_valid_after_utc
                else "is not valid yet"
            )
            return f"the trust anchor {trust.subject.rfc4514_string()} {when}"
        # OpenSSL checks the dates of a self-signed anchor only; cryptography checks every
        # anchor's. The others' dates here, the rest at a moment the anchor was valid.
        for i, certificate in enumerate(chain):
            if i != anchor and not _within(certificate, now):
                return _reason("not valid at validation time", [certificate], now)
        at = max(trust.not_valid_before_utc, min(now, trust.not_valid_after_utc))
    intermediates = [c for i, c in enumerate(chain) if i not in (0, anchor)]
    try:
        _verifier(trust, at).verify(chain[0], intermediates)
    except VerificationError as exc:
        text = str(exc)
        if "Forbidden public key algorithm" in text or "Forbidden signature algorithm" in text:
            return _outside_webpki(chain, anchor, now)
        return _reason(text, chain, now)
    except ValueError as exc:
        return f"the chain cannot be validated: {exc}"
    return None


def _outside_webpki(chain: Sequence[x509.Certificate], anchor: int, now: datetime) -> str | None:
    """For keys and signatures the WebPKI policy forbids but OpenSSL accepts (Ed25519, Ed448,
    SHA-1, RSA under 2048 bits): the signatures up to the anchor, CA flags and dates, the only
    rules that cryptography cannot be asked to apply here (README: DANE-TA validation)."""
    from rollover.core.chain import is_ca, issued_by

    path = [0]
    while path[-1] != anchor:
        current = chain[path[-1]]
        parent = next(
            (i for i, c in enumerate(chain) if i not in path and issued_by(current, c)), None
        )
        if parent is None:
            return "the chain from the leaf does not lead to it (signatures)"
        path.append(parent)
    for index in path[1:]:
        if not is_ca(chain[index]):
            return f"{chain[index].subject.rfc4514_string()} is not a CA certificate"
    for index in path[:-1]:
        certificate = chain[index]
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return _reason("not valid at validation time", [certificate], now)
    return None


def _reason(text: str, chain: Sequence[x509.Certificate], now: datetime) -> str:
    """cryptography's message without its "(encountered processing <Certificate...>)" tail;
    for dates, which certificate."""
    if "not valid at validation time" in text:
        for certificate in chain:
            name = certificate.subject.rfc4514_string()
            if now > certificate.not_valid_after_utc:
                return f"{name} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
            if now < certificate.not_valid_before_utc:
                return f"{name} is not valid yet"
    if "basicConstraints.cA must be asserted" in text:
        return "a certificate above the leaf is not a CA certificate (basicConstraints)"
    text = text.removeprefix("validation failed: ")
    cut = text.find(" (encountered processing")
    return "path validation failed: " + (text[:cut] if cut >= 0 else text)


def _within(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _self_signed(certificate: x509.Certificate) -> bool:
    from rollover.core.chain import issued_by

    return issued_by(certificate, certificate)


def stand_in_anchor(spki: bytes, chain: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """For a ``2 1 0`` record (a bare public key): a certificate carrying that key, named as
    the issuer of the highest certificate in ``chain`` that the key signed, valid for ever,
    so the path can be validated up to it. None when the key signed none of them."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from rollover.core.chain import issued_by

    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError):
        return None
    throwaway = ec.generate_private_key(ec.SECP256R1())
    for certificate in reversed(chain):
        candidate = (
            x509.CertificateBuilder()
            .subject_name(certificate.issuer)
            .issuer_name(certificate.issuer)
            .public_key(key)  # type: ignore[arg-type]
            .serial_number(1)
            .not_valid_before(dt.datetime(1970, 1, 2, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(throwaway, hashes.SHA256())
        )
        if issued_by(certificate, candidate):
            return candidate
    return None
