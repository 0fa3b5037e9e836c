"""Render an :class:`Observation` as a table for people or as JSON for programs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollover.core.association import Association
from rollover.core.observation import Observation, Verdict, disagreements


def _records(records: frozenset[Association]) -> list[str]:
    return sorted(str(a) for a in records)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def observation_json(observation: Observation, result: Verdict) -> dict[str, Any]:
    return {
        "owner": observation.owner,
        "zone": observation.zone,
        "target": observation.target,
        "cname_chain": list(observation.cname_chain),
        "authoritative": [
            {
                "address": a.address,
                "serial": a.serial,
                "ttl": a.ttl,
                "records": _records(a.records),
                "exists": a.exists,
                "signed": a.signed,
                "rrsig_original_ttl": a.rrsig_original_ttl,
                "rrsig_expiration": _iso(a.rrsig_expiration),
                "negative_ttl": a.negative_ttl,
                "transport": a.transport,
                "error": a.error,
            }
            for a in observation.authoritative
        ],
        "resolvers": [
            {
                "address": r.address,
                "state": None if r.state is None else str(r.state),
                "records": _records(r.records),
                "ad": r.ad,
                "rcode": r.rcode,
                "ttl": r.ttl,
                "extended_errors": list(r.extended_errors),
                "error": r.error,
            }
            for r in observation.resolvers
        ],
        "consistent": observation.consistent,
        "disagreements": disagreements(observation.authoritative),
        "cache_horizon": observation.cache_horizon,
        "status": result.status,
        "exit": result.exit,
        "reasons": list(result.reasons),
        "error": observation.error,
    }


def observation_text(observation: Observation, result: Verdict) -> str:
    lines = [f"owner   {observation.owner}"]
    if observation.zone:
        lines.append(f"zone    {observation.zone}")
    if observation.cname_chain:
        lines.append(f"CNAME   {' -> '.join((*observation.cname_chain, observation.target))}")
    for a in observation.authoritative:
        lines.append("")
        if a.error is not None:
            lines.append(f"authoritative {a.address}  ERROR {a.error}")
            continue
        signed = "signed" if a.signed else "unsigned"
        if a.rrsig_expiration is not None:
            signed += f", RRSIG until {_iso(a.rrsig_expiration)}"
        lines.append(
            f"authoritative {a.address}  serial {a.serial}  {signed}"
            + ("  (TCP)" if a.transport == "tcp" else "")
        )
        if a.exists:
            lines += [f"  {observation.target} {a.ttl} IN TLSA {r}" for r in _records(a.records)]
        else:
            lines.append(f"  no TLSA RRset (negative-caching TTL {a.negative_ttl})")
    for r in observation.resolvers:
        lines.append("")
        if r.error is not None:
            lines.append(f"resolver {r.address}  ERROR {r.error}")
            continue
        ad = "AD" if r.ad else "no AD"
        ede = f"  {'; '.join(r.extended_errors)}" if r.extended_errors else ""
        lines.append(f"resolver {r.address}  {r.state} ({r.rcode}, {ad}){ede}")
        lines += [f"  {observation.target} {r.ttl} IN TLSA {x}" for x in _records(r.records)]
    lines.append("")
    lines.append(f"consistent      {'yes' if observation.consistent else 'no'}")
    lines.append(f"cache horizon   {observation.cache_horizon} s")
    lines.append(f"{result.status}" + (": " + "; ".join(result.reasons) if result.reasons else ""))
    return "\n".join(lines) + "\n"
