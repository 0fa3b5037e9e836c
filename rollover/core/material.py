"""Load certificates, chains, keys and CSRs from PEM or DER bytes.

Parsing is pure (bytes in, :class:`Material` out); :func:`read_source` is the only function here
that touches the file system. Every failure is an :class:`InputError` whose message starts with
the source's label, so one line on stderr says which file and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives._serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.asymmetric import ec

from rollover.errors import InputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import (
        PrivateKeyTypes,
        PublicKeyTypes,
    )

MAX_SOURCE_BYTES = 16 * 1024 * 1024

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PRIVATE_LABELS = {
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
}
_PUBLIC_LABELS = {b"PUBLIC KEY", b"RSA PUBLIC KEY"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_IGNORED_LABELS = {b"EC PARAMETERS", b"DH PARAMETERS", b"X509 CRL"}
_KEY_LABELS = _PRIVATE_LABELS | _PUBLIC_LABELS | _CSR_LABELS | {b"OPENSSH PRIVATE KEY"}
# ``cryptography.hazmat.primitives.serialization`` pulls in the SSH key code (~7 ms at start-up);
# certificates only need these two enums, so key loading imports the package lazily.
_SPKI = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Material:
    """What one source holds.

    ``certificates`` keeps the file order; ``key_spki`` is the SubjectPublicKeyInfo DER of a key or
    CSR when the source holds no certificate; ``key_kind`` names what it came from.
    """

    label: str
    certificates: tuple[x509.Certificate, ...] = ()
    key_spki: bytes | None = None
    key_kind: str | None = None
    public_key: PublicKeyTypes | None = None
    notes: tuple[str, ...] = field(default=())


def parse_material(label: str, data: bytes, passphrase: bytes | None = None) -> Material:
    """Parse PEM (any mix of blocks) or DER bytes into :class:`Material`."""
    if not data.strip():
        raise InputError(f"{label}: is empty")
    if b"-----BEGIN " in data:
        return _parse_pem(label, data, passphrase)
    return _parse_der(label, data, passphrase)


def _parse_pem(label: str, data: bytes, passphrase: bytes | None) -> Material:
    blocks = list(_PEM_BLOCK.finditer(data))
    complete = {m.start() for m in blocks}
    for begin in _PEM_BEGIN.finditer(data):
        if begin.start() not in complete:
            kind = begin.group(1).decode()
            raise InputError(f"{label}: truncated PEM block (BEGIN {kind} without END {kind})")
    certificates: list[x509.Certificate] = []
    keys: list[tuple[str, PublicKeyTypes, bytes]] = []
    notes: list[str] = []
    for number, block in enumerate(blocks, start=1):
        kind = block.group(1)
        where = f"{label}: PEM block {number} ({kind.decode()})"
        if kind in _CERT_LABELS:
            der = _pem_body(where, block.group(2))
            if kind == b"TRUSTED CERTIFICATE":
                der = der[: _tlv(where, der, 0)[1]]
            certificates.append(_load_cert_der(where, der))
        elif kind in _KEY_LABELS:
            private = kind in _PRIVATE_LABELS or kind == b"OPENSSH PRIVATE KEY"
            if private and any(k[0] == "private key" for k in keys):
                raise InputError(f"{label}: holds more than one private key")
            keys.append(_pem_key(where, kind, block, passphrase))
        elif kind in _IGNORED_LABELS:
            continue
        else:
            notes.append(f"{label}: ignored PEM block {number} ({kind.decode()})")
    if not certificates and not keys:
        raise InputError(f"{label}: no certificate, key or CSR in PEM data")
    if certificates:
        if keys:
            _check_key_matches(label, certificates, keys)
        return Material(label, tuple(certificates), notes=tuple(notes))
    if len(keys) > 1 and len({_spki(k[1]) for k in keys}) > 1:
        raise InputError(f"{label}: holds several different keys; give one key per file")
    key_kind, public_key, spki = keys[0]
    return Material(
        label, key_spki=spki, key_kind=key_kind, public_key=public_key, notes=tuple(notes)
    )


def _pem_key(
    where: str, kind: bytes, block: re.Match[bytes], passphrase: bytes | None
) -> tuple[str, PublicKeyTypes, bytes]:
    """A key-bearing PEM block: what it is, its public key, and the SPKI as the source
    encodes it where the source shows it (what OpenSSL would hash)."""
    if kind in _PRIVATE_LABELS:
        public = _load_private(where, block.group(0), passphrase, pem=True).public_key()
        if kind in (b"PRIVATE KEY", b"EC PRIVATE KEY") and b"Proc-Type" not in block.group(0):
            return "private key", public, _key_spki(public, _pem_body(where, block.group(2)))
        return "private key", public, _spki(public)
    if kind == b"OPENSSH PRIVATE KEY":
        public = _load_ssh_private(where, block.group(0), passphrase).public_key()
        return "private key", public, _spki(public)
    if kind in _PUBLIC_LABELS:
        from cryptography.hazmat.primitives import serialization

        try:
            public = serialization.load_pem_public_key(block.group(0))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InputError(f"{where}: corrupt public key: {_reason(exc)}") from None
        if kind == b"PUBLIC KEY":  # an SPKI already: kept as given
            return "public key", public, _pem_body(where, block.group(2))
        return "public key", public, _spki(public)
    csr = _load_csr_der(where, _pem_body(where, block.group(2)))
    return "CSR", _csr_public_key(where, csr), csr_spki_der(where, csr)


def _parse_der(label: str, data: bytes, passphrase: bytes | None) -> Material:
    if data[:1] != b"\x30":
        raise InputError(f"{label}: not a certificate, key or CSR (neither PEM nor DER)")
    try:
        return Material(label, (x509.load_der_x509_certificate(data),))
    except (ValueError, x509.InvalidVersion):
        pass
    try:
        public_key: PublicKeyTypes = _load_private(label, data, passphrase, pem=False).public_key()
        return Material(
            label,
            key_spki=_key_spki(public_key, data),
            key_kind="private key",
            public_key=public_key,
        )
    except _NotThisKindError:
        pass
    from cryptography.hazmat.primitives import serialization

    try:
        public_key = serialization.load_der_public_key(data)
        return Material(label, key_spki=data, key_kind="public key", public_key=public_key)
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        csr = x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion):
        pass
    else:
        public_key = _csr_public_key(label, csr)
        spki = csr_spki_der(label, csr)
        return Material(label, key_spki=spki, key_kind="CSR", public_key=public_key)
    raise InputError(f"{label}: DER data is not a certificate, key or CSR (corrupt or truncated?)")


class _NotThisKindError(Exception):
    """Internal: DER bytes are not a private key at all (try the next kind)."""


def _load_private(
    where: str, data: bytes, passphrase: bytes | None, *, pem: bool
) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives import serialization

    encrypted = pem and (
        b"ENCRYPTED" in data.split(b"\n", 3)[0] or b"Proc-Type: 4,ENCRYPTED" in data
    )
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        return loader(
            data,
            password=passphrase if (encrypted or not pem) else None,
            unsafe_skip_rsa_key_validation=True,
        )
    except TypeError as exc:
        text = str(exc)
        if "not encrypted" in text:
            # A passphrase was given for a key that has none: load it without.
            return loader(data, password=None, unsafe_skip_rsa_key_validation=True)
        raise InputError(
            f"{where}: private key is encrypted; give the passphrase with --passphrase-file "
            "or the ROLLOVER_PASSPHRASE environment variable"
        ) from None
    except ValueError as exc:
        if not pem and not encrypted:
            raise _NotThisKindError from None
        if encrypted or passphrase is not None:
            raise InputError(f"{where}: wrong passphrase, or the key is corrupt") from None
        raise InputError(f"{where}: corrupt private key: {_reason(exc)}") from None
    except UnsupportedAlgorithm as exc:
        if not pem:
            raise _NotThisKindError from None
        raise InputError(f"{where}: unsupported key algorithm: {_reason(exc)}") from None


def _load_ssh_private(where: str, data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{where}: cannot load OpenSSH private key: {_reason(exc)}") from None
    return key


def _pem_body(where: str, body: bytes) -> bytes:
    lines = [line for line in body.splitlines() if b":" not in line]
    try:
        der = base64.b64decode(b"".join(lines), validate=False)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}: corrupt base64") from None
    if not der:
        raise InputError(f"{where}: empty PEM block")
    return der


def _tlv(where: str, der: bytes, pos: int) -> tuple[int, int]:
    """(start of the contents, end) of the DER element at ``pos`` (single-octet tags)."""
    if len(der) < pos + 2:
        raise InputError(f"{where}: truncated DER")
    first = der[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(der) < pos + 2 + count:
            raise InputError(f"{where}: corrupt DER length")
        start = pos + 2 + count
        length = int.from_bytes(der[pos + 2 : start], "big")
    if start + length > len(der):
        raise InputError(f"{where}: truncated DER")
    return start, start + length


def _embedded_spki(where: str, der: bytes, before: int, *, version_tag: bool) -> bytes:
    """The SubjectPublicKeyInfo element of a TBSCertificate (after an optional [0] version and
    ``before`` elements) or a CertificationRequestInfo, byte for byte."""
    pos, _ = _tlv(where, der, 0)
    if version_tag and der[pos : pos + 1] == b"\xa0":
        pos = _tlv(where, der, pos)[1]
    for _ in range(before):
        pos = _tlv(where, der, pos)[1]
    if der[pos : pos + 1] != b"\x30":
        raise InputError(f"{where}: no SubjectPublicKeyInfo where one belongs")
    return der[pos : _tlv(where, der, pos)[1]]


def _csr_public_key(where: str, csr: x509.CertificateSigningRequest) -> PublicKeyTypes:
    try:
        return csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            f"{where}: corrupt or unsupported public key in the CSR: {_reason(exc)}"
        ) from None


def csr_spki_der(where: str, csr: x509.CertificateSigningRequest) -> bytes:
    """The CSR's SubjectPublicKeyInfo as encoded in it: CAs copy it into the certificate."""
    return _embedded_spki(where, csr.tbs_certrequest_bytes, 2, version_tag=False)


