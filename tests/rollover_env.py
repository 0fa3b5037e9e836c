"""A complete service for rollover tests and the demo: certificates, a STARTTLS server process
that reads the deployed files and reloads on SIGHUP, a configuration, and a DANE "sender" that
keeps checking the server against the TLSA RRset its own caching resolver hands out."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import yaml
from cryptography import x509

from rollover.core.association import Association, associations_from_rdata
from rollover.core.matching import match_chain
from rollover.edges.probe import TlsProbe
from tests.certs import key_pem, make_cert, make_key, make_pki, pem
from tests.lab import TSIG_NAME, Lab

if TYPE_CHECKING:
    from tests.dane_sender import StrictSender

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Sender:
    """Every ``interval`` seconds: the TLSA RRset through a TTL-honouring validating resolver,
    then a STARTTLS handshake, then DANE matching, the way a sending MTA does it."""

    resolver: str
    owner: str
    host: str
    endpoint: str
    interval: float = 0.3
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _records(self) -> frozenset[Association] | None:
        address, port = self.resolver.rsplit(":", 1)
        query = dns.message.make_query(self.owner, "TLSA", want_dnssec=True)
        response = dns.query.udp(query, address, port=int(port), timeout=2)
        if not response.flags & dns.flags.AD:
            return None
        return associations_from_rdata(
            r for rrset in response.answer if rrset.rdtype == dns.rdatatype.TLSA for r in rrset
        )

    def _loop(self) -> None:
        address, port = self.endpoint.rsplit(":", 1)
        probe = TlsProbe(timeout=3)
        while not self._stop.is_set():
            try:
                records = self._records()
            except Exception as exc:  # a sender retries whatever DNS does
                records = None
                del exc
            if records:
                result = probe.probe(address, int(port), self.host, "smtp", ("default",))
                if result.error is None and result.chains:
                    chain = [
                        x509.load_der_x509_certificate(d) for d in result.chains[0].certificates
                    ]
                    match = match_chain(
                        records, chain, port=25, reference_names=[self.host], now=_now()
                    )
                    self.checks += 1
                    if not match.ok:
                        self.failures.append(
                            f"{time.strftime('%H:%M:%S')} "
                            f"{chain[0].subject.rfc4514_string()}: "
                            f"{'; '.join(match.problems)}"
                        )
            self._stop.wait(self.interval)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@dataclass
class ServiceEnv:
    lab: Lab
    directory: Path
    ttl: int = 2
    records: tuple[str, ...] = ("3 1 1",)
    name: str = "mx1"
    host: str = ""
    server: subprocess.Popen[bytes] | None = None
    port: int = 0
    config: Path = field(default_factory=Path)
    transcript: list[str] = field(default_factory=list)  # every command's output, in order

    def __post_init__(self) -> None:
        self.host = self.host or f"mx-{secrets.token_hex(4)}.example.test"
        tag = secrets.token_hex(3)
        self.pki = make_pki("p256", tag=tag, host=self.host)
        self.next_key = make_key("p256", "next" + tag)
        self.next_leaf = make_cert(
            self.host,
            self.next_key,
            (self.pki.intermediate, self.pki.intermediate_key),
            dns_names=(self.host,),
        )
        for sub in ("deploy", "staging", "state"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.deploy_chain = self.directory / "deploy" / "fullchain.pem"
        self.deploy_key = self.directory / "deploy" / "privkey.pem"
        self.deploy_chain.write_bytes(pem(self.pki.leaf, self.pki.intermediate))
        self.deploy_key.write_bytes(key_pem(self.pki.leaf_key))
        self.deploy_key.chmod(0o600)
        self.staged_chain = self.directory / "staging" / "fullchain.pem"
        self.staged_key = self.directory / "staging" / "privkey.pem"
        self.staged_chain.write_bytes(pem(self.next_leaf, self.pki.intermediate))
        self.staged_key.write_bytes(key_pem(self.next_key))
        self.staged_key.chmod(0o600)

    @property
    def owner(self) -> str:
        return f"_25._tcp.{self.host}."

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_server(self) -> None:
        ready = self.directory / "server.port"
        ready.unlink(missing_ok=True)
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.smtpserver",
                "--pair",
                str(self.deploy_chain),
                str(self.deploy_key),
                "--hostname",
                self.host,
                "--ready-file",
                str(ready),
            ],
            cwd=REPO,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not ready.exists() or not ready.read_text().strip():
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError("the test SMTP server did not start")
            time.sleep(0.05)
        self.port = int(ready.read_text())

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.kill(self.server.pid, signal.SIGTERM)
            self.server.wait(10)

    def write_config(self, **service_extra: Any) -> Path:
        assert self.server is not None
        service: dict[str, Any] = {
            "host": self.host,
            "provider": "lab",
            "records": list(self.records),
            "ttl": self.ttl,
            "authoritative": [self.lab.primary, self.lab.secondary],
            "deploy": {
                "chain": str(self.deploy_chain),
                "key": str(self.deploy_key),
                "reload": ["kill", "-HUP", str(self.server.pid)],
                "reload_timeout": 10,
            },
            "probe": {"connect": [self.endpoint], "starttls": "smtp", "timeout": 5},
        }
        service.update(service_extra)
        doc = {
            "providers": {
                "lab": {
                    "type": "rfc2136",
                    "server": "127.0.0.1",
                    "port": self.lab.port,
                    "timeout": 2,
                    "retries": 2,
                    "tsig": {"name": TSIG_NAME, "secret_file": str(self.lab.secret_file)},
                }
            },
            "resolvers": [self.lab.resolver],
            "state_dir": str(self.directory / "state"),
            "safety_factor": 2,
            "services": {self.name: service},
        }
        self.config = self.directory / "rollover.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        return self.config

    def rollover(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        crash_at: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The CLI in a fresh process; ``crash_at`` runs it through the crash campaign's entry
        point (tests/crashing_cli.py), which dies at that checkpoint."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
        full_env.update(env or {})
        entry = ["rollover"] if crash_at is None else ["tests.crashing_cli", crash_at]
        result = subprocess.run(
            [sys.executable, "-m", *entry, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
            cwd=REPO,
        )
        self.transcript.append(result.stdout + result.stderr)
        return result

    def start_rollover(
        self, *extra: str, env: dict[str, str] | None = None, crash_at: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``rollover start`` to the staged chain and key."""
        return self.rollover(
            "start",
            self.name,
            "--cert",
            str(self.staged_chain),
            "--key",
            str(self.staged_key),
            *extra,
            env=env,
            crash_at=crash_at,
        )

    def leaks(self, *secrets: str) -> list[str]:
        """Where any of ``secrets`` appears: a command's output, or a file of the state."""
        found = [
            f"output of command {i}"
            for i, text in enumerate(self.transcript)
            for secret in secrets
            if secret in text
        ]
        for path in (self.directory / "state").rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [str(path) for secret in secrets if secret.encode() in data]
        return found

    def setup(self) -> None:
        """Server up, current key's records published and visible to the resolvers."""
        self.start_server()
        self.write_config()
        result = self.rollover("publish", self.name, "--cert", str(self.deploy_chain))
        if result.returncode != 0:
            raise RuntimeError(f"initial publish failed: {result.stderr}")

    def sender(self) -> StrictSender:
        """The strict sender (tests/dane_sender.py): OpenSSL's DANE semantics, several caches
        over both authoritative servers and a validating resolver, failures cross-checked."""
        from tests.dane_sender import StrictSender

        return StrictSender.for_env(self)

    def served_leaf(self) -> x509.Certificate:
        address, port = self.endpoint.rsplit(":", 1)
        result = TlsProbe(timeout=5).probe(address, int(port), self.host, "smtp", ("default",))
        assert result.error is None, result.error
        return x509.load_der_x509_certificate(result.chains[0].certificates[0])
