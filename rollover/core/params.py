"""TLSA parameter sets: certificate usage, selector, matching type (RFC 6698 section 2.1).

Parsed from numbers (``3 1 1``) or RFC 7218 mnemonics (``DANE-EE SPKI SHA2-256``), case-insensitive,
fields separated by spaces, commas or slashes, numbers and mnemonics mixed freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollover.errors import InputError

USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTOR_NAMES = {0: "Cert", 1: "SPKI"}
MTYPE_NAMES = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}

# Digest length in bytes per matching type; None for "Full" (exact match, any length).
MTYPE_DIGEST_SIZE: dict[int, int | None] = {0: None, 1: 32, 2: 64}

_ALIASES: tuple[dict[str, int], dict[str, int], dict[str, int]] = (
    {"pkix-ta": 0, "pkix-ee": 1, "dane-ta": 2, "dane-ee": 3},
    {"cert": 0, "spki": 1},
    {"full": 0, "sha2-256": 1, "sha-256": 1, "sha256": 1, "sha2-512": 2, "sha-512": 2, "sha512": 2},
)
_FIELD_NAMES = ("certificate usage", "selector", "matching type")
_FIELD_RANGES = ((0, 3), (0, 1), (0, 2))
_SEPARATORS = re.compile(r"[\s,/]+")


@dataclass(frozen=True, order=True)
class TlsaParams:
    """One (usage, selector, matching type) combination, e.g. ``TlsaParams(3, 1, 1)``."""

    usage: int
    selector: int
    mtype: int

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype}"

    @property
    def mnemonic(self) -> str:
        """RFC 7218 form, e.g. ``DANE-EE SPKI SHA2-256``."""
        return " ".join(
            (USAGE_NAMES[self.usage], SELECTOR_NAMES[self.selector], MTYPE_NAMES[self.mtype])
        )


DEFAULT_PARAMS = TlsaParams(3, 1, 1)


def parse_params(text: str) -> TlsaParams:
    """Parse ``"3 1 1"``, ``"dane-ee spki sha2-256"`` or a mix into :class:`TlsaParams`.

    >>> parse_params("DANE-TA cert sha2-256")
    TlsaParams(usage=2, selector=0, mtype=1)

    Raises :class:`InputError` naming the offending field.
    """
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    if len(fields) != 3:
        raise InputError(
            f"TLSA parameters {text!r}: need three fields (usage selector matching-type), "
            f"e.g. '3 1 1' or 'dane-ee spki sha2-256'"
        )
    values: list[int] = []
    for field, aliases, name, (low, high) in zip(
        fields, _ALIASES, _FIELD_NAMES, _FIELD_RANGES, strict=True
    ):
        lowered = field.lower()
        if lowered in aliases:
            values.append(aliases[lowered])
            continue
        if not (lowered.isascii() and lowered.isdigit()):
            known = ", ".join(sorted(aliases))
            raise InputError(f"TLSA parameters {text!r}: unknown {name} {field!r} (use {known})")
        number = int(lowered)
        if not low <= number <= high:
            raise InputError(
                f"TLSA parameters {text!r}: {name} {number} is not one of {low}..{high}"
            )
        values.append(number)
    return TlsaParams(values[0], values[1], values[2])
