"""The one DNS query helper: a question over UDP (TCP when truncated), DNSSEC records asked
for, with a bounded number of tries, every failure one line naming the server."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from rollover.core.addresses import format_server
from rollover.errors import ObserverError

PAYLOAD = 1232  # DNS flag day 2020 EDNS buffer size


def exchange(
    address: str,
    port: int,
    qname: dns.name.Name | str,
    rdtype: dns.rdatatype.RdataType | str,
    *,
    recursive: bool,
    timeout: float,
    tries: int = 1,
    checking_disabled: bool = False,
    dnssec: bool = True,
) -> tuple[dns.message.Message, str]:
    """Ask ``address`` and return the response and the transport used (``udp``/``tcp``).

    ``recursive``: a question for a validating resolver (AD asked for, or CD when
    ``checking_disabled``); otherwise for an authoritative server (RD cleared). ``dnssec``
    False leaves the DO bit clear: for look-ups that read no signature (the zone's SOA, its
    NS set), whose denials would otherwise carry NSEC3 chains and RRSIGs to parse."""
    query = dns.message.make_query(qname, rdtype, want_dnssec=dnssec, payload=PAYLOAD)
    if recursive:
        query.flags |= dns.flags.CD if checking_disabled else dns.flags.AD
    else:
        query.flags &= ~dns.flags.RD
    last: Exception | None = None
    for _attempt in range(max(1, tries)):
        try:
            response, used_tcp = dns.query.udp_with_fallback(
                query, address, timeout=timeout, port=port
            )
            return response, "tcp" if used_tcp else "udp"
        except (dns.exception.Timeout, OSError) as exc:
            last = exc
        except EOFError:
            last = ConnectionError("the server closed the TCP connection")
        except dns.exception.DNSException as exc:  # malformed, wrong id/question...
            raise ObserverError(f"{format_server(address, port)}: bad answer: {exc}") from None
    if isinstance(last, dns.exception.Timeout):
        total = timeout * max(1, tries)
        raise ObserverError(f"{format_server(address, port)}: timed out after {total:g} s")
    raise ObserverError(f"{format_server(address, port)}: {last}")
