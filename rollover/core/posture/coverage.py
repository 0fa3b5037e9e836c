"""DANE coverage of the MX hosts (RFC 7672 section 2.2.1): senders keep MX preference ahead
of security, so one MX host without a usable secure TLSA RRset is reached without DANE."""

from __future__ import annotations

from collections.abc import Sequence

from rollover.core.posture.model import OK, UNKNOWN, WARNING, Finding, HostTlsa, Part


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
