"""The DNS observer with its network replaced by a replayed conversation: every question is
answered by the next recorded message (cyclically), each framed by a two-octet length as over
TCP. For fuzzing (tests/fuzz_targets.py) and for tests of hostile answers."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from rollover.edges.observer import DnsObserver
from rollover.errors import ObserverError


def split_frames(data: bytes) -> list[bytes]:
    frames = []
    while len(data) >= 2:
        (length,) = struct.unpack("!H", data[:2])
        frames.append(data[2 : 2 + length])
        data = data[2 + length :]
    return frames


@dataclass
class ReplayObserver(DnsObserver):
    """The observer, its every question answered by the next recorded message (cyclically)."""

    replies: list[bytes] = field(default_factory=list)
    asked: int = 0

    def _send(
        self,
        address: str,
        port: int,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        recursive: bool,
        checking_disabled: bool = False,
        dnssec: bool = True,
    ) -> tuple[dns.message.Message, str]:
        del dnssec  # the recorded answers are replayed as they are
        if self.asked >= 64:
            raise ObserverError(f"{address}: too many questions")
        wire = self.replies[self.asked % len(self.replies)]
        self.asked += 1
        try:
            return dns.message.from_wire(wire), "udp"
        except dns.exception.DNSException as exc:  # what the real one does with a bad answer
            raise ObserverError(f"{address}: bad answer: {exc}") from None


def conversation(a_class: str = "IN") -> bytes:
    """What the observer hears for _25._tcp.mx1.fuzz.test. with one resolver: the zone's SOA,
    its NS set and the server's addresses, the server's signed TLSA RRset and SOA, the
    resolver's validated TLSA RRset; framed as over TCP."""
    owner = "_25._tcp.mx1.fuzz.test."
    tlsa = "3 1 1 " + "ab" * 32
    sig = "TLSA 13 5 300 20270101000000 20261101000000 12345 fuzz.test. " + "AAAA" * 16
    soa = "ns.fuzz.test. host.fuzz.test. 7 60 60 600 30"

    def reply(name: str, rdtype: str, answer=(), authority=(), aa=False, ad=False, rdclass="IN"):  # type: ignore[no-untyped-def]
        message = dns.message.make_response(dns.message.make_query(name, rdtype))
        message.flags |= (dns.flags.AA if aa else 0) | (dns.flags.AD if ad else 0)
        for section, records in ((message.answer, answer), (message.authority, authority)):
            for rname, rtype, text in records:
                klass = rdclass if rtype == "A" else "IN"
                data = text
                if klass != "IN":  # opaque data: dnspython knows no A type for this class
                    data = "\\# 4 " + bytes(map(int, text.split("."))).hex()
                section.append(dns.rrset.from_text(rname, 300, klass, rtype, data))
        return message.to_wire()

    messages = [
        reply(owner, "SOA", authority=[("fuzz.test.", "SOA", soa)]),
        reply("fuzz.test.", "NS", answer=[("fuzz.test.", "NS", "ns.fuzz.test.")]),
        reply("ns.fuzz.test.", "A", answer=[("ns.fuzz.test.", "A", "127.0.0.1")], rdclass=a_class),
        reply("ns.fuzz.test.", "AAAA", authority=[("fuzz.test.", "SOA", soa)]),
        reply(owner, "TLSA", answer=[(owner, "TLSA", tlsa), (owner, "RRSIG", sig)], aa=True),
        reply("fuzz.test.", "SOA", answer=[("fuzz.test.", "SOA", soa)], aa=True),
        reply(owner, "TLSA", answer=[(owner, "TLSA", tlsa), (owner, "RRSIG", sig)], ad=True),
    ]
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)
