"""TLSA associations and owner names: the pure arithmetic of RFC 6698 sections 2 and 3."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rollover.core.params import MTYPE_DIGEST_SIZE, TlsaParams, parse_params
from rollover.errors import InputError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_HEX = re.compile(r"^[0-9A-Fa-f]*$")


@dataclass(frozen=True, order=True)
class Association:
    """One TLSA rdata: parameters plus certificate association data."""

    params: TlsaParams
    data: bytes

    @property
    def hex(self) -> str:
        return self.data.hex()

    def __str__(self) -> str:
        """Presentation form, ``3 1 1 <lowercase hex>``, hex unbroken."""
        return f"{self.params} {self.hex}"

    def is_well_formed(self) -> bool:
        """False for digests of the wrong length (RFC 7671 section 5: such records are unusable)."""
        size = MTYPE_DIGEST_SIZE.get(self.params.mtype)
        return size is None or len(self.data) == size


def associations_from_rdata(rdatas: Iterable[Any]) -> frozenset[Association]:
    """Associations from TLSA rdata objects (dnspython's, or anything with usage, selector,
    mtype and cert); kept free of a dnspython import so that ``rollover record`` stays light."""
    return frozenset(
        Association(TlsaParams(r.usage, r.selector, r.mtype), bytes(r.cert)) for r in rdatas
    )


def parse_association(text: str) -> Association:
    """Parse ``"3 1 1 <hex>"`` (hex may contain spaces, as in multi-line zone text)."""
    parts = text.split(None, 3)
    if len(parts) != 4:
        raise InputError(f"TLSA rdata {text!r}: need 'usage selector mtype hex'")
    params = parse_params(" ".join(parts[:3]))
    hex_text = "".join(parts[3].split())
    if not hex_text or not _HEX.match(hex_text) or len(hex_text) % 2:
        raise InputError(f"TLSA rdata {text!r}: association data is not an even-length hex string")
    return Association(params, bytes.fromhex(hex_text))


def association_data(selector: int, mtype: int, cert_der: bytes | None, spki_der: bytes) -> bytes:
    """The certificate association data for a selector and matching type.

    Selector 0 hashes the whole certificate DER, selector 1 the SubjectPublicKeyInfo DER;
    matching type 0 is the bytes themselves, 1 SHA-256, 2 SHA-512 (RFC 6698 section 2.1).
    """
    if selector == 0:
        if cert_der is None:
            raise InputError("selector 0 (full certificate) needs a certificate, not a key or CSR")
        selected = cert_der
    else:
        selected = spki_der
    if mtype == 0:
        return selected
    if mtype == 1:
        return hashlib.sha256(selected).digest()
    return hashlib.sha512(selected).digest()


def normalize_host(host: str) -> str:
    """Lowercase, absolute, validated host name (``mx1.example.com.``)."""
    name = host.strip().rstrip(".").lower()
    if not name:
        raise InputError(f"host name {host!r} is empty")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InputError(f"host name {host!r} is not a valid DNS name")
    return name + "."


def owner_name(host: str | None, port: int = 25, proto: str = "tcp") -> str:
    """``_25._tcp.mx1.example.com.``; without a host the relative ``_25._tcp``."""
    if not 0 < port < 65536:
        raise InputError(f"port {port} is not in 1..65535")
    proto_label = proto.strip().lower().lstrip("_")
    if not _LABEL.match(proto_label):
        raise InputError(f"protocol {proto!r} is not a valid DNS label")
    prefix = f"_{port}._{proto_label}"
    if host is None:
        return prefix
    return f"{prefix}.{normalize_host(host)}"
