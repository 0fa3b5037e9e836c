"""The TLS probe: connect, speak the protocol's upgrade, and capture the whole presented chain.

I/O edge. Python 3.11's ``ssl`` has no public API for the peer's chain
(``SSLSocket.get_unverified_chain`` arrives in 3.13); the private ``_sslobj.get_unverified_chain``
that exists since 3.10 is used, in :func:`_presented_chain` only. Verification is off on purpose:
DANE matching (``rollover.core.matching``) decides, not the system's CA store.
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
from dataclasses import dataclass

from rollover.core.addresses import format_server
from rollover.core.presented import PresentedChain, ProbeResult
from rollover.errors import InputError

STARTTLS_PROTOCOLS = ("smtp", "imap", "pop3", "xmpp", "none")
_DEFAULT_STARTTLS = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3", 5222: "xmpp", 5269: "xmpp"}

# TLS 1.2 cipher families that make a server with RSA and ECDSA certificates side by side
# present one or the other; "default" lets it choose (TLS 1.3 where available).
KEY_ALGORITHMS = {
    "default": None,
    "ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "rsa": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-CHACHA20-POLY1305:AES128-GCM-SHA256:AES256-GCM-SHA384",
}


def default_starttls(port: int) -> str:
    return _DEFAULT_STARTTLS.get(port, "none")


class ProbeError(Exception):
    """Internal: one connection failed; the message is the one-line reason."""

    def __init__(self, reason: str, *, starttls_missing: bool = False) -> None:
        super().__init__(reason)
        self.starttls_missing = starttls_missing


@dataclass
class _Deadline:
    end: float

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ProbeError("timed out")
        return remaining


def _leaf_algorithm(chain: PresentedChain) -> str | None:
    """``ecdsa`` or ``rsa`` for the leaf's key, None for any other (or an unreadable leaf)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if not chain.certificates:
        return None
    try:
        key = x509.load_der_x509_certificate(chain.certificates[0]).public_key()
    except ValueError:
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return None


class TlsProbe:
    """Probe one address. ``timeout`` bounds the whole probe of an address, all handshakes."""

    def __init__(self, *, timeout: float = 10.0, ehlo_name: str | None = None) -> None:
        self.timeout = timeout
        self.ehlo_name = ehlo_name

    def probe(
        self,
        address: str,
        port: int,
        server_name: str,
        starttls: str,
        algorithms: tuple[str, ...] = ("default", "ecdsa", "rsa"),
    ) -> ProbeResult:
        if starttls not in STARTTLS_PROTOCOLS:
            raise InputError(f"--starttls {starttls!r}: use one of {', '.join(STARTTLS_PROTOCOLS)}")
        label = format_server(address, port)
        deadline = _Deadline(time.monotonic() + self.timeout)
        chains: list[PresentedChain] = []
        for asked in algorithms:
            if any(asked == _leaf_algorithm(c) for c in chains if c.asked == "default"):
                # The default handshake already brought the server's one chain of this key
                # algorithm (a TLS server holds one certificate per key type): asking again
                # would only repeat it.
                continue
            try:
                chains.append(
                    self._handshake(
                        address,
                        port,
                        server_name,
                        starttls=starttls,
                        asked=asked,
                        deadline=deadline,
                    )
                )
            except ProbeError as exc:
                if asked == "default" or exc.starttls_missing or str(exc) == "timed out":
                    reason = str(exc)
                    if reason.startswith("timed out"):
                        reason += f" (the probe's limit: {self.timeout:g} s)"
                    return ProbeResult(label, tuple(chains), reason, exc.starttls_missing)
                # The server has no certificate of that algorithm: not an error.
            except ssl.SSLError as exc:
                if asked == "default":
                    return ProbeResult(
                        label, tuple(chains), f"TLS handshake failed: {exc.reason or exc}"
                    )
        return ProbeResult(label, tuple(chains))

    def _handshake(
        self,
        address: str,
        port: int,
        server_name: str,
        *,
        starttls: str,
        asked: str,
        deadline: _Deadline,
    ) -> PresentedChain:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            try:
                sock.connect((address, port))
            except TimeoutError:
                raise ProbeError("timed out connecting") from None
            except ConnectionRefusedError:
                raise ProbeError("connection refused") from None
            except OSError as exc:
                raise ProbeError(f"cannot connect: {exc.strerror or exc}") from None
            self._upgrade(sock, starttls, server_name, deadline)
            context = _client_context(asked)
            sock.settimeout(deadline.left())
            try:
                tls = context.wrap_socket(sock, server_hostname=server_name.rstrip("."))
            except TimeoutError:
                raise ProbeError("timed out during the TLS handshake") from None
            except ssl.SSLError as exc:
                raise ProbeError(f"TLS handshake failed: {exc.reason or exc}") from None
            except OSError as exc:
                raise ProbeError(f"TLS handshake failed: {exc.strerror or exc}") from None
            try:
                chain = _presented_chain(tls)
                cipher = tls.cipher()
                result = PresentedChain(
                    chain, tls.version() or "", cipher[0] if cipher else "", asked
                )
                if starttls == "smtp":
                    _polite_quit(tls)
                return result
            finally:
                tls.close()
        finally:
            sock.close()

    def _upgrade(
        self, sock: socket.socket, starttls: str, server_name: str, deadline: _Deadline
    ) -> None:
        conversation = _Conversation(sock, deadline)
        if starttls == "smtp":
            conversation.smtp(self._ehlo_name(sock))
        elif starttls == "imap":
            conversation.imap()
        elif starttls == "pop3":
            conversation.pop3()
        elif starttls == "xmpp":
            conversation.xmpp(server_name)

    def _ehlo_name(self, sock: socket.socket) -> str:
        if self.ehlo_name:
            return self.ehlo_name
        name = _fqdn()
        if "." in name and not name.endswith(".localdomain") and name != "localhost":
            return name
        local = sock.getsockname()[0]
        return f"[IPv6:{local}]" if ":" in local else f"[{local}]"


