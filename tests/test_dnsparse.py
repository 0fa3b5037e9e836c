"""Issue 14 class 1: a malformed TLSA record is unusable, never a reason to lose the reply.
Runs under the dnspython the venv has and, in tests/run, under the lowest one allowed (2.6)."""

from __future__ import annotations

import dns.message
import dns.rrset

import rollover.edges.observer  # noqa: F401  (installs the leniency, as every DNS-reading module does)
from rollover.core.association import associations_from_rdata
from rollover.core.matching import match_chain
from tests.certs import NOW, make_pki
from tests.test_matching import rec

PKI = make_pki("p256", tag="dnsparse", host="mx.example.test")
OWNER = "_25._tcp.mx.example.test."
GOOD = str(rec("3 1 1", PKI.leaf))
SHORT = "3 1 1 " + "ab" * 31  # 31 bytes for SHA-256


def _reply() -> bytes:
    query = dns.message.make_query(OWNER, "TLSA")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(OWNER, 300, "IN", "TLSA", GOOD, SHORT))
    return reply.to_wire()


def test_a_reply_with_a_malformed_record_is_read_whole() -> None:
    parsed = dns.message.from_wire(_reply())
    records = associations_from_rdata(parsed.answer[0])
    assert {str(a) for a in records} == {GOOD, SHORT}
    result = match_chain(
        records, [PKI.leaf, PKI.intermediate], port=25, reference_names=[], now=NOW
    )
    assert result.ok  # the good record counts
    assert [str(a) for a, _why in result.unusable] == [SHORT]
    assert "31 bytes" in result.unusable[0][1]


def test_zone_text_with_a_malformed_record_is_read() -> None:
    import dns.zone

    text = f"@ 300 IN SOA ns. host. 1 60 60 600 60\n@ 300 IN NS ns.\n{OWNER} 300 IN TLSA {SHORT}\n"
    zone = dns.zone.from_text(text, origin="example.test.", relativize=False)
    rdataset = zone.find_rdataset(OWNER, "TLSA")
    assert [str(a) for a in associations_from_rdata(rdataset)] == [SHORT]
