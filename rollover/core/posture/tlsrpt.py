"""TLS-RPT (RFC 8460 section 3): the ``_smtp._tls`` TXT record at the policy domain and at
each MX host name, its ``rua`` report destinations. Counts at most as a WARNING in the fold
(a reporting channel never stops mail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rollover.core.posture.grammar import (
    _DELIM,
    _EXT_VALUE,
    _domain_ok,
    _fields,
    _GrammarError,
    _normal,
)
from rollover.core.posture.model import OK, UNKNOWN, WARNING, Finding, Part, TxtAnswer

TLSRPT_CAP = WARNING


@dataclass(frozen=True)
class TlsRptRecord:
    rua: tuple[str, ...]
    bad_rua: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()


def rua_problem(uri: str) -> str | None:
    """Why ``uri`` is not a usable report destination: RFC 8460 section 3 allows ``mailto:``
    (an addr-spec) and ``https:`` (a host) URIs."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "mailto":
        local, at, domain = rest.partition("@")
        if not at or not local or not _domain_ok(domain) or any(c in rest for c in " <>,;"):
            return f"{uri!r}: not a mailto: URI with one address"
        return None
    if scheme.lower() == "https":
        try:
            parts = urlsplit(uri)
            host = parts.hostname or ""
            _ = parts.port
        except ValueError:
            return f"{uri!r}: not a well-formed https: URI"
        if not rest.startswith("//") or not host or " " in uri:
            return f"{uri!r}: not a well-formed https: URI"
        return None
    return f"{uri!r}: only mailto: and https: URIs are allowed"


def parse_tlsrpt(text: str) -> TlsRptRecord:
    """``v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/x`` (RFC 8460 section 3).

    Raises :class:`_GrammarError`; URIs of a known scheme that are malformed are kept in
    ``bad_rua``."""
    fields = _fields(text, "TLSRPTv1", "TLS-RPT record")
    ruas = [value for key, value in fields if key == "rua"]
    if len(ruas) != 1:
        raise _GrammarError(
            f"TLS-RPT record: {'no' if not ruas else len(ruas)} rua fields (exactly one needed)"
        )
    uris = [u.strip() for u in ruas[0].split(",")]
    good = tuple(u for u in uris if u and rua_problem(u) is None)
    bad = tuple(u for u in uris if not u or rua_problem(u) is not None)
    extensions = []
    for key, value in fields:
        if key != "rua":
            if not _EXT_VALUE.fullmatch(value):
                raise _GrammarError(f"TLS-RPT record: field {key} has a bad value")
            extensions.append((key, value))
    return TlsRptRecord(good, bad, tuple(extensions))


def tlsrpt_findings(answer: TxtAnswer, *, required: bool) -> tuple[list[Finding], dict[str, Any]]:
    """Findings for one ``_smtp._tls`` name. ``required``: the policy domain itself (a missing
    record is a WARNING); at an MX host name a missing record is a note only."""
    owner = answer.name
    detail: dict[str, Any] = {"name": owner, "txt": list(answer.texts), "rua": [], "valid": False}
    if answer.error is not None:
        return [Finding(UNKNOWN, f"{owner} TXT: {answer.error}")], detail
    # RFC 8460 section 3: records not beginning with v=TLSRPTv1 are discarded; a count other
    # than one means the domain does not implement TLS-RPT.
    candidates = [t for t in answer.texts if _DELIM.split(t)[0] == "v=TLSRPTv1"]
    if not candidates:
        if required:
            msg = f"no TLS-RPT record at {owner}: senders send no TLS reports (RFC 8460)"
            return [Finding(WARNING, msg)], detail
        return [
            Finding(
                OK,
                f"no TLS-RPT record at {owner} (senders that take the MX host as the "
                "DANE policy domain send no reports for it)",
            )
        ], detail
    if len(candidates) > 1:
        msg = (
            f"{len(candidates)} v=TLSRPTv1 records at {owner}: senders must assume there is "
            "none (RFC 8460 section 3)"
        )
        return [Finding(WARNING, msg)], detail
    try:
        record = parse_tlsrpt(candidates[0])
    except _GrammarError as exc:
        return [Finding(WARNING, f"{owner}: {exc}")], detail
    findings = [
        Finding(WARNING, f"{owner}: rua {rua_problem(u) or repr(u)}") for u in record.bad_rua
    ]
    detail["rua"] = list(record.rua)
    if not record.rua:
        findings.append(Finding(WARNING, f"{owner}: no well-formed rua URI: reports go nowhere"))
    else:
        detail["valid"] = True
        findings.append(Finding(OK, f"{owner}: reports to {', '.join(record.rua)}"))
    return findings, detail


def check_tlsrpt(domain: TxtAnswer, hosts: Sequence[TxtAnswer] = ()) -> Part:
    """TLS-RPT at ``_smtp._tls.<domain>`` and, where RFC 8460 puts the DANE policy domain, at
    each MX host name. Counts at most as a WARNING in the fold."""
    findings, detail = tlsrpt_findings(domain, required=True)
    records = [detail]
    for answer in hosts:
        if _normal(answer.name) == _normal(domain.name):
            continue
        host_findings, host_detail = tlsrpt_findings(answer, required=False)
        findings += host_findings
        records.append(host_detail)
    return Part(tuple(findings), {"records": records}, cap=TLSRPT_CAP)
