"""The values of the posture checks: what the DNS look-ups hand in (TXT answers, TLSA
RRsets by MX host, RRSIGs, DNSKEY and DS RRsets) and what each check hands out (a
:class:`Part`: its findings, each with a Nagios level, and JSON-ready details).

Pure: no look-ups here; :mod:`rollover.edges.posture_dns` builds the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rollover.core.association import Association
from rollover.core.matching import usable_records
from rollover.core.verdicts import STATUS, worst

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
DAY = 86400


@dataclass(frozen=True)
class Finding:
    level: int
    message: str

    def json(self) -> dict[str, Any]:
        return {"level": self.level, "status": STATUS[self.level], "message": self.message}


@dataclass(frozen=True)
class Part:
    """One check's outcome. ``cap``: the most severe level it may contribute to the fold."""

    findings: tuple[Finding, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    cap: int | None = None

    @property
    def exit(self) -> int:
        code = worst([f.level for f in self.findings])
        if self.cap is not None and code != OK:
            return self.cap if worst([code, self.cap]) == code else code
        return code

    def json(self) -> dict[str, Any]:
        return {
            "status": STATUS[self.exit],
            "exit": self.exit,
            "findings": [f.json() for f in self.findings],
            **self.details,
        }


@dataclass(frozen=True)
class TxtAnswer:
    """A TXT look-up: each record's strings joined (RFC 8460/8461: concatenated; none for
    NXDOMAIN or no TXT records), or the error of a failed look-up."""

    name: str
    texts: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class HostTlsa:
    """What a sender finds for one MX host: the TLSA RRset's DNSSEC state (``secure``,
    ``insecure``, ``bogus``, ``indeterminate``; None when the look-up failed)."""

    host: str
    owner: str
    state: str | None
    records: frozenset[Association] = frozenset()
    error: str | None = None

    def usable(self, port: int = 25) -> list[Association]:
        return usable_records(self.records, port)[0]

    def dane(self, port: int = 25) -> bool:
        """A usable secure TLSA RRset: DANE applies (RFC 7672 section 2.2)."""
        return self.error is None and self.state == "secure" and bool(self.usable(port))


@dataclass(frozen=True)
class Rrsig:
    key_tag: int
    algorithm: int
    signer: str
    inception: datetime
    expiration: datetime
    verified: bool | None = None  # cryptographically checked against the zone's DNSKEYs
    server: str = ""  # where it was read


@dataclass(frozen=True)
class SignedRRset:
    name: str
    rdtype: str
    zone: str | None
    exists: bool
    signatures: tuple[Rrsig, ...] = ()
    error: str | None = None
    zone_signed: bool = False  # the answer (a denial too) carried signatures of ``zone``


@dataclass(frozen=True)
class Dnskey:
    key_tag: int
    algorithm: int
    flags: int
    digests: tuple[tuple[int, str], ...] = ()  # (DS digest type, hex) computed from the key


@dataclass(frozen=True)
class Ds:
    key_tag: int
    algorithm: int
    digest_type: int
    digest: str  # hex


@dataclass(frozen=True)
class ZoneKeys:
    """A zone's DNSKEY RRset with its signatures, and the DS RRset its parent serves."""

    zone: str
    dnskey: SignedRRset
    keys: tuple[Dnskey, ...] = ()
    ds: tuple[Ds, ...] = ()
    ds_error: str | None = None
