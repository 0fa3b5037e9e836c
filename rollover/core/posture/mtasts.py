"""MTA-STS (RFC 8461 sections 3.1, 3.2, 4.1): the ``_mta-sts`` TXT record, the policy file,
its mx patterns against the MX hosts, and where MTA-STS and DANE tell senders different
things (RFC 8461 section 2)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rollover.core.posture.grammar import (
    _DELIM,
    _EXT_NAME,
    _EXT_VALUE,
    _domain_ok,
    _fields,
    _GrammarError,
    _normal,
)
from rollover.core.posture.model import (
    CRITICAL,
    DAY,
    OK,
    UNKNOWN,
    WARNING,
    Finding,
    HostTlsa,
    Part,
    TxtAnswer,
)

MAX_AGE_LIMIT = 31557600  # RFC 8461 section 3.2: about one year


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
