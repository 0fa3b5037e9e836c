"""The Knot DNS lab: a real knotd primary that signs ``example.test.`` itself (``dnssec-signing:
on``) and accepts RFC 2136 updates signed with the TSIG key ``lab-key``, a knotd secondary fed by
NOTIFY/IXFR, and two validating unbound resolvers whose trust anchor is the Knot zone's own key.
Everything on loopback, in a temporary directory, started here and stopped by PID.

It offers what :class:`tests.rollover_env.ServiceEnv` and :class:`tests.dane_sender.StrictSender`
use of :class:`tests.lab.Lab` (``primary``, ``secondary``, ``with_secondary``, ``port``,
``resolver``, ``sender_resolver``, ``keyring``, ``secret_file``, ``tsig_secret``,
``unbound_control``, ``flush_resolver``, ``query``, ``serial``, ``update``,
``wait_secondary_serial``), so the rollover tests run unchanged against Knot.

Zones on the primary:

=================  ================================================================================
``example.test.``  signed by Knot; TLSA updates (``update-type: TLSA``) and transfers allowed to
                   ``lab-key`` (and to one key per other TSIG algorithm Knot knows,
                   :data:`ALGORITHM_KEYS`)
``readonly.test.`` signed by Knot; ``lab-key`` may transfer (and so query with TSIG) but not update
=================  ================================================================================

Configuration syntax from knot.conf(5) of Knot DNS 3.2 (the Debian package's manual): sections
``server``, ``control``, ``log``, ``database``, ``key``, ``remote``, ``acl``, ``policy``, ``zone``.

By hand::

    .venv/bin/python -m tests.knot      # starts, prints the addresses, stops on Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
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
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from tests.lab import PRIMARY, TSIG_NAME, Daemon, LabError, _free_port

ZONE = "example.test."
READONLY_ZONE = "readonly.test."
ZONES = (ZONE, READONLY_ZONE)
# One key per other TSIG algorithm of knot.conf(5) "KEY SECTION", all allowed to update ZONE.
ALGORITHM_KEYS = {
    "lab-key-md5": "hmac-md5",
    "lab-key-sha1": "hmac-sha1",
    "lab-key-sha224": "hmac-sha224",
    "lab-key-sha384": "hmac-sha384",
    "lab-key-sha512": "hmac-sha512",
}


def knot_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LabError(f"{name} not found: install knot, knot-dnsutils and unbound")


@dataclass
class KnotLab:
    """A running Knot lab. Create with :meth:`start_new` (or :func:`running_knot`); always
    :meth:`stop`."""

    ttl: int = 5
    soa_minimum: int = 5
    cache_max_ttl: int = 30
    with_secondary: bool = True
    with_resolvers: bool = True
    serial_policy: str = "increment"
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rollover-knot-")))
    port: int = 0
    secondary_port: int = 0
    resolver_port: int = 0
    sender_resolver_port: int = 0
    tsig_secret: str = ""
    algorithm_secrets: dict[str, str] = field(default_factory=dict)
    nonce: str = ""
    daemons: dict[str, Daemon] = field(default_factory=dict)
    ds: dict[str, str] = field(default_factory=dict)
    startup_seconds: float = 0.0
    _ports: set[int] = field(default_factory=set)
    _unbound_control_port: int = 0
    _sender_control_port: int = 0

    # -- addresses, as tests/lab.py names them ----------------------------------------------
    @property
    def primary(self) -> str:
        return f"{PRIMARY}:{self.port}"

    @property
    def secondary(self) -> str:
        return f"{PRIMARY}:{self.secondary_port}"

    @property
    def resolver(self) -> str:
        return f"{PRIMARY}:{self.resolver_port}"

    @property
    def sender_resolver(self) -> str:
        """The second validating unbound, a sending MTA's own TTL-honouring cache."""
        return f"{PRIMARY}:{self.sender_resolver_port}"

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return dns.tsigkeyring.from_text({TSIG_NAME: ("hmac-sha256", self.tsig_secret)})

    @property
    def secret_file(self) -> Path:
        return self.directory / "lab-key.secret"

    def conf(self, role: str = "primary") -> Path:
        return self.directory / role / "knot.conf"

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def start_new(cls, **kwargs: object) -> KnotLab:
        lab = cls(**kwargs)  # type: ignore[arg-type]
        try:
            lab.start()
        except BaseException:
            lab.stop()
            raise
        return lab

    def start(self) -> None:
        started = time.monotonic()
        self.nonce = secrets.token_hex(8)
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.algorithm_secrets = {
            name: base64.b64encode(secrets.token_bytes(32)).decode() for name in ALGORITHM_KEYS
        }
        self.secret_file.write_text(self.tsig_secret + "\n")
        self.secret_file.chmod(0o600)
        for attribute in ("port", "secondary_port", "resolver_port", "sender_resolver_port"):
            setattr(self, attribute, _free_port(PRIMARY, avoid=self._ports))
        self._unbound_control_port = _free_port(PRIMARY, avoid=self._ports)
        self._sender_control_port = _free_port(PRIMARY, avoid=self._ports)
        self._write_knot("primary")
        self._start("primary", [knot_binary("knotd"), "-c", str(self.conf("primary"))])
        self._wait(lambda: self._signed_nonce(self.primary), "primary", 20)
        if self.with_secondary:
            self._write_knot("secondary")
            self._start("secondary", [knot_binary("knotd"), "-c", str(self.conf("secondary"))])
            self._wait(lambda: self._signed_nonce(self.secondary), "secondary", 20)
        # The trust anchor is the key Knot generated at its first signing (its KASP database).
        self.ds[ZONE] = self.trust_anchor(ZONE)
        if not self.with_resolvers:
            self.startup_seconds = time.monotonic() - started
            return
        for name, port, control, cache_max in (
            ("unbound", self.resolver_port, self._unbound_control_port, self.cache_max_ttl),
            ("sender", self.sender_resolver_port, self._sender_control_port, 86400),
        ):
            (self.directory / f"{name}.conf").write_text(
                self.unbound_config(name, port, control, cache_max)
            )
            self._start(
                name, [knot_binary("unbound"), "-d", "-c", str(self.directory / f"{name}.conf")]
            )
        self._wait(lambda: self._validated(self.resolver), "unbound", 15)
        self._wait(lambda: self._validated(self.sender_resolver), "sender", 15)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for name in ("sender", "unbound", "secondary", "primary"):
            daemon = self.daemons.get(name)
            if daemon is not None:
                daemon.stop()
        if os.environ.get("ROLLOVER_LAB_KEEP") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)

    def _start(self, name: str, argv: list[str]) -> None:
        daemon = Daemon(name, argv, self.directory / f"{name}.pid", self.directory / f"{name}.out")
        self.daemons[name] = daemon
        daemon.start()

    def _wait(self, check: Callable[[], bool], name: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        daemon = self.daemons[name]
        while time.monotonic() < deadline:
            if not daemon.alive():
                raise LabError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            try:
                if check():
                    return
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.05)
        raise LabError(f"{name} not ready after {seconds} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        logs = [self.directory / name / "knot.log", self.directory / f"{name}.log"]
        text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
        return "\n".join(text.splitlines()[-lines:]) + "\n" + self.daemons[name].log_tail()

    def knot_log(self, role: str = "primary") -> str:
        return (self.directory / role / "knot.log").read_text(errors="replace")

    # -- readiness, by the per-lab nonce ----------------------------------------------------
    def _signed_nonce(self, server: str) -> bool:
        response = self.query(server, f"_lab-nonce.{ZONE}", "TXT", timeout=0.25)
        texts = [
            b"".join(r.strings).decode()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for r in rrset
        ]
        signed = any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer)
        return self.nonce in texts and signed

    def _validated(self, resolver: str) -> bool:
        response = self.query(resolver, f"_lab-nonce.{ZONE}", "TXT", rd=True, timeout=0.25)
        return bool(response.flags & dns.flags.AD) and self.nonce in response.to_text()

    # -- configuration (knot.conf(5)) --------------------------------------------------------
    def _zone_text(self, zone: str) -> str:
        return (
            f"$ORIGIN {zone}\n$TTL {self.ttl}\n"
            f"@ SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 {self.soa_minimum}\n"
            f"@ NS ns1.{ZONE}\n"
            f"ns1 A {PRIMARY}\nmx1 A {PRIMARY}\nmx2 A {PRIMARY}\n"
            f'_lab-nonce TXT "{self.nonce}"\n'
        )

    def _write_knot(self, role: str) -> None:
        base = self.directory / role
        for sub in ("storage", "run", "zones"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        port = self.port if role == "primary" else self.secondary_port
        keys = {TSIG_NAME: ("hmac-sha256", self.tsig_secret)} | {
            name: (algorithm, self.algorithm_secrets[name])
            for name, algorithm in ALGORITHM_KEYS.items()
        }
        lines = [
            "server:",
            f'    rundir: "{base}/run"',
            f'    pidfile: "{base}/run/knot.pid"',
            f"    listen: {PRIMARY}@{port}",
            "    udp-workers: 1",
            "    tcp-workers: 2",
            "    background-workers: 1",
            '    identity: ""',
            '    version: ""',
            "control:",
            f'    listen: "{base}/run/knot.sock"',
            "log:",
            f'  - target: "{base}/knot.log"',
            "    any: info",
            "database:",
            f'    storage: "{base}/storage"',
            # LMDB map sizes: the defaults (20 GiB journal) are address space only, but small is
            # kinder to a shared CI machine.
            "    journal-db-max-size: 64M",
            "    kasp-db-max-size: 16M",
            "    timer-db-max-size: 8M",
            "    catalog-db-max-size: 8M",
            "key:",
        ]
        for name, (algorithm, secret) in keys.items():
            lines += [f"  - id: {name}", f"    algorithm: {algorithm}", f"    secret: {secret}"]
        other = "secondary" if role == "primary" else "primary"
        other_port = self.secondary_port if role == "primary" else self.port
        lines += [
            "remote:",
            f"  - id: {other}",
            f"    address: {PRIMARY}@{other_port}",
            f"    key: {TSIG_NAME}",
            "acl:",
        ]
        if role == "primary":
            every_key = ", ".join(keys)
            lines += [
                # "update" and "transfer" (knot.conf(5) ACL SECTION); a rule naming the key also
                # lets it sign ordinary queries, which the adapter always signs.
                "  - id: lab-update",
                f"    address: {PRIMARY}",
                f"    key: [{every_key}]",
                "    action: [update, transfer]",
                # Least privilege: these keys may change TLSA records and nothing else.
                "    update-type: TLSA",
                "  - id: lab-transfer-only",
                f"    address: {PRIMARY}",
                f"    key: {TSIG_NAME}",
                "    action: transfer",
                "policy:",
                "  - id: lab",
                "    algorithm: ecdsap256sha256",
                "    single-type-signing: on",
                "    dnskey-ttl: 5",
                "    zone-max-ttl: 60",
                "    propagation-delay: 1",
                "    ksk-lifetime: 0",
                "    zsk-lifetime: 0",
                "    cds-cdnskey-publish: none",
                "zone:",
            ]
            for zone in ZONES:
                (base / "zones" / f"{zone}zone").write_text(self._zone_text(zone))
                lines += [
                    f"  - domain: {zone}",
                    f'    storage: "{base}/zones"',
                    f"    file: {zone}zone",
                    "    acl: " + ("lab-update" if zone == ZONE else "lab-transfer-only"),
                    "    dnssec-signing: on",
                    "    dnssec-policy: lab",
                    f"    serial-policy: {self.serial_policy}",
                    # The zone lives in the journal; the zone file stays as written here.
                    "    zonefile-sync: -1",
                    "    zonefile-load: difference-no-serial",
                    "    journal-content: all",
                ]
                if zone == ZONE and self.with_secondary:
                    lines.append("    notify: secondary")
        else:
            lines += [
                "  - id: from-primary",
                f"    address: {PRIMARY}",
                f"    key: {TSIG_NAME}",
                "    action: notify",
                "zone:",
                f"  - domain: {ZONE}",
                f'    storage: "{base}/zones"',
                "    master: primary",
                "    acl: from-primary",
                "    zonefile-sync: -1",
                "    journal-content: all",
            ]
        conf = self.conf(role)
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)

    def unbound_config(self, name: str, port: int, control_port: int, cache_max: int) -> str:
        """A validating unbound whose only trust anchor is the Knot zone's DS, with a stub zone
        for it at the Knot primary (and the root there too, which refuses, so nothing leaves
        loopback). As tests/lab.py's resolvers: no prefetch, no stale answers."""
        d = self.directory
        lines = [
            "server:",
            f"  interface: {PRIMARY}@{port}",
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
            f'  trust-anchor: "{ZONE} DS {self.ds[ZONE]}"',
            "remote-control:",
            "  control-enable: yes",
            "  control-use-cert: no",
            f"  control-interface: {PRIMARY}",
            f"  control-port: {control_port}",
        ]
        for zone in (".", ZONE):
            lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {PRIMARY}@{self.port}"]
        return "\n".join(lines) + "\n"

    # -- DNSSEC: what a parent (or a resolver's trust anchor) needs --------------------------
    def trust_anchor(self, zone: str) -> str:
        """The SHA-256 DS of the zone's KSK (here a CSK) from Knot's KASP database through
        ``keymgr ZONE ds`` (keymgr(8)), checked against the DNSKEY the primary serves. Returns
        "<tag> <alg> 2 <digest>"."""
        out = self.keymgr(zone, "ds")
        served = self.dnskeys(zone)
        for line in out.splitlines():
            # "example.test. DS 21333 13 2 c006b4..." (keymgr prints no class)
            fields = line.split()
            at = fields.index("DS") if "DS" in fields else -1
            if at >= 0 and fields[at + 3 : at + 4] == ["2"]:
                text = " ".join(fields[at + 1 : at + 5]).lower()
                derived = {
                    dns.dnssec.make_ds(zone, key, "SHA256").to_text().lower()
                    for key in served
                    if key.flags & 0x0001  # SEP: a KSK or CSK (RFC 4034 section 2.1.1)
                }
                if text not in derived:
                    raise LabError(f"keymgr's DS {text} is not of a served DNSKEY: {derived}")
                return text
        raise LabError(f"keymgr {zone} ds printed no SHA-256 DS: {out!r}")

    def dnskeys(self, zone: str, server: str | None = None) -> list[DNSKEY]:
        response = self.query(server or self.primary, zone, "DNSKEY")
        return [
            r for rrset in response.answer if rrset.rdtype == dns.rdatatype.DNSKEY for r in rrset
        ]

    # -- the server's own tools ----------------------------------------------------------------
    def knotc(self, *args: str, role: str = "primary") -> str:
        """knotc(8) over the control socket of this lab's server (never the system's)."""
        return self._tool("knotc", "-c", str(self.conf(role)), *args)

    def keymgr(self, *args: str, role: str = "primary") -> str:
        return self._tool("keymgr", "-c", str(self.conf(role)), *args)

    def _tool(self, name: str, *args: str) -> str:
        out = subprocess.run(
            [knot_binary(name), *args], capture_output=True, text=True, timeout=20, check=False
        )
        if out.returncode != 0:
            raise LabError(f"{name} {' '.join(args[2:])}: {(out.stderr or out.stdout).strip()}")
        return out.stdout

    def knotc_edit(
        self,
        zone: str,
        *,
        add: tuple[tuple[str, int, str, str], ...] = (),
        delete: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Another writer: an operator's zone transaction through the control socket
        (``zone-begin``, ``zone-set``/``zone-unset``, ``zone-commit``), not RFC 2136."""
        self.knotc("zone-begin", zone)
        try:
            for name, rdtype in delete:
                self.knotc("zone-unset", zone, name, rdtype)
            for name, ttl, rdtype, text in add:
                self.knotc("zone-set", zone, name, str(ttl), rdtype, *text.split())
        except LabError:
            self.knotc("zone-abort", zone)
            raise
        self.knotc("zone-commit", zone)

    def unbound_control(self, *args: str, resolver: str = "unbound") -> str:
        """unbound-control for the tool's resolver ("unbound") or the sender's ("sender")."""
        out = subprocess.run(
            [knot_binary("unbound-control"), "-c", str(self.directory / f"{resolver}.conf"), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if out.returncode != 0:
            raise LabError(f"unbound-control {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def flush_resolver(self) -> None:
        self.unbound_control("flush_zone", "test.")
        self.unbound_control("flush_bogus")
        self.unbound_control("flush_negative")
        self.unbound_control("flush_infra", "all")

    # -- DNS helpers for tests ----------------------------------------------------------------
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

    def serial(self, server: str, zone: str) -> int:
        response = self.query(server, zone, "SOA")
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        raise LabError(f"no SOA for {zone} at {server}")

    def update(
        self,
        zone: str,
        *,
        add: tuple[tuple[str, int, str, str], ...] = (),
        delete: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Another writer's RFC 2136 update (TSIG-signed with ``lab-key``)."""
        message = dns.update.UpdateMessage(
            zone,
            keyring=self.keyring,
            keyname=dns.name.from_text(TSIG_NAME),
            keyalgorithm="hmac-sha256",
        )
        for name, rdtype in delete:
            message.delete(name, rdtype)
        for name, ttl, rdtype, text in add:
            message.add(name, ttl, rdtype, text)
        response = dns.query.tcp(message, PRIMARY, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise LabError(f"update failed: {dns.rcode.to_text(response.rcode())}")

    def wait_secondary_serial(self, serial: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.serial(self.secondary, ZONE) >= serial:
                    return
            except (OSError, dns.exception.DNSException, LabError):
                pass
            time.sleep(0.05)
        raise LabError(f"secondary did not reach serial {serial}")


@contextlib.contextmanager
def running_knot(**kwargs: object) -> Iterator[KnotLab]:
    """A started :class:`KnotLab`, stopped (by PID) on the way out."""
    lab = KnotLab.start_new(**kwargs)
    try:
        yield lab
    finally:
        lab.stop()


def main() -> None:
    with running_knot() as lab:
        print(f"Knot lab up in {lab.startup_seconds:.2f} s, directory {lab.directory}")
        print(f"primary    {lab.primary}  (zones: {', '.join(ZONES)}; knotc -c {lab.conf()})")
        print(f"secondary  {lab.secondary}  ({ZONE})")
        print(
            f"resolvers  {lab.resolver}, {lab.sender_resolver}  (trust anchor {ZONE} DS {lab.ds[ZONE]})"
        )
        print(f"TSIG       {TSIG_NAME} hmac-sha256, secret in {lab.secret_file}")
        print("Ctrl-C stops it.", flush=True)
        stopping: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
        signal.signal(signal.SIGINT, lambda signum, _f: stopping.append(signum))
        while not stopping:
            signal.pause()


if __name__ == "__main__":
    main()
