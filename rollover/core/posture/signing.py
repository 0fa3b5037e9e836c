"""Signing health: the RRSIGs of the TLSA (and MX) RRsets and of each zone's DNSKEY RRset,
and the DS in the parent that must match a DNSKEY signing that RRset (RFC 4035 section 5.2).
DANE lasts only as long as its signatures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rollover.core.posture.model import (
    CRITICAL,
    DAY,
    OK,
    UNKNOWN,
    WARNING,
    Finding,
    Part,
    SignedRRset,
    ZoneKeys,
)


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
