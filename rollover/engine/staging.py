"""The staged chain and key of a rollover, and where an encrypted key's passphrase comes from.

The passphrase itself is never stored: the rollover records its *source* (``env:NAME`` or
``file:PATH``), checked at ``start`` and read again at the deploy and the rollback, which may run
from a timer hours later. The server is handed the key decrypted (mode 0600): mail servers read
unencrypted keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rollover.core.material import Material, parse_material, same_key, spki_der
from rollover.edges.files import read_source
from rollover.errors import InputError

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class Staged:
    chain_path: str
    key_path: str
    chain: bytes
    key: bytes  # what the server is handed: the staged key, decrypted if it was encrypted
    material: Material
    spki_sha256: str
    encrypted: bool = False


def passphrase_source(path: str | None, env_name: str) -> str | None:
    """Where a passphrase comes from, as the rollover records it (never the passphrase)."""
    if path is not None:
        return f"file:{os.path.abspath(path)}"
    return f"env:{env_name}" if os.environ.get(env_name) else None


def read_passphrase(source: str | None) -> bytes | None:
    """The passphrase from a recorded source; a one-line error naming the source when gone."""
    if source is None:
        return None
    kind, _, where = source.partition(":")
    if kind == "file":
        try:
            with open(where, "rb") as handle:
                return handle.readline(65536).rstrip(b"\r\n")
        except OSError as exc:
            raise InputError(
                f"{where}: cannot read the staged key's passphrase file: {exc.strerror or exc}"
            ) from None
    value = os.environ.get(where)
    if not value:
        raise InputError(
            f"the staged key is encrypted and its passphrase came from ${where} at start, "
            "which is not set now: set it in this command's environment"
        )
    return value.encode()


def _is_encrypted(key_bytes: bytes) -> bool:
    return (
        b"ENCRYPTED PRIVATE KEY" in key_bytes
        or b"Proc-Type: 4,ENCRYPTED" in key_bytes
        or (b"OPENSSH PRIVATE KEY" in key_bytes and b"bcrypt" in _openssh_body(key_bytes))
    )


def _openssh_body(key_bytes: bytes) -> bytes:
    import base64

    lines = [line for line in key_bytes.splitlines() if line and not line.startswith(b"-----")]
    try:
        return base64.b64decode(b"".join(lines))[:200]
    except ValueError:
        return b""


def _decrypted(key_path: str, key_bytes: bytes, passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        if b"OPENSSH PRIVATE KEY" in key_bytes:
            return serialization.load_ssh_private_key(key_bytes, passphrase).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        key = serialization.load_pem_private_key(key_bytes, passphrase)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{key_path}: cannot decrypt the staged key: {exc}") from None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_staged(chain_path: str, key_path: str, passphrase: bytes | None) -> Staged:
    """The staged chain and key; refused unless the key belongs to the chain's leaf."""
    from rollover.core.chain import build_chain

    chain_bytes, key_bytes = read_source(chain_path), read_source(key_path)
    material = parse_material(chain_path, chain_bytes)
    if not material.certificates:
        raise InputError(f"{chain_path}: holds no certificate")
    key = parse_material(key_path, key_bytes, passphrase)
    if key.key_kind != "private key":
        raise InputError(f"{key_path}: not a private key")
    leaf = build_chain(chain_path, material.certificates).leaf
    if key.public_key is None or not same_key(leaf, key.public_key):
        raise InputError(
            f"{key_path}: this key does not belong to the leaf certificate of "
            f"{chain_path}; refusing to stage them"
        )
    encrypted = _is_encrypted(key_bytes)
    served = key_bytes
    if encrypted:
        if passphrase is None:
            raise InputError(f"{key_path}: the private key is encrypted and no passphrase given")
        served = _decrypted(key_path, key_bytes, passphrase)
    return Staged(
        chain_path,
        key_path,
        chain_bytes,
        served,
        material,
        hashlib.sha256(spki_der(leaf)).hexdigest(),
        encrypted,
    )


def presented_order(staged: Staged) -> tuple[x509.Certificate, ...]:
    """The staged chain leaf first, as the server will present it."""
    from rollover.core.chain import build_chain

    certificates = staged.material.certificates
    chain = build_chain(staged.chain_path, certificates)
    ordered = [certificates[i] for i in chain.path]
    ordered += [c for c in certificates if c not in ordered]
    return tuple(ordered)


def load_staged_chain(chain_path: str) -> Staged:
    """A pool's staged chain alone: the coordinator never holds a member's key (each agent
    checks the key on its own host against the chain's SPKI before it deploys)."""
    from rollover.core.chain import build_chain

    chain_bytes = read_source(chain_path)
    material = parse_material(chain_path, chain_bytes)
    if not material.certificates:
        raise InputError(f"{chain_path}: holds no certificate")
    leaf = build_chain(chain_path, material.certificates).leaf
    return Staged(
        chain_path, "", chain_bytes, b"", material, hashlib.sha256(spki_der(leaf)).hexdigest()
    )
