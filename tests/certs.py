"""Certificates, chains and keys made by the tests themselves (no fixtures from elsewhere)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC)


@cache
def make_key(kind: str, tag: str = "") -> CertificateIssuerPrivateKeyTypes:
    """A private key of ``kind`` (rsa2048, rsa1024, p256, p384, p521, ed25519, ed448); ``tag``
    makes distinct keys of the same kind."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(kind)


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def make_cert(
    common_name: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
    *,
    ca: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    dns_names: tuple[str, ...] = (),
    pkix: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if pkix:
        # What a WebPKI validator insists on: key identifiers, key usage, EKU on leaves.
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(ski, critical=False)
        issuer_key = signing_key.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),  # type: ignore[arg-type]
            critical=False,
        )
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
    return builder.sign(signing_key, _hash_for(signing_key))


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    root_key: CertificateIssuerPrivateKeyTypes
    intermediate: x509.Certificate
    intermediate_key: CertificateIssuerPrivateKeyTypes
    leaf: x509.Certificate
    leaf_key: CertificateIssuerPrivateKeyTypes


def make_pki(
    leaf_kind: str = "p256", tag: str = "", host: str = "mx1.example.test", pkix: bool = False
) -> Pki:
    root_key = make_key("p384", "root" + tag)
    root = make_cert(f"Test Root {tag}", root_key, ca=True, pkix=pkix)
    int_key = make_key("p256", "int" + tag)
    intermediate = make_cert(
        f"Test Intermediate {tag}", int_key, (root, root_key), ca=True, pkix=pkix
    )
    leaf_key = make_key(leaf_kind, "leaf" + tag)
    leaf = make_cert(host, leaf_key, (intermediate, int_key), dns_names=(host,), pkix=pkix)
    return Pki(root, root_key, intermediate, int_key, leaf, leaf_key)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def key_pem(
    key: CertificateIssuerPrivateKeyTypes,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    passphrase: bytes | None = None,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(encoding, fmt, encryption)


def public_pem(
    key: CertificateIssuerPrivateKeyTypes,
    fmt: serialization.PublicFormat = serialization.PublicFormat.SubjectPublicKeyInfo,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
) -> bytes:
    return key.public_key().public_bytes(encoding, fmt)


def csr_pem(key: CertificateIssuerPrivateKeyTypes, common_name: str = "mx1.example.test") -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, _hash_for(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)
