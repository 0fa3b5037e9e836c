"""A real PowerDNS Authoritative server on loopback, for the PowerDNS adapter's tests and the RFC
2136 interoperability proof: ``pdns_server`` with the gsqlite3 backend in a temporary directory,
its HTTP API on (with an API key read from a file), ``dnsupdate=yes`` with a TSIG key allowed
through ``TSIG-ALLOW-DNSUPDATE`` metadata, and live-signed zones (``pdnsutil secure-zone``).
Optionally two validating unbounds (the tool's resolver, and a sending MTA's) with the signed
zone's DS as their trust anchor and the server as their stub. Stopped by PID.

Zones (all at 127.0.0.1:<port>):

=====================  ========================================================================
``pdns.test.``         signed (live), SOA-EDIT-API DEFAULT, RFC 2136 with TSIG key ``pdns-key``;
                       the resolvers' trust anchor
``sub.pdns.test.``     unsigned, a zone of its own inside ``pdns.test.`` (longest suffix)
``plain.test.``        unsigned, SOA-EDIT-API DEFAULT
``norectify.test.``    signed, ``API-RECTIFY 0``: PowerDNS does not rectify after an API change
``noserial.test.``     signed, no SOA-EDIT-API: an API change leaves the serial alone
``presigned.test.``    PRESIGNED: PowerDNS serves stored signatures and signs nothing itself
=====================  ========================================================================

By hand::

    .venv/bin/python -m tests.pdns       # starts, prints the addresses, stops on Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from tests.lab import Daemon, LabError, _free_port, _which

ADDRESS = "127.0.0.1"
TSIG_NAME = "pdns-key"
TSIG_ALGORITHM = "hmac-sha256"
SIGNED = "pdns.test."
ZONES: dict[str, dict[str, Any]] = {
    "pdns.test.": {"secure": True, "meta": {"SOA-EDIT-API": "DEFAULT"}, "update": True},
    "sub.pdns.test.": {"secure": False, "meta": {"SOA-EDIT-API": "DEFAULT"}},
    "plain.test.": {"secure": False, "meta": {"SOA-EDIT-API": "DEFAULT"}, "update": True},
    "norectify.test.": {
        "secure": True,
        "meta": {"SOA-EDIT-API": "DEFAULT", "API-RECTIFY": "0"},
    },
    "noserial.test.": {"secure": True, "meta": {}},
    "presigned.test.": {"secure": False, "meta": {"PRESIGNED": "1", "SOA-EDIT-API": "DEFAULT"}},
}
# Above any YYYYMMDDnn of this century: SOA-EDIT-API DEFAULT then steps it by exactly one.
SERIAL = 2100010100
SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


@dataclass
class ApiAnswer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class PdnsLab:
    """A running PowerDNS. Create with :meth:`start_new`; always :meth:`stop`."""

    ttl: int = 5
    with_resolvers: bool = False
    cache_max_ttl: int = 30
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rollover-pdns-")))
    port: int = 0
    api_port: int = 0
    resolver_port: int = 0
    sender_resolver_port: int = 0
    api_key: str = field(default="", repr=False)
    tsig_secret: str = field(default="", repr=False)
    nonce: str = ""
    ds: dict[str, str] = field(default_factory=dict)
    daemons: dict[str, Daemon] = field(default_factory=dict)
    startup_seconds: float = 0.0
    _ports: set[int] = field(default_factory=set)

    # -- addresses and files -----------------------------------------------------------------
    @property
    def primary(self) -> str:
        return f"{ADDRESS}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{ADDRESS}:{self.api_port}"

    @property
    def resolver(self) -> str:
        return f"{ADDRESS}:{self.resolver_port}"

    @property
    def sender_resolver(self) -> str:
        return f"{ADDRESS}:{self.sender_resolver_port}"

    @property
    def api_key_file(self) -> Path:
        return self.directory / "api-key"

    @property
    def secret_file(self) -> Path:
        return self.directory / "pdns-key.secret"

    @property
    def database(self) -> Path:
        return self.directory / "pdns.sqlite3"

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return dns.tsigkeyring.from_text({TSIG_NAME: (TSIG_ALGORITHM, self.tsig_secret)})

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def start_new(cls, **kwargs: Any) -> PdnsLab:
        lab = cls(**kwargs)
        try:
            lab.start()
        except BaseException:
            lab.stop()
            raise
        return lab

    def start(self) -> None:
        started = time.monotonic()
        if not SCHEMA.exists():
            raise LabError(f"{SCHEMA} not found: install pdns-server and pdns-backend-sqlite3")
        self.nonce = secrets.token_hex(8)
        self.api_key = secrets.token_urlsafe(24)
        self.api_key_file.write_text(self.api_key + "\n")
        self.api_key_file.chmod(0o600)
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.secret_file.write_text(self.tsig_secret + "\n")
        self.secret_file.chmod(0o600)
        self.port = _free_port(ADDRESS, avoid=self._ports)
        self.api_port = _free_port(ADDRESS, avoid=self._ports)
        self._write_config()
        self._make_database()
        self._start_pdns()
        if self.with_resolvers:
            self.resolver_port = _free_port(ADDRESS, avoid=self._ports)
            self.sender_resolver_port = _free_port(ADDRESS, avoid=self._ports)
            for name, port, cache_max in (
                ("unbound", self.resolver_port, self.cache_max_ttl),
                ("sender", self.sender_resolver_port, 86400),
            ):
                (self.directory / f"{name}.conf").write_text(
                    self._unbound_config(name, port, cache_max)
                )
                argv = [_which("unbound"), "-d", "-c", str(self.directory / f"{name}.conf")]
                self._daemon(name, argv)
            for name, address in (("unbound", self.resolver), ("sender", self.sender_resolver)):
                self._wait(lambda a=address: self._resolver_ready(a), name, 15)  # type: ignore[misc]
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for name in ("sender", "unbound", "pdns"):
            daemon = self.daemons.get(name)
            if daemon is not None:
                daemon.stop()
        if os.environ.get("ROLLOVER_LAB_KEEP") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)

    def _daemon(self, name: str, argv: list[str]) -> Daemon:
        daemon = Daemon(name, argv, self.directory / f"{name}.pid", self.directory / f"{name}.out")
        self.daemons[name] = daemon
        daemon.start()
        return daemon

    def _start_pdns(self) -> None:
        argv = [_which("pdns_server"), f"--config-dir={self.directory}"]
        self._daemon("pdns", argv)
        self._wait(self._ready, "pdns", 15)

    def restart(self) -> None:
        self.daemons["pdns"].stop()
        self._start_pdns()

    def _wait(self, check: Callable[[], bool], name: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        daemon = self.daemons[name]
        while time.monotonic() < deadline:
            if not daemon.alive():
                raise LabError(f"{name} exited during start-up:\n{daemon.log_tail()}")
            with contextlib.suppress(
                OSError, dns.exception.DNSException, http.client.HTTPException
            ):
                if check():
                    return
            time.sleep(0.05)
        raise LabError(f"{name} not ready after {seconds} s:\n{daemon.log_tail()}")

    def _ready(self) -> bool:
        """DNS answers the nonce, signed, and the API answers with the key."""
        response = self.query(self.primary, f"_lab-nonce.{SIGNED}", "TXT", timeout=0.25)
        texts = [
            b"".join(r.strings).decode()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for r in rrset
        ]
        signed = any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer)
        return self.nonce in texts and signed and self.api("GET", "").status == 200

    def _resolver_ready(self, resolver: str) -> bool:
        response = self.query(resolver, f"_lab-nonce.{SIGNED}", "TXT", rd=True, timeout=0.25)
        return bool(response.flags & dns.flags.AD) and any(
            rrset.rdtype == dns.rdatatype.TXT for rrset in response.answer
        )

    # -- configuration ------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.directory
        lines = [
            "launch=gsqlite3",
            f"gsqlite3-database={self.database}",
            "gsqlite3-dnssec=yes",
            f"local-address={ADDRESS}",
            f"local-port={self.port}",
            "daemon=no",
            "guardian=no",
            "disable-syslog=yes",
            "write-pid=no",
            f"socket-dir={d}",
            "loglevel=4",
            "log-dns-queries=no",
            "webserver=yes",
            f"webserver-address={ADDRESS}",
            f"webserver-port={self.api_port}",
            "webserver-allow-from=127.0.0.0/8",
            "api=yes",
            f"api-key={self.api_key}",
            "dnsupdate=yes",
            "allow-dnsupdate-from=127.0.0.0/8",
            "primary=no",
            "secondary=no",
            "disable-axfr=no",
            "allow-axfr-ips=127.0.0.0/8",
            "receiver-threads=1",
            "distributor-threads=2",
        ]
        conf = d / "pdns.conf"
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)  # it holds the API key

    def _zone_file(self, zone: str) -> str:
        return (
            f"$ORIGIN {zone}\n$TTL {self.ttl}\n"
            f"@ SOA ns1.pdns.test. hostmaster.pdns.test. {SERIAL} 3600 600 86400 {self.ttl}\n"
            f"@ NS ns1.pdns.test.\n"
            f'_lab-nonce TXT "{self.nonce}"\n'
            f"mx A {ADDRESS}\n"
            + (f"ns1 A {ADDRESS}\nsub NS ns1.pdns.test.\n" if zone == SIGNED else "")
        )

    def _make_database(self) -> None:
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            db.executescript(SCHEMA.read_text())
            db.commit()
        for zone, spec in ZONES.items():
            path = self.directory / f"{zone}zone"
            path.write_text(self._zone_file(zone))
            self.pdnsutil("load-zone", zone, str(path))
            if spec["secure"]:
                self.pdnsutil("secure-zone", zone)
            for kind, value in spec["meta"].items():
                self.pdnsutil("set-meta", zone, kind, value)
            if spec.get("update"):
                self.pdnsutil("set-meta", zone, "TSIG-ALLOW-DNSUPDATE", TSIG_NAME)
            if "PRESIGNED" not in spec["meta"]:
                self.pdnsutil("rectify-zone", zone)
        # The TSIG secret goes into the database directly: pdnsutil import-tsig-key would put
        # it in an argument list.
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            db.execute(
                "INSERT INTO tsigkeys (name, algorithm, secret) VALUES (?, ?, ?)",
                (TSIG_NAME, TSIG_ALGORITHM, self.tsig_secret),
            )
            db.commit()
        # The signed zone's DS for its parent, which is nobody here: the trust anchor.
        out = self.pdnsutil("export-zone-ds", SIGNED)
        for line in out.splitlines():
            parts = line.split()
            # "pdns.test. IN DS <tag> 13 2 <digest> ; ( SHA256 digest )"
            if len(parts) >= 7 and parts[2] == "DS" and parts[5] == "2":
                self.ds[SIGNED] = " ".join(parts[3:7])
        if SIGNED not in self.ds:
            raise LabError(f"no SHA-256 DS from pdnsutil export-zone-ds: {out}")

    def pdnsutil(self, *args: str) -> str:
        out = subprocess.run(
            [_which("pdnsutil"), f"--config-dir={self.directory}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            raise LabError(f"pdnsutil {' '.join(args)}: {out.stderr.strip() or out.stdout}")
        return out.stdout

    def _unbound_config(self, name: str, port: int, cache_max: int) -> str:
        d = self.directory
        lines = [
            "server:",
            f"  interface: {ADDRESS}@{port}",
            f"  port: {port}",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{d}"',
            f'  pidfile: "{d}/{name}.own.pid"',
            "  use-syslog: no",
            f'  logfile: "{d}/{name}.log"',
            "  verbosity: 1",
            "  val-log-level: 2",
            "  do-ip6: no",
            "  do-not-query-localhost: no",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "validator iterator"',
            "  qname-minimisation: no",
            "  aggressive-nsec: no",
            "  prefetch: no",
            "  serve-expired: no",
            "  cache-min-ttl: 0",
            f"  cache-max-ttl: {cache_max}",
            f"  cache-max-negative-ttl: {cache_max}",
            "  val-bogus-ttl: 1",
            "  infra-host-ttl: 2",
            "  infra-keep-probing: yes",
            '  local-zone: "test." nodefault',
            f'  trust-anchor: "{SIGNED} DS {self.ds[SIGNED]}"',
            "remote-control:",
            "  control-enable: no",
            "stub-zone:",
            f'  name: "{SIGNED}"',
            f"  stub-addr: {ADDRESS}@{self.port}",
        ]
        return "\n".join(lines) + "\n"

    # -- helpers for tests --------------------------------------------------------------------
    def query(
        self,
        server: str,
        name: str,
        rdtype: str,
        *,
        rd: bool = False,
        dnssec: bool = True,
        timeout: float = 1.0,
    ) -> dns.message.Message:
        address, port = server.rsplit(":", 1)
        q = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
        if not rd:
            q.flags &= ~dns.flags.RD
        return dns.query.udp_with_fallback(q, address, timeout=timeout, port=int(port))[0]

    def served(self, name: str) -> set[str]:
        """The TLSA rdata the server answers at ``name`` over DNS."""
        response = self.query(self.primary, name, "TLSA")
        return {
            str(r)
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TLSA and rrset.name == dns.name.from_text(name)
            for r in rrset
        }

    def serial(self, zone: str) -> int:
        response = self.query(self.primary, zone, "SOA")
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        raise LabError(f"no SOA for {zone}")

    def api(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> ApiAnswer:
        """Another client of the API (``path`` below /api/v1/servers/localhost)."""
        connection = http.client.HTTPConnection(ADDRESS, self.api_port, timeout=10)
        try:
            headers = {
                "X-API-Key": self.api_key if key is None else key,
                "Accept": "application/json",
            }
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, f"/api/v1/servers/localhost{path}", data, headers)
            response = connection.getresponse()
            raw = response.read()
            parsed = json.loads(raw) if raw.strip() else None
            return ApiAnswer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
            )
        finally:
            connection.close()

    def replace(self, zone: str, name: str, ttl: int, rdtype: str, *contents: str) -> ApiAnswer:
        """Another writer's REPLACE through the API."""
        rrset = {
            "name": name,
            "type": rdtype,
            "ttl": ttl,
            "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in contents],
        }
        answer = self.api("PATCH", f"/zones/{zone}", {"rrsets": [rrset]})
        if answer.status != 204:
            raise LabError(f"PATCH failed: {answer.status} {answer.body}")
        return answer

    def update(
        self,
        zone: str,
        *,
        add: tuple[tuple[str, int, str, str], ...] = (),
        delete: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Another writer's RFC 2136 update, TSIG-signed."""
        message = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=TSIG_NAME, keyalgorithm=TSIG_ALGORITHM
        )
        for name, rdtype in delete:
            message.delete(name, rdtype)
        for name, ttl, rdtype, text in add:
            message.add(name, ttl, rdtype, text)
        response = dns.query.tcp(message, ADDRESS, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise LabError(f"update failed: {dns.rcode.to_text(response.rcode())}")

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=10)) as db:
            return list(db.execute(query, args))