def _load_cert_der(where: str, der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InputError(f"{where}: corrupt certificate: {_reason(exc)}") from None


def load_presented_chain(where: str, ders: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """Certificates a server presented, as :func:`split_presented` reads them; a leaf that does
    not parse is an error naming the server (the guards cannot tell which key it holds)."""
    chain, problems = split_presented(ders)
    if ders and not chain:
        raise InputError(f"{where}: {problems[0]}")
    return chain


def split_presented(ders: Sequence[bytes]) -> tuple[tuple[x509.Certificate, ...], list[str]]:
    """The chain a server presented as a sender can use it, and what could not be read. The
    TLS library accepted the bytes, but this one is stricter (DER, versions). Each certificate
    is parsed on its own: a leaf that does not parse leaves no chain (nothing can be
    authenticated); an issuer that does not parse (a loose BER encoding, say) is left out, as a
    sender matching the leaf would not need it. Every command reads presented chains here."""
    parsed, problems = parse_each(ders)
    if problems and problems[0].startswith("certificate 1 "):
        problems[0] = "the leaf (" + problems[0].replace(" does", ") does", 1)
        return (), problems
    return tuple(parsed), problems


def parse_each(ders: Sequence[bytes]) -> tuple[list[x509.Certificate], list[str]]:
    """Each certificate parsed on its own: those that parse, and why each other did not."""
    parsed: list[x509.Certificate] = []
    problems: list[str] = []
    for number, der in enumerate(ders, start=1):
        try:
            parsed.append(x509.load_der_x509_certificate(der))
        except (ValueError, x509.InvalidVersion) as exc:
            problems.append(f"certificate {number} does not parse as DER: {_reason(exc)}")
    return parsed, problems


def _load_csr_der(where: str, der: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InputError(f"{where}: corrupt CSR: {_reason(exc)}") from None


def _check_key_matches(
    label: str,
    certificates: list[x509.Certificate],
    keys: list[tuple[str, PublicKeyTypes, bytes]],
) -> None:
    """A combined key+certificate file must pair the key with one of its certificates."""
    for kind, key, _ in keys:
        if not any(same_key(c, key) for c in certificates):
            raise InputError(f"{label}: the {kind} does not match any certificate in the file")


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(*_SPKI)


def spki_der(certificate: x509.Certificate) -> bytes:
    """SubjectPublicKeyInfo DER of a certificate exactly as the certificate encodes it (RFC 6698
    section 2.1.2, selector 1; what OpenSSL's DANE code hashes), not a re-encoding of the parsed
    key: a compressed EC point stays compressed, and a key of an algorithm this library cannot
    parse still has an SPKI."""
    return _embedded_spki("certificate", certificate.tbs_certificate_bytes, 5, version_tag=True)


def same_key(certificate: x509.Certificate, public_key: PublicKeyTypes) -> bool:
    """Whether the certificate holds ``public_key``, whatever either's point encoding."""
    try:
        return _spki(certificate.public_key()) == _spki(public_key)
    except (ValueError, UnsupportedAlgorithm):
        return False


def _key_spki(public_key: PublicKeyTypes, private_der: bytes) -> bytes:
    """The SPKI a certificate for this key will carry: OpenSSL keeps the point format the key
    file stores (a compressed EC point stays compressed in CSRs and certificates made from it),
    which a plain re-encoding would lose."""
    spki = _spki(public_key)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not _stores_compressed_point(
        private_der
    ):
        return spki
    point = public_key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    start, _ = _tlv("key", spki, 0)
    algorithm = spki[start : _tlv("key", spki, start)[1]]
    bits = b"\x03" + _der_len(len(point) + 1) + b"\x00" + point
    body = algorithm + bits
    return b"\x30" + _der_len(len(body)) + body


def _stores_compressed_point(der: bytes) -> bool:
    """Whether an unencrypted PKCS#8 or SEC 1 EC private key stores its public point compressed
    (RFC 5915: ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters, [1] publicKey })."""
    try:
        pos, end = _tlv("key", der, 0)
        pos = _tlv("key", der, pos)[1]  # version
        if der[pos : pos + 1] == b"\x30":  # PKCS#8: AlgorithmIdentifier, then the SEC 1 key
            pos = _tlv("key", der, pos)[1]
            start, stop = _tlv("key", der, pos)
            return _stores_compressed_point(der[start:stop])
        pos = _tlv("key", der, pos)[1]  # privateKey
        while pos < end:
            start, stop = _tlv("key", der, pos)
            if der[pos] == 0xA1:
                bits_start, bits_end = _tlv("key", der, start)
                return bits_end - bits_start > 1 and der[bits_start + 1] in (2, 3)
            pos = stop
    except InputError:
        return False
    return False


def _der_len(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
