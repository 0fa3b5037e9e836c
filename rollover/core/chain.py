"""Certificate chains in bundles: find the leaf, order by issuer links, pick a trust anchor.

A bundle is expected leaf first (certbot's ``fullchain.pem``), but a reversed or shuffled bundle
is common; every other tool takes the first certificate as the leaf and silently hashes the wrong
one. Here the links are followed by issuer/subject name *and* signature, and the reordering is
reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from rollover.errors import InputError


@dataclass(frozen=True)
class Chain:
    """Indices into a bundle's file order: ``path[0]`` is the leaf, each next one its issuer."""

    certificates: tuple[x509.Certificate, ...]
    path: tuple[int, ...]
    note: str | None = None

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[self.path[0]]

    @property
    def leaf_index(self) -> int:
        return self.path[0]

    def issuer_index(self) -> int | None:
        """Position of the leaf's issuer in the bundle, if the bundle carries it."""
        return self.path[1] if len(self.path) > 1 else None


def issued_by(subject: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` names and signed ``subject``."""
    if subject.issuer != issuer.subject:
        return False
    try:
        subject.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def build_chain(label: str, certificates: tuple[x509.Certificate, ...]) -> Chain:
    """Find the leaf and follow issuer links upward; note when the file order was not leaf-first."""
    count = len(certificates)
    if count == 1:
        return Chain(certificates, (0,))
    issuer_of: dict[int, int] = {}
    for child in range(count):
        parent = _find_issuer(certificates, child)
        if parent is not None:
            issuer_of[child] = parent
    issuers = set(issuer_of.values())
    candidates = [i for i in range(count) if i not in issuers]
    if not candidates:
        raise InputError(f"{label}: the certificates form a loop; cannot tell the leaf")
    paths = {i: _path_from(i, issuer_of) for i in candidates}
    # The leaf: an end-entity certificate before a spare CA, the longest chain, then file order.
    leaf = min(candidates, key=lambda i: (is_ca(certificates[i]), -len(paths[i]), i))
    path = paths[leaf]
    note: str | None = None
    spare = [i for i in range(count) if i not in path]
    if spare:
        note = (
            f"{label}: certificate(s) {', '.join(map(str, spare))} are not in the chain of the "
            f"leaf, certificate {leaf} ({certificates[leaf].subject.rfc4514_string()})"
        )
    if note is None and tuple(path) != tuple(range(len(path))):
        order = (
            "in reverse order" if tuple(path) == tuple(range(count - 1, -1, -1)) else "unordered"
        )
        note = (
            f"{label}: bundle is {order}; the leaf is certificate {leaf} "
            f"({certificates[leaf].subject.rfc4514_string()})"
        )
    return Chain(certificates, tuple(path), note)


def _path_from(leaf: int, issuer_of: dict[int, int]) -> list[int]:
    path = [leaf]
    while path[-1] in issuer_of and issuer_of[path[-1]] not in path:
        path.append(issuer_of[path[-1]])
    return path


def _find_issuer(certificates: tuple[x509.Certificate, ...], child: int) -> int | None:
    """The bundle position of ``certificates[child]``'s issuer.

    Names decide when one certificate carries the issuer's name (the common case, and cheap);
    signatures decide between several with that name (an old and a renewed intermediate).
    """
    wanted = certificates[child].issuer
    named = [i for i, c in enumerate(certificates) if i != child and c.subject == wanted]
    if len(named) <= 1:
        return named[0] if named else None
    signed = [i for i in named if issued_by(certificates[child], certificates[i])]
    return signed[0] if signed else None


def select_trust_anchor(
    label: str, chain: Chain, ta_index: int | None, ta_subject: str | None
) -> int:
    """Which certificate a usage 0/2 record hashes (an index into the bundle's file order).

    Default: the leaf's issuer if the bundle carries it (what a server sends above the leaf);
    a single-certificate source is hashed itself. ``ta_index`` (0-based file position) and
    ``ta_subject`` (case-insensitive substring of the RFC 4514 subject) choose another.
    """
    certificates = chain.certificates
    if ta_index is not None:
        if not 0 <= ta_index < len(certificates):
            raise InputError(
                f"{label}: --ta-index {ta_index} is out of range (the bundle holds "
                f"{len(certificates)} certificates, positions 0..{len(certificates) - 1})"
            )
        return ta_index
    if ta_subject is not None:
        wanted = ta_subject.lower()
        found = [
            i for i, c in enumerate(certificates) if wanted in c.subject.rfc4514_string().lower()
        ]
        if len(found) != 1:
            what = "no certificate" if not found else f"{len(found)} certificates"
            raise InputError(
                f"{label}: --ta-subject {ta_subject!r} matches {what}; need exactly one"
            )
        return found[0]
    if len(certificates) == 1:
        return 0
    issuer = chain.issuer_index()
    if issuer is None:
        raise InputError(
            f"{label}: the leaf's issuer ({chain.leaf.issuer.rfc4514_string()}) is not in the "
            "bundle; choose the trust anchor with --ta-index or --ta-subject"
        )
    return issuer