@pytest.fixture(scope="module")
def pdns() -> Iterator[PdnsLab]:
    """A PowerDNS of the module's own. Fails (never skips) when it cannot start."""
    try:
        running = PdnsLab.start_new()
    except LabError as exc:
        pytest.fail(f"PowerDNS could not start: {exc}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pdns_resolving() -> Iterator[PdnsLab]:
    """PowerDNS with two validating unbounds over it (the rollover test's)."""
    try:
        running = PdnsLab.start_new(with_resolvers=True)
    except LabError as exc:
        pytest.fail(f"PowerDNS could not start: {exc}")
    yield running
    running.stop()


def main() -> None:
    lab = PdnsLab.start_new(with_resolvers=True)
    print(f"PowerDNS up in {lab.startup_seconds:.2f} s, directory {lab.directory}")
    print(f"DNS        {lab.primary}  (zones: {', '.join(ZONES)})")
    print(f"API        {lab.api_url}  (key in {lab.api_key_file})")
    print(f"TSIG       {TSIG_NAME} {TSIG_ALGORITHM}, secret in {lab.secret_file}")
    print(
        f"resolvers  {lab.resolver}, {lab.sender_resolver} (trust anchor {SIGNED} DS {lab.ds[SIGNED]})"
    )
    print("Ctrl-C stops it.", flush=True)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: stopping.append(signum))
    try:
        while not stopping:
            signal.pause()
    finally:
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
