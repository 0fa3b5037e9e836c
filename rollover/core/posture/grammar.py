"""The grammar the TLS-RPT record (RFC 8460 section 3) and the MTA-STS record and policy
(RFC 8461 sections 3.1, 3.2) share: ``;``-separated ``key=value`` fields, extension names
and values, host names."""

from __future__ import annotations

import re


class _GrammarError(ValueError):
    """A TLS-RPT or MTA-STS text that does not follow its grammar.

    Example: ``MTA-STS record: id 'a-b' is not 1 to 32 letters and digits``.
    """


_DELIM = re.compile(r"[ \t]*;[ \t]*")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


def _fields(text: str, version: str, what: str) -> list[tuple[str, str]]:
    """``v=VERSION`` then ``;``-separated ``key=value`` fields, an optional trailing ``;``
    (the shared shape of RFC 8460 section 3 and RFC 8461 section 3.1)."""
    parts = _DELIM.split(text)
    if parts[0] != f"v={version}":
        raise _GrammarError(f"{what}: does not begin with v={version}")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    fields = []
    for part in parts[1:]:
        key, equals, value = part.partition("=")
        if not equals or not _EXT_NAME.fullmatch(key):
            raise _GrammarError(f"{what}: field {part!r} is not key=value")
        fields.append((key, value))
    if not fields:
        raise _GrammarError(f"{what}: no field after v={version}")
    return fields


def _domain_ok(text: str) -> bool:
    labels = text.split(".")
    return len(text) <= 253 and len(labels) >= 2 and all(_LABEL.fullmatch(x) for x in labels)


def _normal(host: str) -> str:
    return host.rstrip(".").lower()
