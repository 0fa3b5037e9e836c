"""A misbehaving authoritative DNS server on loopback, for the observer's hostile-input tests."""

from __future__ import annotations

import os
import socket
import struct
import threading
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

ZONE = "fuzz.test."


@dataclass
class FakeDns:
    mode: str
    address: str = "127.0.0.1"
    port: int = 0
    upstream: tuple[str, int] | None = None  # "tamper": forward here, then spoil the signatures
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> FakeDns:
        self._udp, self._tcp = self._bind_pair()
        for sock in (self._udp, self._tcp):
            sock.settimeout(0.1)
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket on one free port: a port free for UDP may be taken for TCP
        (another test's server), so a taken one is given back and another tried."""
        for _attempt in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.address, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.address, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self.port = port
            return udp, tcp
        raise OSError(f"no port on {self.address} free for both UDP and TCP")

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._udp.close()
        self._tcp.close()

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        if self.mode == "tamper":
            return self._tampered(query, tcp=tcp)
        question = query.question[0]
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if question.rdtype == dns.rdatatype.SOA or self.mode == "normal":
            zone = dns.name.from_text(ZONE)
            soa = dns.rrset.from_text(ZONE, 60, "IN", "SOA", "ns. h. 7 60 60 60 30")
            if question.name == zone:
                response.answer.append(soa)
            else:
                response.authority.append(soa)
                response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        mode = self.mode
        if mode == "silent":
            return None
        if mode == "garbage":
            return os.urandom(40)
        if mode == "short":
            return response.to_wire()[:7]
        if mode == "wrong-id":
            response.id = (query.id + 1) % 65536
            return response.to_wire()
        if mode == "wrong-question":
            other = dns.message.make_query("other.fuzz.test.", "TLSA")
            other.id = query.id
            other.flags |= dns.flags.QR | dns.flags.AA
            return other.to_wire()
        if mode == "cname-loop":
            name = question.name
            target = (
                dns.name.from_text("_loop-b." + ZONE)
                if name.labels[0] != b"_loop-b"
                else dns.name.from_text("_25._tcp.mx." + ZONE)
            )
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", target.to_text()))
            return response.to_wire()
        if mode == "huge":
            rrset = dns.rrset.from_text_list(
                question.name, 60, "IN", "TLSA", [f"3 1 2 {i:0128x}" for i in range(400)]
            )
            response.answer.append(rrset)
            wire = response.to_wire(max_size=65535)
            if not tcp:
                response.answer.clear()
                response.flags |= dns.flags.TC
                return response.to_wire()
            return wire
        if mode == "always-truncated":
            response.flags |= dns.flags.TC
            return None if tcp else response.to_wire()
        return response.to_wire()

    def _tampered(self, query: dns.message.Message, *, tcp: bool) -> bytes | None:
        """The upstream's answer with every RRSIG's signature flipped: a validating resolver
        behind this finds the zone bogus (as with a man in the middle, or expired signatures)."""
        assert self.upstream is not None
        address, port = self.upstream
        try:
            if tcp:
                response = dns.query.tcp(query, address, port=port, timeout=2)
            else:
                response = dns.query.udp(query, address, port=port, timeout=2)
        except Exception:
            return None
        for section in (response.answer, response.authority):
            for index, rrset in enumerate(section):
                if rrset.rdtype != dns.rdatatype.RRSIG:
                    continue
                spoiled = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
                for rdata in rrset:
                    signature = bytes(b ^ 0x5A for b in rdata.signature)  # type: ignore[attr-defined]
                    spoiled.add(rdata.replace(signature=signature), rrset.ttl)
                section[index] = spoiled
        return response.to_wire(max_size=65535 if tcp else 4096)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            reply = self.answer(wire, tcp=False)
            if reply is not None:
                self._udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    length = struct.unpack("!H", conn.recv(2))[0]
                    wire = b""
                    while len(wire) < length:
                        chunk = conn.recv(length - len(wire))
                        if not chunk:
                            break
                        wire += chunk
                    reply = self.answer(wire, tcp=True)
                    if reply is not None:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    continue
