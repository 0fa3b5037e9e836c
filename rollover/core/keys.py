"""Key description: what people read about a key (``RSA-2048``, ``EC-P256``, ``Ed25519``)."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


def describe_key(certificate: x509.Certificate) -> str:
    """``key_type`` of the certificate's key, or its algorithm OID when it cannot be parsed."""
    try:
        return key_type(certificate.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return f"key {certificate.public_key_algorithm_oid.dotted_string}"


def key_type(public_key: PublicKeyTypes) -> str:
    """Short key description: ``RSA-2048``, ``EC-P256``, ``Ed25519``, ``Ed448``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}
        return f"EC-{curve.get(public_key.curve.name, public_key.curve.name)}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"DSA-{public_key.key_size}"
    return type(public_key).__name__
