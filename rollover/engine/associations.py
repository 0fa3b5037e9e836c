"""The associations a service publishes: derived from its material, plus every pinned
trust anchor (usage 2), read from the files the configuration names."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rollover.config import ServiceConfig
from rollover.core.association import Association, association_data
from rollover.core.derive import DeriveOptions, derive
from rollover.core.material import Material, spki_der
from rollover.edges.trust import load_anchors
from rollover.errors import InputError


def service_associations(
    service: ServiceConfig, material: Material, now: datetime
) -> tuple[frozenset[Association], list[str]]:
    """The service's parameter sets computed from one source; warnings returned, errors raised."""
    result = derive(
        material,
        DeriveOptions(
            params=service.records, owner=service.owner, port=service.port, ttl=service.ttl
        ),
        now,
    )
    if result.errors:
        raise InputError(result.errors[0])
    associations = {r.association for r in result.records}
    associations |= pinned_anchor_associations(service)
    return frozenset(associations), result.warnings


def pinned_anchor_associations(service: ServiceConfig) -> set[Association]:
    """Trust-anchor pinning: the usage 2 parameter sets computed from every pinned issuer
    certificate (a CA's current and backup intermediates), so any of them may sign."""
    pinned: set[Association] = set()
    for certificate in load_anchors(service.trust_anchors):
        der = certificate.public_bytes(Encoding.DER)
        for p in service.records:
            if p.usage == 2:
                data = association_data(p.selector, p.mtype, der, spki_der(certificate))
                pinned.add(Association(p, data))
    return pinned


def anchor_warning(service: ServiceConfig, issuer: x509.Certificate | None) -> str | None:
    """A warning when the served (or deployed) issuer is not among the pinned trust anchors."""
    if not service.trust_anchors or issuer is None:
        return None
    pinned = {spki_der(c) for c in load_anchors(service.trust_anchors)}
    if spki_der(issuer) in pinned:
        return None
    return (
        f"the issuer {issuer.subject.rfc4514_string()} is not among the pinned "
        f"trust_anchors of services.{service.name}"
    )
