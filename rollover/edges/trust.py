"""The trust store: the pinned trust anchors a service names, and PKIX validation with the
system's roots, for PKIX-TA(0)/PKIX-EE(1) records on ports other than 25 (RFC 6698 section
2.1.1; RFC 7672 makes them unusable for SMTP)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def load_anchors(paths: Sequence[str]) -> tuple[x509.Certificate, ...]:
    """Every certificate in the ``trust_anchors`` files of a service (a CA's current and backup
    intermediates), read and parsed the one way every command uses."""
    from rollover.core.material import parse_material
    from rollover.edges.files import read_source

    return tuple(
        certificate
        for path in paths
        for certificate in parse_material(path, read_source(path)).certificates
    )


def system_store_certificates(paths: Sequence[str] = SYSTEM_BUNDLES) -> list[x509.Certificate]:
    for path in paths:
        try:
            return x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError):
            continue
    return []


def pkix_validator(
    host: str, now: datetime, roots: Sequence[x509.Certificate] | None = None
) -> Callable[[Sequence[x509.Certificate]], bool]:
    """A function telling whether a presented chain validates to a trusted root for ``host``."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    trusted = list(roots) if roots is not None else system_store_certificates()

    def validate(chain: Sequence[x509.Certificate]) -> bool:
        if not trusted or not chain:
            return False
        verifier = (
            PolicyBuilder()
            .store(Store(trusted))
            .time(now)
            .build_server_verifier(x509.DNSName(host.rstrip(".")))
        )
        try:
            verifier.verify(chain[0], list(chain[1:]))
        except (VerificationError, ValueError):
            return False
        return True

    return validate
