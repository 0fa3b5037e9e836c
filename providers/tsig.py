"""TSIG keys from files: a bare base64 secret, or a BIND key file (``key "name" { ... };``).

The secret is held only in memory, handed to dnspython, and never put in a message.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from rollover.errors import ConfigError

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
_KEY_BLOCK = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>.*?)\}\s*;', re.DOTALL | re.IGNORECASE
)
_ALGORITHM = re.compile(r"algorithm\s+\"?(?P<alg>[A-Za-z0-9-]+)\"?\s*;", re.IGNORECASE)
_SECRET = re.compile(r'secret\s+"(?P<secret>[^"]+)"\s*;', re.IGNORECASE)


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.algorithm})"


def _decode(secret_text: str, where: str) -> bytes:
    try:
        secret = base64.b64decode("".join(secret_text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the TSIG secret is not valid base64") from None
    if len(secret) < 16:
        raise ConfigError(f"{where}: the TSIG secret is shorter than 128 bits")
    return secret


def read_secret_file(path: str, name: str, algorithm: str, where: str) -> TsigKey:
    text = _read(path, where)
    return TsigKey(name, algorithm, _decode(text.strip(), where))


def read_key_file(path: str, name: str | None, where: str) -> TsigKey:
    """A BIND key file as written by ``tsig-keygen``; ``name`` picks one of several keys."""
    text = _read(path, where)
    blocks = list(_KEY_BLOCK.finditer(text))
    if name is not None:
        blocks = [b for b in blocks if b.group("name").rstrip(".") == name.rstrip(".")]
    if len(blocks) != 1:
        what = "no key" if not blocks else "several keys"
        raise ConfigError(f"{where}: {path} holds {what}" + (f" named {name!r}" if name else ""))
    block = blocks[0]
    algorithm = _ALGORITHM.search(block.group("body"))
    secret = _SECRET.search(block.group("body"))
    if algorithm is None or secret is None:
        raise ConfigError(f"{where}: {path}: key block lacks algorithm or secret")
    alg = algorithm.group("alg").lower()
    if alg not in ALGORITHMS:
        raise ConfigError(f"{where}: {path}: algorithm {alg} (use one of {', '.join(ALGORITHMS)})")
    return TsigKey(block.group("name").rstrip("."), alg, _decode(secret.group("secret"), where))


def _read(path: str, where: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read(65536)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable text"
        raise ConfigError(f"{where}: {path}: {reason}") from None
