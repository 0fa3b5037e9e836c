"""An HTTP proxy on loopback in front of moto's server that injects Route 53's own faults:
Throttling and PriorRequestNotComplete (HTTP 400 with Route 53's error document), a connection
dropped before the request reaches the service, and one dropped after the service applied it
(the reply is lost). Every exchange is logged, so a test can count what reached the service."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR = (
    '<?xml version="1.0"?>\n'
    '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    "<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>{request}</RequestId></ErrorResponse>"
)
MESSAGES = {
    "Throttling": "Rate exceeded",
    "PriorRequestNotComplete": (
        "The request was rejected because Route 53 was still processing a prior request."
    ),
}
CHANGE = ("POST", r"/rrset/?$")  # ChangeResourceRecordSets
LIST = ("GET", r"/rrset(\?|$)")  # ListResourceRecordSets
GET_CHANGE = ("GET", r"/change/")


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    fault: str
    remaining: int


@dataclass(frozen=True)
class Exchange:
    at: float  # time.time() when the service's answer (or the fault) was known
    method: str
    path: str
    fault: str | None
    status: int | None  # None: the service never saw it
    body: bytes


class AwsFaults:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.log: list[Exchange] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def inject(self, target: tuple[str, str], fault: str, times: int = 1) -> None:
        with self._lock:
            self._faults.append(_Fault(target[0], re.compile(target[1]), fault, times))

    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def applied_changes(self) -> list[Exchange]:
        """ChangeResourceRecordSets calls the service accepted (reply delivered or lost)."""
        return [
            e
            for e in self.log
            if e.method == "POST" and re.search(CHANGE[1], e.path) and e.status == 200
        ]

    def _take(self, method: str, path: str) -> str | None:
        with self._lock:
            for f in self._faults:
                if f.method == method and f.pattern.search(path) and f.remaining > 0:
                    f.remaining -= 1
                    return f.fault
        return None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AwsFaults:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                del format, args

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take(self.command, self.path)
                if fault in MESSAGES:
                    assert fault is not None
                    payload = ERROR.format(
                        code=fault, message=MESSAGES[fault], request=time.time_ns()
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy._record(Exchange(time.time(), self.command, self.path, fault, None, body))
                    return
                if fault == "drop-before":
                    proxy._record(Exchange(time.time(), self.command, self.path, fault, None, body))
                    self._drop()
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "keep-alive")
                }
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                proxy._record(
                    Exchange(time.time(), self.command, self.path, fault, response.status, body)
                )
                if fault == "drop-after":
                    self._drop()
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
