"""The "current + next" scheme (RFC 7671 section 8.1, Dukhovni's practice).

A pre-generated next key's ``3 1 1`` association stays published beside the current one at all
times. When a renewed certificate carries that key, its association has aged long ago: the
rollover deploys at once (no wait at renewal), retires the old current association, and a fresh
next key is generated and published. The wait happens ahead of time, where it costs nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from rollover.config import ServiceConfig
from rollover.edges.files import write_atomic
from rollover.errors import ConfigError

ALGORITHMS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")


def generate_key(algorithm: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm.startswith("rsa-"):
        return rsa.generate_private_key(65537, int(algorithm[4:]))
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigError(f"next_key.algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")


def private_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def csr_pem(key: Any, host: str) -> bytes:
    """A CSR for the next key (certbot ``--csr``): CN and subjectAltName are the host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    name = host.rstrip(".")
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return bytes(builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM))


def key_path(service: ServiceConfig, state_dir: str) -> str:
    return service.next_key_path or str(Path(state_dir) / "next" / f"{service.name}.key")


def spki_sha256_of_key_file(path: str) -> str | None:
    from rollover.core.material import parse_material
    from rollover.edges.files import read_source

    try:
        material = parse_material(path, read_source(path))
    except Exception:  # noqa: BLE001 - a missing or unreadable next key means "none yet"
        return None
    return None if material.key_spki is None else hashlib.sha256(material.key_spki).hexdigest()


def selector1_service(service: ServiceConfig) -> ServiceConfig:
    """The parameter sets a bare key can give: end-entity usages with the SPKI selector."""
    records = tuple(p for p in service.records if p.selector == 1 and p.usage in (1, 3))
    if not records:
        raise ConfigError(
            f"services.{service.name}.records: the next-key scheme needs a "
            "'3 1 1' (or other x 1 x end-entity) parameter set"
        )
    return replace(service, records=records)


def write_key(path: str, key: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, private_pem(key))
