"""`verify --domain`'s posture (rollover.workflows.posture) against the lab's signed zones and a
local HTTPS server for the MTA-STS policy (test CA, names resolved through the lab)."""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollover.core.posture import CRITICAL, OK, UNKNOWN, WARNING, Posture
from rollover.edges.mtasts import POLICY_PATH, fetch_policy
from rollover.workflows.posture import domain_posture
from tests.certs import key_pem, make_cert, make_key, make_pki, pem
from tests.lab import Lab

pytestmark = pytest.mark.lab

LABELS = [secrets.token_hex(3) for _ in range(12)]
DOMAINS = [f"sts{label}.example.test" for label in LABELS]
PKI = make_pki("p256", tag="mta-sts", host="mta-sts.example.test", pkix=True)
SERVER_KEY = make_key("p256", "mta-sts-server")
SERVER_CERT = make_cert(
    "mta-sts server",
    SERVER_KEY,
    (PKI.intermediate, PKI.intermediate_key),
    dns_names=tuple(f"mta-sts.{d}" for d in DOMAINS),
    pkix=True,
)
TLSA = "3 1 1 " + "5a" * 32


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain"})


class PolicyServer(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1, one reply per Host header; the TLS handshake in the request thread."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.replies: dict[str, Reply] = {}
        self.requests: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client refusing our certificate is a test case, not noise


class Handler(BaseHTTPRequestHandler):
    server: PolicyServer

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        self.server.requests.append((host, self.path))
        reply = self.server.replies.get(host) if self.path == POLICY_PATH else None
        if reply is None:
            reply = Reply(404, b"not found\n")
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicyServer, Path]]:
    directory = tmp_path_factory.mktemp("mta-sts")
    chain, key, ca = directory / "chain.pem", directory / "key.pem", directory / "ca.pem"
    chain.write_bytes(pem(SERVER_CERT, PKI.intermediate))
    key.write_bytes(key_pem(SERVER_KEY))
    ca.write_bytes(pem(PKI.root))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    server = PolicyServer(context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, ca
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def policy(mode: str, *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 604800"]
    return ("\r\n".join(lines) + "\r\n").encode()


def txt(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def publish_domain(
    lab: Lab,
    index: int,
    *,
    dane_hosts: tuple[bool, ...] = (True, True),
    tlsrpt: tuple[str, ...] = ("v=TLSRPTv1; rua=mailto:tlsrpt@example.test",),
    sts: bool = True,
) -> tuple[str, list[str]]:
    domain, label = DOMAINS[index], LABELS[index]
    hosts = [f"mx{n}{label}.example.test" for n in range(1, len(dane_hosts) + 1)]
    add: list[tuple[str, int, str, str]] = []
    for n, (host, has_dane) in enumerate(zip(hosts, dane_hosts, strict=True), 1):
        add.append((f"{domain}.", 5, "MX", f"{n * 10} {host}."))
        add.append((f"{host}.", 5, "A", "127.0.0.1"))
        if has_dane:
            add.append((f"_25._tcp.{host}.", 5, "TLSA", TLSA))
    add += [(f"_smtp._tls.{domain}.", 5, "TXT", txt(t)) for t in tlsrpt]
    if sts:
        add.append((f"_mta-sts.{domain}.", 5, "TXT", txt("v=STSv1; id=20250601T000000")))
        add.append((f"mta-sts.{domain}.", 5, "A", "127.0.0.1"))
    lab.update("example.test.", add=tuple(add))
    return domain, hosts


def posture(
    lab: Lab,
    https: tuple[PolicyServer, Path],
    domain: str,
    hosts: list[str],
    **kw: Any,
) -> Posture:
    server, ca = https
    kw.setdefault("now", dt.datetime.now(dt.UTC))
    return domain_posture(
        domain,
        [f"{h}." for h in hosts],
        [lab.resolver],
        mta_sts_ca_file=str(ca),
        https_port=server.server_address[1],
        timeout=5.0,
        **kw,
    )


def messages(doc: dict[str, Any], part: str) -> str:
    return " | ".join(f["message"] for f in doc[part]["findings"])


def test_good_posture(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(lab, 0)
    https[0].replies[f"mta-sts.{domain}"] = Reply(body=policy("enforce", "*.example.test"))
    result = posture(lab, https, domain, hosts, authoritative=[lab.primary])
    doc = result.json()
    assert result.exit == OK, result.text()
    assert doc["tlsrpt"]["records"][0]["rua"] == ["mailto:tlsrpt@example.test"]
    assert doc["mta_sts"]["record"]["id"] == "20250601T000000"
    assert doc["mta_sts"]["policy"]["mode"] == "enforce"
    assert doc["mta_sts"]["uncovered_mx"] == []
    assert any("senders that do both use DANE" in n for n in doc["mta_sts"]["disagreements"])
    assert [h["dane"] for h in doc["coverage"]["hosts"]] == [True, True]
    signing = doc["signing"]
    # The lab signs for 14 days (tests/lab.py): time is left, more than the default 7 days.
    assert 7 * 86400 < signing["seconds_left"] <= 15 * 86400
    assert {r["type"] for r in signing["rrsets"]} == {"MX", "TLSA"}
    assert all(r["signed"] for r in signing["rrsets"])
    (zone,) = signing["zones"]
    assert zone["zone"] == "example.test."
    assert zone["chain_ok"] is True
    assert any(d["matches_dnskey"] and d["signs_dnskey"] for d in zone["ds"])
    assert (f"mta-sts.{domain}", POLICY_PATH) in https[0].requests


def test_missing_tlsrpt_is_a_warning(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(lab, 1, tlsrpt=(), sts=False)
    result = posture(lab, https, domain, hosts)
    doc = result.json()
    assert doc["tlsrpt"]["exit"] == WARNING
    assert "no TLS-RPT record at _smtp._tls." in messages(doc, "tlsrpt")
    assert doc["mta_sts"]["exit"] == OK
    assert "not published" in messages(doc, "mta_sts")
    assert result.exit == WARNING


def test_two_tlsrpt_records(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(
        lab,
        2,
        tlsrpt=(
            "v=TLSRPTv1; rua=mailto:a@example.test",
            "v=TLSRPTv1; rua=https://reports.example.test/tls",
        ),
        sts=False,
    )
    doc = posture(lab, https, domain, hosts).json()
    assert doc["tlsrpt"]["exit"] == WARNING
    assert "2 v=TLSRPTv1 records" in messages(doc, "tlsrpt")
    assert len(doc["tlsrpt"]["records"][0]["txt"]) == 2


def test_policy_not_covering_an_mx(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(lab, 3)
    https[0].replies[f"mta-sts.{domain}"] = Reply(body=policy("enforce", f"{hosts[0]}"))
    doc = posture(lab, https, domain, hosts).json()
    assert doc["mta_sts"]["exit"] == WARNING
    assert doc["mta_sts"]["uncovered_mx"] == [hosts[1] + "."]
    assert any(
        n.startswith(f"{hosts[1]}.: DANE-protected but outside")
        for n in doc["mta_sts"]["disagreements"]
    )
    assert doc["exit"] == WARNING


def test_redirect_refused(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(lab, 4)
    target = f"https://mta-sts.{DOMAINS[0]}{POLICY_PATH}"
    https[0].replies[f"mta-sts.{domain}"] = Reply(
        301, b"", {"Location": target, "Content-Type": "text/plain"}
    )
    before = len(https[0].requests)
    doc = posture(lab, https, domain, hosts).json()
    assert https[0].requests[before:] == [(f"mta-sts.{domain}", POLICY_PATH)]  # not followed
    assert doc["mta_sts"]["exit"] == WARNING
    assert doc["mta_sts"]["policy"]["fetched"] is False
    assert "HTTP 301 redirect" in doc["mta_sts"]["policy"]["error"]
    assert "RFC 8461 section 3.3" in messages(doc, "mta_sts")


def test_an_mx_without_dane(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    domain, hosts = publish_domain(lab, 5, dane_hosts=(True, False), sts=False)
    doc = posture(lab, https, domain, hosts).json()
    assert doc["coverage"]["exit"] == WARNING
    assert [h["dane"] for h in doc["coverage"]["hosts"]] == [True, False]
    assert doc["coverage"]["hosts"][1]["dnssec"] == "secure"  # a secure denial: no records
    assert f"{hosts[1]}. has no usable secure TLSA RRset (no TLSA records)" in messages(
        doc, "coverage"
    )


def test_signing_thresholds_against_the_lab_clock(
    lab: Lab, https: tuple[PolicyServer, Path]
) -> None:
    """The lab's signatures run 14 days: a 20-day threshold warns; a clock 15 days ahead
    finds them expired (CRITICAL); 13.9 days ahead, under one day left (CRITICAL)."""
    domain, hosts = publish_domain(lab, 6, sts=False)
    now = dt.datetime.now(dt.UTC)
    base = posture(lab, https, domain, hosts, now=now).json()["signing"]
    assert base["exit"] == OK
    assert (
        posture(lab, https, domain, hosts, now=now, warn_days=20).json()["signing"]["exit"]
        == WARNING
    )
    later = posture(lab, https, domain, hosts, now=now + dt.timedelta(days=15)).json()["signing"]
    assert later["exit"] == CRITICAL
    assert "expired" in " ".join(f["message"] for f in later["findings"])
    left = base["seconds_left"]
    close = now + dt.timedelta(seconds=left - 1800)
    near = posture(lab, https, domain, hosts, now=close).json()["signing"]
    assert near["exit"] == CRITICAL
    assert "expire in 0.5 hours" in " ".join(f["message"] for f in near["findings"])


def test_bogus_zone_breaks_the_chain(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    """bogus.test's DS in test. names another key: no DS matches a key signing its DNSKEYs."""
    doc = posture(lab, https, "bogus.test", ["mx.bogus.test"]).json()
    zones = {z["zone"]: z for z in doc["signing"]["zones"]}
    assert zones["bogus.test."]["chain_ok"] is False
    assert any(not d["matches_dnskey"] for d in zones["bogus.test."]["ds"])
    assert "chain of trust is broken" in messages(doc, "signing")
    assert doc["signing"]["exit"] == CRITICAL
    assert doc["coverage"]["hosts"][0]["dnssec"] == "bogus"


def test_unsigned_zone_has_nothing_to_expire(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    doc = posture(lab, https, "plain.test", ["mx.plain.test"]).json()
    assert doc["signing"]["zones"] == []
    assert doc["signing"]["exit"] == OK
    assert doc["coverage"]["hosts"][0]["dnssec"] == "insecure"


# -- the fetch itself ---------------------------------------------------------------------


def fetch(https: tuple[PolicyServer, Path], index: int, reply: Reply | None, **kw: Any) -> Any:
    server, ca = https
    domain = DOMAINS[index]
    if reply is not None:
        server.replies[f"mta-sts.{domain}"] = reply
    kw.setdefault("ca_file", str(ca))
    return fetch_policy(domain, ["127.0.0.1"], port=server.server_address[1], timeout=5, **kw)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (Reply(404, b"no"), "HTTP 404"),
        (Reply(302, b"", {"Location": "/elsewhere"}), "HTTP 302 redirect (/elsewhere) refused"),
        (
            Reply(body=policy("enforce", "a.example.test"), headers={"Content-Type": "text/html"}),
            "media type 'text/html'",
        ),
        (Reply(body=b"x" * (64 * 1024 + 1)), "over the 64 KiB bound"),
        (Reply(body=b"\xff\xfe"), "not UTF-8"),
    ],
)
def test_fetch_refuses(https: tuple[PolicyServer, Path], reply: Reply, says: str) -> None:
    result = fetch(https, 7, reply)
    assert result.text is None
    assert says in result.error
    assert "\n" not in result.error


def test_fetch_accepts_charset_parameter(https: tuple[PolicyServer, Path]) -> None:
    body = policy("testing", "a.example.test")
    result = fetch(
        https, 8, Reply(body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
    )
    assert result.error is None
    assert result.text == body.decode()


def test_fetch_validates_the_certificate(https: tuple[PolicyServer, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pem(make_pki("p256", tag="mta-sts-other", pkix=True).root))
    result = fetch(https, 9, Reply(body=policy("none")), ca_file=str(other))
    assert result.text is None
    assert "certificate not valid for mta-sts." in result.error
    # A name the certificate does not carry, even from the right CA.
    server, ca = https
    wrong = fetch_policy(
        "elsewhere.example.test",
        ["127.0.0.1"],
        port=server.server_address[1],
        ca_file=str(ca),
        timeout=5,
    )
    assert "certificate not valid for mta-sts.elsewhere.example.test" in (wrong.error or "")


def test_fetch_time_bound_and_refused_connection(https: tuple[PolicyServer, Path]) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP connection, never speaks TLS
        result = fetch_policy(DOMAINS[10], ["127.0.0.1"], port=silent.getsockname()[1], timeout=1.0)
    assert result.error is not None
    assert "timed out after 1 s" in result.error
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = fetch_policy(DOMAINS[10], ["127.0.0.1"], port=port, timeout=2.0)
    assert refused.error is not None
    assert "refused" in refused.error.lower()


def test_fetch_through_the_lab_resolver_names(lab: Lab, https: tuple[PolicyServer, Path]) -> None:
    """No policy host address in DNS: a one-line error, a WARNING, never a traceback."""
    domain = DOMAINS[11]
    lab.update(
        "example.test.",
        add=(
            (f"_mta-sts.{domain}.", 5, "TXT", txt("v=STSv1; id=1")),
            (f"mx1{LABELS[11]}.example.test.", 5, "A", "127.0.0.1"),
            (f"{domain}.", 5, "MX", f"10 mx1{LABELS[11]}.example.test."),
        ),
    )
    doc = posture(lab, https, domain, [f"mx1{LABELS[11]}.example.test"]).json()
    assert doc["mta_sts"]["exit"] == WARNING
    assert "no A or AAAA records" in doc["mta_sts"]["policy"]["error"]
    assert doc["mta_sts"]["exit"] != UNKNOWN
