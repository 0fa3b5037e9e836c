"""A DNS-over-TCP proxy on loopback in front of the lab's primary that injects faults into the
RFC 2136 provider's traffic: an answer of REFUSED, NOTAUTH or SERVFAIL (TSIG-signed with the lab
key, as a server would), silence until the client times out, a connection reset, and a reply
lost after the primary applied the update. Everything else is passed through byte for byte, and
every exchange is logged so a test can count the updates the primary accepted."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.opcode
import dns.rcode
import dns.update

ANSWERS = {
    "REFUSED": dns.rcode.REFUSED,
    "NOTAUTH": dns.rcode.NOTAUTH,
    "SERVFAIL": dns.rcode.SERVFAIL,
}


@dataclass(frozen=True)
class Exchange:
    at: float
    opcode: str  # "QUERY" or "UPDATE"
    fault: str | None
    rcode: str | None  # the primary's answer; None when it never saw the message
    owners: tuple[str, ...] = ()  # the names an UPDATE changes (its update section)


def _owners(opcode: str, wire: bytes, keyring: Any) -> tuple[str, ...]:
    """The distinct names an UPDATE's update section touches (RFC 2136 section 2.5)."""
    if opcode != "UPDATE":
        return ()
    message = dns.message.from_wire(wire, keyring=keyring)
    section = getattr(message, "update", message.authority)
    return tuple(dict.fromkeys(rrset.name.to_text().lower() for rrset in section))


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _recv_message(conn: socket.socket) -> bytes:
    (length,) = struct.unpack("!H", _recv_exact(conn, 2))
    return _recv_exact(conn, length)


@dataclass
class DnsFaults:
    upstream: tuple[str, int]
    keyring: Any
    hold: float = 5.0  # how long "timeout" keeps the client waiting
    log: list[Exchange] = field(default_factory=list)
    _faults: list[list[Any]] = field(default_factory=list)  # [opcode, fault, remaining]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> DnsFaults:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def inject(self, opcode: str, fault: str, times: int = 1) -> None:
        with self._lock:
            self._faults.append([opcode, fault, times])

    def pending(self) -> int:
        with self._lock:
            return sum(int(f[2]) for f in self._faults)

    def accepted_updates(self) -> list[Exchange]:
        return [e for e in self.log if e.opcode == "UPDATE" and e.rcode == "NOERROR"]

    def _take(self, opcode: str) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault[0] == opcode and fault[2] > 0:
                    fault[2] -= 1
                    return str(fault[1])
        return None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                wire = _recv_message(conn)
            except (EOFError, OSError):
                return
            opcode = dns.opcode.to_text(dns.opcode.from_flags(struct.unpack("!H", wire[2:4])[0]))
            fault = self._take(opcode)
            if fault in ANSWERS:
                assert fault is not None
                query = dns.message.from_wire(wire, keyring=self.keyring)
                response = dns.message.make_response(query)
                response.set_rcode(ANSWERS[fault])
                reply = response.to_wire()
                conn.sendall(struct.pack("!H", len(reply)) + reply)
                self._record(Exchange(time.time(), opcode, fault, None))
                return
            if fault == "timeout":
                self._record(Exchange(time.time(), opcode, fault, None))
                self._stop.wait(self.hold)
                return
            if fault == "reset":
                self._record(Exchange(time.time(), opcode, fault, None))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            with socket.create_connection(self.upstream, timeout=10) as upstream:
                upstream.sendall(struct.pack("!H", len(wire)) + wire)
                reply = _recv_message(upstream)
            rcode = dns.rcode.to_text(dns.rcode.from_flags(struct.unpack("!H", reply[2:4])[0], 0))
            owners = _owners(opcode, wire, self.keyring)
            self._record(Exchange(time.time(), opcode, fault, rcode, owners))
            if fault == "drop-after":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            try:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)
