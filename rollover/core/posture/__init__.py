"""A mail domain's transport-security posture beside DANE: TLS-RPT, MTA-STS, coverage, signing.

Pure: the DNS answers, the fetched policy text and the clock come in as values; every check
returns a :class:`Part` (findings, each with a Nagios level, and JSON-ready details).
:func:`fold` combines the parts: the most severe wins (CRITICAL > UNKNOWN > WARNING > OK), and
the TLS-RPT part counts at most as a WARNING (a reporting channel never stops mail).

JSON keys (stable; the README documents them): ``tlsrpt``, ``mta_sts``, ``coverage``,
``signing``, each ``{"status", "exit", "findings": [{"level", "status", "message"}], ...}``.

One module a part: :mod:`~rollover.core.posture.tlsrpt` (RFC 8460 section 3),
:mod:`~rollover.core.posture.mtasts` (RFC 8461), :mod:`~rollover.core.posture.coverage`
(RFC 7672 section 2.2.1), :mod:`~rollover.core.posture.signing`; their values in
:mod:`~rollover.core.posture.model`, the grammar the two TXT records share in
:mod:`~rollover.core.posture.grammar`. Here: the whole posture and the fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rollover.core.posture.coverage import check_coverage
from rollover.core.posture.model import (
    CRITICAL,
    DAY,
    OK,
    UNKNOWN,
    WARNING,
    Dnskey,
    Ds,
    Finding,
    HostTlsa,
    Part,
    Rrsig,
    SignedRRset,
    TxtAnswer,
    ZoneKeys,
)
from rollover.core.posture.mtasts import (
    MAX_AGE_LIMIT,
    StsPolicy,
    StsRecord,
    check_mta_sts,
    mx_pattern_matches,
    parse_sts_policy,
    parse_sts_record,
    sts_dane_notes,
    uncovered,
)
from rollover.core.posture.signing import check_signing, rrset_signing, zone_signing
from rollover.core.posture.tlsrpt import (
    TLSRPT_CAP,
    TlsRptRecord,
    check_tlsrpt,
    parse_tlsrpt,
    rua_problem,
    tlsrpt_findings,
)
from rollover.core.verdicts import STATUS, worst


@dataclass(frozen=True)
class Posture:
    tlsrpt: Part
    mta_sts: Part
    coverage: Part
    signing: Part

    @property
    def parts(self) -> dict[str, Part]:
        return {
            "tlsrpt": self.tlsrpt,
            "mta_sts": self.mta_sts,
            "coverage": self.coverage,
            "signing": self.signing,
        }

    @property
    def exit(self) -> int:
        return fold(self.parts.values())

    def json(self) -> dict[str, Any]:
        """``{"tlsrpt": {...}, "mta_sts": {...}, "coverage": {...}, "signing": {...},
        "status", "exit"}``."""
        document: dict[str, Any] = {name: part.json() for name, part in self.parts.items()}
        document.update(status=STATUS[self.exit], exit=self.exit)
        return document

    def text(self) -> str:
        lines = []
        titles = {
            "tlsrpt": "TLS-RPT",
            "mta_sts": "MTA-STS",
            "coverage": "DANE coverage",
            "signing": "signing",
        }
        for name, part in self.parts.items():
            lines.append(f"{STATUS[part.exit]:<8} {titles[name]}")
            lines += [f"  - {f.message}" for f in part.findings if f.level != OK]
            lines += [f"  {f.message}" for f in part.findings if f.level == OK]
            lines += [f"  note: {n}" for n in part.details.get("disagreements", [])]
        return "\n".join(lines) + "\n"


def fold(parts: Iterable[Part]) -> int:
    """The Nagios code of the parts together: the most severe wins (CRITICAL > UNKNOWN >
    WARNING > OK), each part counting no more than its cap (TLS-RPT: WARNING)."""
    return worst([p.exit for p in parts])


def fold_into(
    document: Mapping[str, Any], text: str, posture: Posture
) -> tuple[dict[str, Any], str]:
    """``rollover verify``'s JSON document and text output with the posture added: the four
    parts as top-level keys (``tlsrpt``, ``mta_sts``, ``coverage``, ``signing``), ``status``
    and ``exit`` folded over the hosts and the posture, and the text's closing status line
    (:func:`rollover.core.verdicts.report_text`) moved below the posture."""
    parts = posture.json()
    code = worst([int(document["exit"]), int(parts.pop("exit"))])
    parts.pop("status")
    merged = {**document, **parts, "status": STATUS[code], "exit": code}
    body = text.removesuffix(STATUS[int(document["exit"])] + "\n")
    return merged, body + posture.text() + STATUS[code] + "\n"


__all__ = [
    "CRITICAL",
    "DAY",
    "MAX_AGE_LIMIT",
    "OK",
    "TLSRPT_CAP",
    "UNKNOWN",
    "WARNING",
    "Dnskey",
    "Ds",
    "Finding",
    "HostTlsa",
    "Part",
    "Posture",
    "Rrsig",
    "SignedRRset",
    "StsPolicy",
    "StsRecord",
    "TlsRptRecord",
    "TxtAnswer",
    "ZoneKeys",
    "check_coverage",
    "check_mta_sts",
    "check_signing",
    "check_tlsrpt",
    "fold",
    "fold_into",
    "mx_pattern_matches",
    "parse_sts_policy",
    "parse_sts_record",
    "parse_tlsrpt",
    "rrset_signing",
    "rua_problem",
    "sts_dane_notes",
    "tlsrpt_findings",
    "uncovered",
    "zone_signing",
]