@functools.cache
def _client_context(asked: str) -> ssl.SSLContext:
    """One client context per key algorithm asked for, shared by every probe of the process
    (a context is safe to share between threads once set up; making one is a tenth of a
    handshake's cost). Nothing is verified here: the chain is judged against the TLSA
    records (and, for PKIX usages, by :mod:`rollover.edges.trust`), never by the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    ciphers = KEY_ALGORITHMS[asked]
    if ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
    return context


@functools.cache
def _fqdn() -> str:
    """This host's name, looked up once per process (a resolver call each time otherwise)."""
    return socket.getfqdn()


def _presented_chain(tls: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The peer's chain as sent, leaf first, in DER. The one place that uses the private API."""
    sslobj = getattr(tls, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is None:  # Python 3.13+: public API
        getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        leaf = tls.getpeercert(binary_form=True)
        return (leaf,) if leaf else ()
    chain = getter() or []
    der: list[bytes] = []
    for certificate in chain:
        data = (
            certificate
            if isinstance(certificate, bytes)
            else certificate.public_bytes(
                ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
            )
        )
        der.append(bytes(data))
    return tuple(der)


def _polite_quit(tls: ssl.SSLSocket) -> None:
    try:
        tls.settimeout(1.0)
        tls.sendall(b"QUIT\r\n")
        tls.recv(512)
    except (OSError, ssl.SSLError):
        pass


class _Conversation:
    """The plain-text part before the TLS upgrade."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def _line(self) -> str:
        while b"\n" not in self.buffer:
            self.sock.settimeout(self.deadline.left())
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                raise ProbeError("timed out waiting for the server") from None
            except OSError as exc:
                raise ProbeError(f"connection error: {exc.strerror or exc}") from None
            if not data:
                raise ProbeError("the server closed the connection")
            self.buffer += data
            if len(self.buffer) > 65536:
                raise ProbeError("the server sent an overlong line")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def _send(self, text: str) -> None:
        self.sock.settimeout(self.deadline.left())
        try:
            self.sock.sendall(text.encode() + b"\r\n")
        except OSError as exc:
            raise ProbeError(f"connection error: {exc.strerror or exc}") from None

    def _smtp_reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self._line()
            if len(line) < 3 or not (line[:3].isascii() and line[:3].isdigit()):
                raise ProbeError(f"not an SMTP server: {line[:60]!r}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] != "-":
                return int(line[:3]), lines

    def smtp(self, ehlo_name: str) -> None:
        code, lines = self._smtp_reply()
        if code != 220:
            raise ProbeError(f"SMTP greeting {code} {' '.join(lines)[:80]}")
        self._send(f"EHLO {ehlo_name}")
        code, lines = self._smtp_reply()
        if code != 250:
            raise ProbeError(f"EHLO answered {code} {' '.join(lines)[:80]}")
        if not any(line.split()[:1] == ["STARTTLS"] for line in lines if line):
            self._send("QUIT")
            raise ProbeError("STARTTLS not offered", starttls_missing=True)
        self._send("STARTTLS")
        code, lines = self._smtp_reply()
        if code != 220:
            raise ProbeError(f"STARTTLS answered {code} {' '.join(lines)[:80]}")

    def imap(self) -> None:
        greeting = self._line()
        if not greeting.startswith("* OK"):
            raise ProbeError(f"IMAP greeting {greeting[:80]!r}")
        self._send("a1 STARTTLS")
        while True:
            line = self._line()
            if line.startswith("a1 "):
                if not line.startswith("a1 OK"):
                    raise ProbeError("STARTTLS not offered", starttls_missing=True)
                return

    def pop3(self) -> None:
        if not self._line().startswith("+OK"):
            raise ProbeError("not a POP3 server")
        self._send("STLS")
        if not self._line().startswith("+OK"):
            raise ProbeError("STLS not offered", starttls_missing=True)

    def xmpp(self, server_name: str) -> None:
        domain = server_name.rstrip(".")
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(
            f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode()
        )
        received = b""
        while b"</stream:features>" not in received:
            self.sock.settimeout(self.deadline.left())
            data = self.sock.recv(4096)
            if not data:
                raise ProbeError("the server closed the XMPP stream")
            received += data
            if len(received) > 65536:
                raise ProbeError("overlong XMPP features")
        if b"urn:ietf:params:xml:ns:xmpp-tls" not in received:
            raise ProbeError("STARTTLS not offered", starttls_missing=True)
        self.sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        answer = b""
        while b">" not in answer:
            self.sock.settimeout(self.deadline.left())
            data = self.sock.recv(4096)
            if not data:
                raise ProbeError("the server closed the XMPP stream")
            answer += data
        if b"proceed" not in answer:
            raise ProbeError("XMPP STARTTLS refused")
