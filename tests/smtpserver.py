"""A small STARTTLS SMTP server on loopback for the tests and the demo.

It serves one or more certificate chains from one TLS context (RSA and ECDSA side by side, as
Postfix does), can withhold STARTTLS, and can swap its chains at run time, like a reload. With
``sni_dir`` it serves many hosts by SNI (the fleet benchmark): ``<sni_dir>/<host>/fullchain.pem``
and ``privkey.pem``, read at the first handshake for that name after a (re)load, as a server that
reads its files only when told to.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SmtpServer:
    chains: Sequence[tuple[Path, Path]]  # (fullchain.pem, key.pem) pairs
    offer_starttls: bool = True
    hostname: str = "mx1.example.test"
    address: str = "127.0.0.1"
    port: int = 0
    handshakes: int = 0
    _context: ssl.SSLContext | None = None
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    sni_dir: Path | None = None
    _sni: dict[str, ssl.SSLContext] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.load(self.chains)

    @property
    def endpoint(self) -> str:
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def load(self, chains: Sequence[tuple[Path, Path]]) -> None:
        """(Re)load the chains, as a reload of a real server would."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for chain, key in chains:
            context.load_cert_chain(str(chain), str(key))
        if self.sni_dir is not None:
            context.sni_callback = self._by_name
        with self._lock:
            self._context = context
            self.chains = chains
            self._sni = {}

    def _by_name(self, conn: ssl.SSLObject, name: str | None, _context: object) -> int | None:
        """The context of the host the client named (files read once per load)."""
        if name is None or self.sni_dir is None or "/" in name or name.startswith("."):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        with self._lock:
            context = self._sni.get(name)
        if context is None:
            folder = self.sni_dir / name
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(str(folder / "fullchain.pem"), str(folder / "privkey.pem"))
            except (OSError, ssl.SSLError):
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            with self._lock:
                self._sni[name] = context
        conn.context = context
        return None

    def start(self) -> SmtpServer:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((self.address, self.port))
        except OSError:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        closers: list[object] = [conn]
        try:
            self._converse(conn, closers)
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            for item in reversed(closers):
                with contextlib.suppress(OSError):
                    item.close()  # type: ignore[attr-defined]

    def _converse(self, conn: socket.socket, closers: list[object]) -> None:
        reader = conn.makefile("rb")
        closers.append(reader)
        conn.sendall(f"220 {self.hostname} ESMTP test\r\n".encode())
        while True:
            line = reader.readline(1024).decode(errors="replace").strip()
            if not line:
                return
            verb = line.split()[0].upper()
            if verb in ("EHLO", "HELO"):
                caps = [self.hostname, "PIPELINING", "8BITMIME"]
                if self.offer_starttls:
                    caps.append("STARTTLS")
                text = "".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n"
                conn.sendall(text.encode())
            elif verb == "STARTTLS" and self.offer_starttls:
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                with self._lock:
                    context = self._context
                assert context is not None
                tls = context.wrap_socket(conn, server_side=True)
                closers.append(tls)
                self.handshakes += 1
                tls_reader = tls.makefile("rb")
                closers.append(tls_reader)
                while True:
                    command = tls_reader.readline(1024).decode(errors="replace").strip()
                    if not command or command.upper().startswith("QUIT"):
                        tls.sendall(b"221 2.0.0 bye\r\n")
                        return
                    tls.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 not implemented\r\n")


def main() -> None:
    """Run as a process: serve the chain/key pairs given, reload them from disk on SIGHUP (the
    rollover's reload command: ``kill -HUP <pid>``), stop on SIGTERM."""
    import argparse
    import signal
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", nargs=2, action="append", metavar=("CHAIN", "KEY"), default=[])
    parser.add_argument("--sni-dir", help="serve <dir>/<sni name>/{fullchain,privkey}.pem")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hostname", default="mx1.example.test")
    parser.add_argument("--address", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument(
        "--no-starttls", action="store_true", help="answer EHLO without offering STARTTLS"
    )
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    if not ipaddress.ip_address(args.address).is_loopback:
        parser.error("--address must be a loopback address")
    if not args.pair and not args.sni_dir:
        parser.error("give --pair or --sni-dir")
    pairs = [(Path(c), Path(k)) for c, k in args.pair]
    server = SmtpServer(
        pairs,
        sni_dir=Path(args.sni_dir) if args.sni_dir else None,
        offer_starttls=not args.no_starttls,
        hostname=args.hostname,
        address=args.address,
        port=args.port,
    ).start()

    def reload(_signum: int, _frame: object) -> None:
        try:
            server.load(pairs)
        except (OSError, ssl.SSLError) as exc:
            print(f"reload failed: {exc}", flush=True)

    stopping: list[int] = []
    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: stopping.append(signum))
    Path(args.ready_file).write_text(f"{server.port}\n")
    try:
        while not stopping:
            # Not signal.pause(): the kernel may deliver SIGHUP to a session thread, which does
            # not interrupt the main thread's pause, and the reload would wait for the next
            # signal. Python runs the handler in the main thread when it next wakes.
            time.sleep(0.05)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
