"""A mail domain's transport-security posture beside DANE: TLS-RPT, MTA-STS, coverage, signing.

Pure: the DNS answers, the fetched policy text and the clock come in as values; every check
returns a :class:`Part` (findings, each with a Nagios level, and JSON-ready details).
:func:`fold` combines the parts: the most severe wins (CRITICAL > UNKNOWN > WARNING > OK), and
the TLS-RPT part counts at most as a WARNING (a reporting channel never stops mail).

JSON keys (stable; the README documents them): ``tlsrpt``, ``mta_sts``, ``coverage``,
``signing``, each ``{"status", "exit", "findings": [{"level", "status", "message"}], ...}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from rollover.core.association import Association
from rollover.core.matching import usable_records
from rollover.core.verdicts import STATUS, worst

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
DAY = 86400
MAX_AGE_LIMIT = 31557600  # RFC 8461 section 3.2: about one year
TLSRPT_CAP = WARNING


class _GrammarError(ValueError):
    """A TLS-RPT or MTA-STS text that does not follow its grammar.

    Example: ``MTA-STS record: id 'a-b' is not 1 to 32 letters and digits``.
    """


# -- values ------------------------------------------------------------------------------


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


# -- grammar helpers -----------------------------------------------------------------------

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


# -- TLS-RPT (RFC 8460 section 3) ------------------------------------------------------------


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


# -- MTA-STS (RFC 8461 sections 3.1, 3.2, 4.1) -----------------------------------------------


@dataclass(frozen=True)
class StsRecord:
    id: str
    extensions: tuple[tuple[str, str], ...] = ()


def parse_sts_record(text: str) -> StsRecord:
    """``v=STSv1; id=20160831085700Z`` (RFC 8461 section 3.1: id is 1 to 32 letters/digits)."""
    fields = _fields(text, "STSv1", "MTA-STS record")
    ids = [value for key, value in fields if key == "id"]
    if len(ids) != 1:
        raise _GrammarError(
            f"MTA-STS record: {'no' if not ids else len(ids)} id fields (exactly one needed)"
        )
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", ids[0]):
        raise _GrammarError(f"MTA-STS record: id {ids[0]!r} is not 1 to 32 letters and digits")
    extensions = []
    for key, value in fields:
        if key != "id":
            if not _EXT_VALUE.fullmatch(value):
                raise _GrammarError(f"MTA-STS record: field {key} has a bad value")
            extensions.append((key, value))
    return StsRecord(ids[0], tuple(extensions))


@dataclass(frozen=True)
class StsPolicy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


def parse_sts_policy(text: str) -> StsPolicy:
    """The policy file (RFC 8461 section 3.2): ``key: value`` lines ended by LF or CRLF;
    ``version: STSv1``, ``mode`` enforce/testing/none, ``max_age`` 0..31557600, ``mx``
    patterns (required unless the mode is none); unknown keys are ignored."""
    values: dict[str, list[str]] = {}
    extensions = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").rstrip(" \t")
        if not line:
            continue
        key, colon, value = line.partition(":")
        value = value.lstrip(" \t")
        if not colon or not _EXT_NAME.fullmatch(key):
            raise _GrammarError(f"MTA-STS policy line {number}: not 'key: value'")
        if key in ("version", "mode", "max_age", "mx"):
            values.setdefault(key, []).append(value)
        else:
            extensions.append((key, value))
    for key in ("version", "mode", "max_age"):
        found = values.get(key, [])
        if len(found) != 1:
            raise _GrammarError(
                f"MTA-STS policy: {'no' if not found else len(found)} {key} fields "
                "(exactly one needed)"
            )
    version, mode, max_age = values["version"][0], values["mode"][0], values["max_age"][0]
    if version != "STSv1":
        raise _GrammarError(f"MTA-STS policy: version {version!r} is not STSv1")
    if mode not in ("enforce", "testing", "none"):
        raise _GrammarError(f"MTA-STS policy: mode {mode!r} is not enforce, testing or none")
    if not re.fullmatch(r"[0-9]{1,10}", max_age) or int(max_age) > MAX_AGE_LIMIT:
        raise _GrammarError(
            f"MTA-STS policy: max_age {max_age!r} is not 0 to {MAX_AGE_LIMIT} seconds"
        )
    patterns = tuple(values.get("mx", []))
    for pattern in patterns:
        if not _domain_ok(pattern.removeprefix("*.")):
            raise _GrammarError(f"MTA-STS policy: mx pattern {pattern!r} is not a host name")
    if not patterns and mode != "none":
        raise _GrammarError(f"MTA-STS policy: mode {mode} without any mx pattern")
    return StsPolicy(version, mode, int(max_age), patterns, tuple(extensions))


def mx_pattern_matches(pattern: str, host: str) -> bool:
    """RFC 8461 section 4.1: a pattern is a host name, or ``*.`` and a domain where the
    wildcard stands for exactly one left-most label (``*.example.com`` matches
    ``mx.example.com``, not ``example.com`` nor ``a.b.example.com``)."""
    pattern, host = _normal(pattern), _normal(host)
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return pattern == host


def uncovered(policy: StsPolicy, mx_hosts: Iterable[str]) -> list[str]:
    """The MX hosts no mx pattern of the policy matches."""
    return [h for h in mx_hosts if not any(mx_pattern_matches(p, h) for p in policy.mx)]


def check_mta_sts(
    record: TxtAnswer,
    policy_text: str | None,
    fetch_error: str | None,
    hosts: Sequence[HostTlsa],
    *,
    url: str,
    port: int = 25,
) -> Part:
    """The ``_mta-sts`` TXT record, the policy fetched from ``url``, its cover of the MX hosts,
    and where it and DANE disagree (RFC 8461 section 2: senders that do both use DANE)."""
    findings: list[Finding] = []
    disagreements: list[str] = []
    detail: dict[str, Any] = {
        "record": {"name": record.name, "txt": list(record.texts), "id": None},
        "policy": None,
        "uncovered_mx": [],
        "disagreements": disagreements,
    }
    if record.error is not None:
        return Part((Finding(UNKNOWN, f"{record.name} TXT: {record.error}"),), detail)
    candidates = [t for t in record.texts if _DELIM.split(t)[0] == "v=STSv1"]
    if not candidates:
        return Part((Finding(OK, f"no MTA-STS record at {record.name}: not published"),), detail)
    if len(candidates) > 1:
        msg = (
            f"{len(candidates)} v=STSv1 records at {record.name}: senders ignore MTA-STS "
            "(RFC 8461 section 3.1)"
        )
        return Part((Finding(WARNING, msg),), detail)
    try:
        parsed = parse_sts_record(candidates[0])
    except _GrammarError as exc:
        return Part((Finding(WARNING, f"{record.name}: {exc}: senders ignore MTA-STS"),), detail)
    detail["record"]["id"] = parsed.id
    policy_detail: dict[str, Any] = {
        "url": url,
        "fetched": policy_text is not None,
        "error": fetch_error,
        "version": None,
        "mode": None,
        "max_age": None,
        "mx": [],
    }
    detail["policy"] = policy_detail
    if policy_text is None:
        msg = (
            f"MTA-STS policy {url}: {fetch_error or 'not fetched'}: senders without a cached "
            "policy deliver as if there were none (RFC 8461 section 3.3)"
        )
        return Part((Finding(WARNING, msg),), detail)
    try:
        policy = parse_sts_policy(policy_text)
    except _GrammarError as exc:
        policy_detail["error"] = str(exc)
        return Part((Finding(WARNING, f"{url}: {exc}"),), detail)
    policy_detail.update(
        version=policy.version, mode=policy.mode, max_age=policy.max_age, mx=list(policy.mx)
    )
    names = [h.host for h in hosts]
    missing = uncovered(policy, names)
    detail["uncovered_mx"] = missing
    findings.append(
        Finding(OK, f"MTA-STS mode {policy.mode}, max_age {policy.max_age} s, id {parsed.id}")
    )
    if policy.mode == "enforce" and missing:
        if len(missing) == len(names):
            findings.append(
                Finding(
                    CRITICAL,
                    "no MX host matches the MTA-STS mx patterns under mode enforce: "
                    "MTA-STS senders will not deliver (RFC 8461 section 5)",
                )
            )
        else:
            findings.append(
                Finding(
                    WARNING,
                    f"{', '.join(missing)} not in the MTA-STS mx patterns: MTA-STS senders "
                    f"will not deliver to {'it' if len(missing) == 1 else 'them'} under mode "
                    "enforce",
                )
            )
    elif policy.mode == "testing" and missing:
        findings.append(
            Finding(
                WARNING,
                f"{', '.join(missing)} not in the MTA-STS mx patterns: senders report "
                f"failures for {'it' if len(missing) == 1 else 'them'} (mode testing)",
            )
        )
    if policy.mode != "none" and policy.max_age < DAY:
        findings.append(
            Finding(OK, f"max_age {policy.max_age} s is short: RFC 8461 expects weeks or more")
        )
    disagreements += sts_dane_notes(policy, hosts, missing, port=port)
    return Part(tuple(findings), detail)


def sts_dane_notes(
    policy: StsPolicy, hosts: Sequence[HostTlsa], missing: Sequence[str], *, port: int = 25
) -> list[str]:
    """Where MTA-STS and DANE tell senders different things. RFC 8461 section 2: a sender
    doing both applies DANE where TLSA records are usable and never lets MTA-STS override
    a failing DANE validation."""
    dane = [h.host for h in hosts if h.dane(port)]
    plain = [h.host for h in hosts if not h.dane(port)]
    notes: list[str] = []
    if dane and policy.mode != "none":
        notes.append(
            f"DANE and MTA-STS both apply to {', '.join(dane)}: senders that do both use DANE "
            "(RFC 8461 section 2); MTA-STS-only senders also need a WebPKI certificate there"
        )
    for host in dane:
        if host in missing and policy.mode != "none":
            notes.append(
                f"{host}: DANE-protected but outside the MTA-STS mx patterns: DANE senders use "
                "it, MTA-STS-only senders do not"
            )
    if dane and policy.mode in ("testing", "none"):
        notes.append(
            f"MTA-STS mode {policy.mode}: only DANE senders authenticate {', '.join(dane)}"
        )
    if plain and policy.mode == "enforce":
        covered = [h for h in plain if h not in missing]
        if covered:
            notes.append(
                f"{', '.join(covered)}: no usable secure TLSA RRset: protected by MTA-STS "
                "only (DANE-only senders use opportunistic TLS)"
            )
    return notes


# -- coverage (RFC 7672 section 2.2.1) ---------------------------------------------------------


def check_coverage(hosts: Sequence[HostTlsa], *, port: int = 25) -> Part:
    """An MX host without a usable secure TLSA RRset while others have one is a WARNING:
    senders keep MX preference ahead of security and reach it without DANE."""
    rows = [
        {
            "host": h.host,
            "tlsa_owner": h.owner,
            "dnssec": h.state,
            "records": len(h.records),
            "usable": len(h.usable(port)),
            "dane": h.dane(port),
            "error": h.error,
        }
        for h in hosts
    ]
    with_dane = [h.host for h in hosts if h.dane(port)]
    without = [h for h in hosts if not h.dane(port)]
    detail = {"hosts": rows, "dane_hosts": len(with_dane), "mx_hosts": len(hosts)}
    if not hosts:
        return Part((Finding(UNKNOWN, "no MX host to judge"),), detail)
    if not with_dane:
        return Part((Finding(OK, "no MX host has a usable secure TLSA RRset: no DANE"),), detail)
    if not without:
        return Part((Finding(OK, f"every MX host ({len(hosts)}) is DANE-protected"),), detail)
    findings = tuple(
        Finding(
            WARNING,
            f"{h.host} has no usable secure TLSA RRset ({_why(h, port)}) while "
            f"{', '.join(with_dane)} {'has one' if len(with_dane) == 1 else 'have one'}: "
            "senders reach it without DANE (RFC 7672 section 2.2.1)",
        )
        for h in without
    )
    return Part(findings, detail)


def _why(host: HostTlsa, port: int) -> str:
    if host.error is not None:
        return f"look-up failed: {host.error}"
    if host.state != "secure":
        return f"TLSA RRset {host.state}"
    if not host.records:
        return "no TLSA records"
    return "only unusable records"


# -- signing health ------------------------------------------------------------------------


def _left(expiration: datetime, now: datetime) -> int:
    return int((expiration - now).total_seconds())


def _expiry_finding(label: str, seconds: int, warn_days: int) -> Finding:
    days = seconds / DAY
    if seconds <= 0:
        return Finding(CRITICAL, f"{label}: signatures expired {-seconds // DAY} days ago")
    if seconds < DAY:
        return Finding(CRITICAL, f"{label}: signatures expire in {seconds / 3600:.1f} hours")
    if seconds < warn_days * DAY:
        return Finding(WARNING, f"{label}: signatures expire in {days:.1f} days")
    return Finding(OK, f"{label}: signatures valid for {days:.1f} more days")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rrset_signing(
    rrset: SignedRRset, now: datetime, warn_days: int
) -> tuple[list[Finding], dict[str, Any], datetime | None]:
    """An RRset's signatures: the earliest expiration counts (the first one a validator may
    meet); a signature not yet valid (inception ahead of the clock) is CRITICAL."""
    label = f"{rrset.name} {rrset.rdtype}"
    detail: dict[str, Any] = {
        "name": rrset.name,
        "type": rrset.rdtype,
        "zone": rrset.zone,
        "signed": bool(rrset.signatures),
        "expiration": None,
        "seconds_left": None,
        "error": rrset.error,
    }
    if rrset.error is not None:
        return [Finding(UNKNOWN, f"{label}: {rrset.error}")], detail, None
    if not rrset.exists:
        return [], detail, None
    if not rrset.signatures:
        return [Finding(OK, f"{label}: not signed (no DNSSEC: nothing expires)")], detail, None
    findings: list[Finding] = []
    early = min(rrset.signatures, key=lambda s: s.expiration)
    seconds = _left(early.expiration, now)
    detail.update(expiration=_iso(early.expiration), seconds_left=seconds)
    where = f" (at {early.server})" if early.server else ""
    findings.append(_expiry_finding(label + where, seconds, warn_days))
    for sig in rrset.signatures:
        if sig.inception > now:
            findings.append(
                Finding(
                    CRITICAL,
                    f"{label}: a signature (key {sig.key_tag}) is not valid before "
                    f"{_iso(sig.inception)}",
                )
            )
            break
    return findings, detail, early.expiration


def zone_signing(
    keys: ZoneKeys, now: datetime, warn_days: int
) -> tuple[list[Finding], dict[str, Any], datetime | None]:
    """The zone's DNSKEY RRset: a DS in the parent must match a DNSKEY (digest computed from
    the key) that signs the DNSKEY RRset (RFC 4035 section 5.2), and those signatures must
    not run out."""
    detail: dict[str, Any] = {
        "zone": keys.zone,
        "dnskey_expiration": None,
        "seconds_left": None,
        "ds": [],
        "chain_ok": False,
        "error": keys.dnskey.error or keys.ds_error,
    }
    zone = keys.zone
    if keys.dnskey.error is not None:
        return [Finding(UNKNOWN, f"{zone} DNSKEY: {keys.dnskey.error}")], detail, None
    if not keys.keys:
        return [Finding(CRITICAL, f"{zone}: signed records but no DNSKEY RRset")], detail, None
    by_tag = {(k.key_tag, k.algorithm): k for k in keys.keys}
    signers = {(s.key_tag, s.algorithm) for s in keys.dnskey.signatures if s.verified is not False}
    findings: list[Finding] = []
    anchors = []
    for ds in keys.ds:
        key = by_tag.get((ds.key_tag, ds.algorithm))
        matches = key is not None and dict(key.digests).get(ds.digest_type) == ds.digest.lower()
        signs = matches and (ds.key_tag, ds.algorithm) in signers
        detail["ds"].append(
            {
                "key_tag": ds.key_tag,
                "algorithm": ds.algorithm,
                "digest_type": ds.digest_type,
                "matches_dnskey": matches,
                "signs_dnskey": signs,
            }
        )
        if signs:
            anchors.append((ds.key_tag, ds.algorithm))
    if zone == ".":
        anchors = list(signers)  # the root: its trust anchor is configured, not a DS
    elif keys.ds_error is not None:
        findings.append(Finding(UNKNOWN, f"DS of {zone}: {keys.ds_error}"))
    elif not keys.ds:
        findings.append(
            Finding(
                WARNING,
                f"{zone} is signed but its parent has no DS: validators cannot reach it "
                "(insecure or an island of trust)",
            )
        )
    elif not anchors:
        findings.append(
            Finding(
                CRITICAL,
                f"no DS of {zone} matches a DNSKEY that signs its DNSKEY RRset: the chain of "
                "trust is broken (bogus)",
            )
        )
    detail["chain_ok"] = bool(anchors)
    counted = [s for s in keys.dnskey.signatures if (s.key_tag, s.algorithm) in anchors] or list(
        keys.dnskey.signatures
    )
    if not counted:
        findings.append(Finding(CRITICAL, f"{zone}: the DNSKEY RRset is not signed"))
        return findings, detail, None
    rrset_findings, rrset_detail, expiration = rrset_signing(
        SignedRRset(keys.dnskey.name, "DNSKEY", zone, True, tuple(counted)), now, warn_days
    )
    findings += rrset_findings
    detail.update(
        dnskey_expiration=rrset_detail["expiration"], seconds_left=rrset_detail["seconds_left"]
    )
    return findings, detail, expiration


def check_signing(
    rrsets: Sequence[SignedRRset],
    zones: Sequence[ZoneKeys],
    *,
    now: datetime,
    warn_days: int = 7,
) -> Part:
    """DANE lasts only as long as its signatures: each TLSA (and MX) RRset and each zone's
    DNSKEY RRset; WARNING under ``warn_days`` days left, CRITICAL under one day."""
    findings: list[Finding] = []
    rows = []
    expirations: list[datetime] = []
    for rrset in rrsets:
        found, row, expiration = rrset_signing(rrset, now, warn_days)
        findings += found
        rows.append(row)
        if expiration is not None:
            expirations.append(expiration)
    zone_rows = []
    for keys in zones:
        found, row, expiration = zone_signing(keys, now, warn_days)
        findings += found
        zone_rows.append(row)
        if expiration is not None:
            expirations.append(expiration)
    earliest = min(expirations, default=None)
    detail = {
        "warn_days": warn_days,
        "earliest_expiration": None if earliest is None else _iso(earliest),
        "seconds_left": None if earliest is None else _left(earliest, now),
        "rrsets": rows,
        "zones": zone_rows,
    }
    if not findings:
        findings.append(Finding(OK, "no signed RRset to check"))
    return Part(tuple(findings), detail)


# -- the whole posture ---------------------------------------------------------------------


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
