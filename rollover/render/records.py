"""Render derived TLSA records: zone lines, JSON, RFC 3597 generic, nsupdate, Route 53 batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rollover.core.derive import DerivedRecord
from rollover.errors import InputError

FORMATS = ("zone", "json", "generic", "nsupdate", "route53")
DEFAULT_TTL = 300


def unique(records: Sequence[DerivedRecord]) -> list[DerivedRecord]:
    """Drop records with the same owner and rdata as an earlier one (first source wins)."""
    seen: set[tuple[str, object]] = set()
    kept = []
    for record in records:
        key = (record.owner, record.association)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def render(records: Sequence[DerivedRecord], fmt: str) -> str:
    """The output text for ``records`` in format ``fmt`` (newline-terminated unless empty)."""
    if fmt == "zone":
        return "".join(f"{_prefix(r)} IN TLSA {r.association}\n" for r in records)
    if fmt == "generic":
        return "".join(_generic_line(r) for r in records)
    if fmt == "json":
        import json

        return json.dumps([_json_object(r) for r in records], indent=2) + "\n"
    if fmt == "nsupdate":
        return _nsupdate(records)
    if fmt == "route53":
        return _route53(records)
    raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _prefix(record: DerivedRecord) -> str:
    if record.ttl is None:
        return record.owner
    return f"{record.owner} {record.ttl}"


def _generic_line(record: DerivedRecord) -> str:
    """RFC 3597 section 5: ``TYPE52 \\# <length> <hex>`` for servers that predate TLSA."""
    a = record.association
    rdata = bytes((a.params.usage, a.params.selector, a.params.mtype)) + a.data
    return f"{_prefix(record)} IN TYPE52 \\# {len(rdata)} {rdata.hex()}\n"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_object(record: DerivedRecord) -> dict[str, object]:
    a = record.association
    return {
        "owner": record.owner,
        "ttl": record.ttl,
        "usage": a.params.usage,
        "selector": a.params.selector,
        "mtype": a.params.mtype,
        "data": a.hex,
        "rdata": str(a),
        "params": a.params.mnemonic,
        "source": record.source,
        "subject": record.subject,
        "issuer": record.issuer,
        "not_before": _iso(record.not_before),
        "not_after": _iso(record.not_after),
        "key_type": record.key_type,
    }


def _require_absolute(records: Sequence[DerivedRecord], fmt: str) -> None:
    if any(not r.owner.endswith(".") for r in records):
        raise InputError(f"--format {fmt} needs an absolute owner name: give --host")


def _nsupdate(records: Sequence[DerivedRecord]) -> str:
    """A script for ``nsupdate``: one ``update add`` per record, then ``send``."""
    if not records:
        return ""
    _require_absolute(records, "nsupdate")
    lines = [
        "; apply with: nsupdate -k <tsig-key-file> <this-file>",
        "; add 'server <primary>' and 'zone <zone>' lines if nsupdate cannot find them",
    ]
    for r in records:
        ttl = DEFAULT_TTL if r.ttl is None else r.ttl
        lines.append(f"update add {r.owner} {ttl} IN TLSA {r.association}")
    lines.append("send")
    return "\n".join(lines) + "\n"


def _route53(records: Sequence[DerivedRecord]) -> str:
    """A ChangeBatch for ``aws route53 change-resource-record-sets``: one UPSERT per owner name.

    UPSERT replaces the whole RRset, so every value for one owner goes into one change.
    """
    if not records:
        return ""
    _require_absolute(records, "route53")
    by_owner: dict[str, list[DerivedRecord]] = {}
    for r in records:
        by_owner.setdefault(r.owner, []).append(r)
    changes = []
    for owner, group in by_owner.items():
        ttls = {r.ttl for r in group if r.ttl is not None}
        changes.append(
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": owner,
                    "Type": "TLSA",
                    "TTL": max(ttls) if ttls else DEFAULT_TTL,
                    "ResourceRecords": [{"Value": str(r.association)} for r in group],
                },
            }
        )
    batch = {"Comment": "TLSA records from rollover", "Changes": changes}
    import json

    return json.dumps(batch, indent=2) + "\n"
