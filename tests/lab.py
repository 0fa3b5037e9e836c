"""The DNS lab: a real BIND 9 (DNSSEC-signed zones, TSIG dynamic updates, a secondary) and a real
validating unbound, on loopback, in a temporary directory, stopped by PID.

Zones (all served by the primary at 127.0.0.1:<port>):

=========================  ===================================================================
``test.``                  signed (inline); the lab's trust anchor in unbound; parent of the rest
``example.test.``          signed, RFC 2136 updates with TSIG key ``lab-key``; also served by a
                           hidden secondary at 127.0.0.1:<secondary_port> (NOTIFY/IXFR)
``insecure.example.test.`` unsigned child of a signed parent, no DS: provably insecure
``inline.test.``           signed with inline-signing
``plain.test.``            unsigned, no DS in ``test.``: insecure
``bogus.test.``            signed, but the DS in ``test.`` names another key: bogus
``island.lab.``            signed, no trust anchor covers it: indeterminate
=========================  ===================================================================

Use it from pytest (the session fixture ``lab`` in conftest) or by hand::

    .venv/bin/python -m tests.lab        # starts, prints the addresses, stops on Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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

PRIMARY = "127.0.0.1"
TSIG_NAME = "lab-key"
SIGNED_ZONES = ("test.", "example.test.", "inline.test.", "bogus.test.", "island.lab.")
UNSIGNED_ZONES = ("plain.test.", "insecure.example.test.")
ALL_ZONES = SIGNED_ZONES + UNSIGNED_ZONES


class LabError(RuntimeError):
    """The lab could not start (missing binaries, ports, a daemon that died)."""


def _which(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LabError(f"{name} not found: install bind9, bind9-utils, bind9-dnsutils and unbound")


def _port_free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _free_port(*addresses: str, avoid: set[int]) -> int:
    for _ in range(200):
        port = 20000 + secrets.randbelow(40000)
        if port not in avoid and all(_port_free(a, port) for a in addresses):
            avoid.add(port)
            return port
    raise LabError("no free port found on loopback")


@dataclass
class Daemon:
    name: str
    argv: list[str]
    pid_file: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid_file.write_text(f"{self.process.pid}\n")

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop by the recorded PID: TERM, then KILL after 5 s."""
        if not self.pid_file.exists():
            return
        pid = self.pid
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait(5)
        self.pid_file.unlink(missing_ok=True)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Lab:
    """A running lab. Create with :meth:`start`; always :meth:`stop`."""

    ttl: int = 5
    soa_minimum: int = 5
    cache_max_ttl: int = 30
    with_secondary: bool = True
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rollover-lab-")))
    port: int = 0
    secondary_port: int = 0
    resolver_port: int = 0
    sender_resolver_port: int = 0
    tsig_secret: str = ""
    nonce: str = ""
    daemons: dict[str, Daemon] = field(default_factory=dict)
    ds: dict[str, str] = field(default_factory=dict)
    _ports: set[int] = field(default_factory=set)
    _rndc_ports: dict[str, int] = field(default_factory=dict)
    _unbound_control_port: int = 0
    _sender_control_port: int = 0
    startup_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    # More signed, updatable children of ``test.`` (the fleet benchmark's zones), and records
    # to put in any zone's file before the primary loads it (zone -> zone-file lines).
    fleet_zones: tuple[str, ...] = ()
    extra_records: dict[str, str] = field(default_factory=dict)

    @property
    def signed_zones(self) -> tuple[str, ...]:
        return SIGNED_ZONES + self.fleet_zones

    @property
    def all_zones(self) -> tuple[str, ...]:
        return ALL_ZONES + self.fleet_zones

    # -- addresses -------------------------------------------------------------------------
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
        """A second validating unbound, never asked by the tool: a sending MTA's own cache,
        honouring TTLs (its cache cap is far above them)."""
        return f"{PRIMARY}:{self.sender_resolver_port}"

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return dns.tsigkeyring.from_text({TSIG_NAME: ("hmac-sha256", self.tsig_secret)})

    @property
    def secret_file(self) -> Path:
        return self.directory / "lab-key.secret"

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def start_new(cls, **kwargs: object) -> Lab:
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
        self.secret_file.write_text(self.tsig_secret + "\n")
        self.secret_file.chmod(0o600)
        self.port = _free_port(PRIMARY, avoid=self._ports)
        self.secondary_port = _free_port(PRIMARY, avoid=self._ports)
        self.resolver_port = _free_port(PRIMARY, avoid=self._ports)
        self.sender_resolver_port = _free_port(PRIMARY, avoid=self._ports)
        self._rndc_ports = {
            "primary": _free_port(PRIMARY, avoid=self._ports),
            "secondary": _free_port(PRIMARY, avoid=self._ports),
        }
        self._unbound_control_port = _free_port(PRIMARY, avoid=self._ports)
        self._sender_control_port = _free_port(PRIMARY, avoid=self._ports)
        self._make_keys()
        self._write_zones()
        self._write_named("primary")
        if self.with_secondary:
            self._write_named("secondary")
        self._write_unbound(
            "unbound", self.resolver_port, self._unbound_control_port, self.cache_max_ttl
        )
        self._write_unbound("sender", self.sender_resolver_port, self._sender_control_port, 86400)
        self.phases = {"configure": time.monotonic() - started}
        self._start_daemon("primary")
        self._wait(self._primary_ready, "primary", 10)
        self.phases["primary"] = time.monotonic() - started
        if self.with_secondary:
            self._start_daemon("secondary")
            self._wait(self._secondary_ready, "secondary", 10)
            self.phases["secondary"] = time.monotonic() - started
        self._start_daemon("unbound")
        self._start_daemon("sender")
        self._wait(lambda: self._resolver_ready(self.resolver), "unbound", 10)
        self._wait(lambda: self._resolver_ready(self.sender_resolver), "sender", 10)
        self.phases["unbound"] = time.monotonic() - started
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for name in ("sender", "unbound", "secondary", "primary"):
            daemon = self.daemons.get(name)
            if daemon is not None:
                daemon.stop()
        if os.environ.get("ROLLOVER_LAB_KEEP") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)

    def _start_daemon(self, name: str) -> None:
        directory = self.directory
        if name in ("unbound", "sender"):
            argv = [_which("unbound"), "-d", "-c", str(directory / f"{name}.conf")]
        else:
            argv = [_which("named"), "-f", "-n", "1", "-c", str(directory / name / "named.conf")]
        daemon = Daemon(name, argv, directory / f"{name}.pid", directory / f"{name}.out")
        self.daemons[name] = daemon
        daemon.start()

    def stop_server(self, name: str) -> None:
        """Stop an authoritative server ("primary" or "secondary") by its PID."""
        self.daemons[name].stop()

    def restart_server(self, name: str) -> None:
        """Start it again from its files and journal, and wait until it answers."""
        self.daemons[name].start()
        ready = {"primary": self._primary_ready, "secondary": self._secondary_ready}[name]
        self._wait(ready, name, 20)

    def _wait(self, check: Callable[[], bool], name: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        daemon = self.daemons[name]
        while time.monotonic() < deadline:
            if not daemon.alive():
                raise LabError(f"{name} exited during start-up:\n{daemon.log_tail()}")
            try:
                if check():
                    return
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.05)
        raise LabError(f"{name} not ready after {seconds} s:\n{daemon.log_tail()}")

    # -- readiness, by the per-lab nonce so a stale daemon cannot fake it --------------------
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

    def _nonce_seen(self, server: str, zone: str, *, rd: bool) -> bool:
        response = self.query(server, f"_lab-nonce.{zone}", "TXT", rd=rd, timeout=0.25)
        texts = [
            b"".join(r.strings).decode()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for r in rrset
        ]
        signed = any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer)
        return self.nonce in texts and signed

    def _primary_ready(self) -> bool:
        return all(self._nonce_seen(self.primary, zone, rd=False) for zone in self.signed_zones)

    def _secondary_ready(self) -> bool:
        return self._nonce_seen(self.secondary, "example.test.", rd=False)

    def _resolver_ready(self, resolver: str) -> bool:
        response = self.query(resolver, "_lab-nonce.example.test.", "TXT", rd=True, timeout=0.25)
        return bool(response.flags & dns.flags.AD) and self._nonce_seen(
            resolver, "example.test.", rd=True
        )

    # -- configuration ---------------------------------------------------------------------
    def _make_keys(self) -> None:
        keys = self.directory / "keys"
        keys.mkdir()
        policy = self.directory / "policy.conf"
        policy.write_text(_POLICY)
        keygen, dsfromkey = _which("dnssec-keygen"), _which("dnssec-dsfromkey")
        for zone in (*self.signed_zones, "decoy.bogus.test."):
            key_zone = "bogus.test." if zone == "decoy.bogus.test." else zone
            target = keys if zone != "decoy.bogus.test." else self.directory / "decoy"
            target.mkdir(exist_ok=True)
            out = subprocess.run(
                [keygen, "-q", "-k", "lab", "-l", str(policy), "-K", str(target), key_zone],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise LabError(f"dnssec-keygen failed for {zone}: {out.stderr.strip()}")
            key_file = next(target.glob(f"K{key_zone}+*.key"))
            ds = subprocess.run(
                [dsfromkey, "-2", str(key_file)], capture_output=True, text=True, check=True
            ).stdout.split()
            # "<zone> IN DS <tag> <alg> <type> <digest>"
            self.ds[zone] = " ".join(ds[3:])

    def _zone_text(self, zone: str, body: str) -> str:
        return (
            f"$ORIGIN {zone}\n$TTL {self.ttl}\n"
            f"@ SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 "
            f"{self.soa_minimum}\n"
            f"@ NS ns1.example.test.\n"
            f'_lab-nonce TXT "{self.nonce}"\n{body}'
        )

    def _write_zones(self) -> None:
        zones = self.directory / "primary"
        zones.mkdir()
        bodies = {
            "test.": (
                "example NS ns1.example.test.\n"
                f"example DS {self.ds['example.test.']}\n"
                "inline NS ns1.example.test.\n"
                f"inline DS {self.ds['inline.test.']}\n"
                "plain NS ns1.example.test.\n"
                "bogus NS ns1.example.test.\n"
                f"bogus DS {self.ds['decoy.bogus.test.']}\n"
                + "".join(
                    f"{zone.removesuffix('.test.')} NS ns1.example.test.\n"
                    f"{zone.removesuffix('.test.')} DS {self.ds[zone]}\n"
                    for zone in self.fleet_zones
                )
            ),
            "example.test.": (
                f"ns1 A {PRIMARY}\nmx1 A {PRIMARY}\nmx2 A {PRIMARY}\n"
                "insecure NS ns1.example.test.\n"
            ),
            "insecure.example.test.": f"mx A {PRIMARY}\n",
            "inline.test.": f"mx A {PRIMARY}\n",
            "plain.test.": f"mx A {PRIMARY}\n",
            "bogus.test.": f"mx A {PRIMARY}\n",
            "island.lab.": f"mx A {PRIMARY}\n",
        }
        for zone in self.all_zones:
            body = bodies.get(zone, "") + self.extra_records.get(zone, "")
            (zones / f"{zone}db").write_text(self._zone_text(zone, body))

    def _write_named(self, role: str) -> None:
        base = self.directory / role
        base.mkdir(exist_ok=True)
        port = self.port if role == "primary" else self.secondary_port
        rndc_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        (base / "rndc.key").write_text(
            f'key "rndc-key" {{ algorithm hmac-sha256; secret "{rndc_secret}"; }};\n'
        )
        (base / "rndc.conf").write_text(
            f'include "{base}/rndc.key";\n'
            f'options {{ default-key "rndc-key"; default-server {PRIMARY}; '
            f"default-port {self._rndc_ports[role]}; }};\n"
        )
        lines = [
            f'include "{base}/rndc.key";',
            f'key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{self.tsig_secret}"; }};',
            f"controls {{ inet {PRIMARY} port {self._rndc_ports[role]} "
            f'allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};',
            "options {",
            f'  directory "{base}";',
            "  pid-file none;",
            f"  listen-on port {port} {{ {PRIMARY}; }};",
            "  listen-on-v6 { none; };",
            "  recursion no;",
            "  dnssec-validation no;",
            "  reuseport no;",
            "  notify explicit;",
            "  notify-delay 0;",
            f'  key-directory "{self.directory}/keys";',
            f'  session-keyfile "{base}/session.key";',
            f'  managed-keys-directory "{base}";',
            "  allow-transfer { 127.0.0.0/8; };",
            "  serial-update-method increment;",
            "  max-journal-size 1M;",
            # Answer IXFR however large the history (the default, 100%, sends the whole zone
            # once the changes outweigh it: the fast path's history check then cannot tell).
            "  max-ixfr-ratio unlimited;",
            "};",
            "logging {",
            f'  channel lab {{ file "{base}/named.log" versions 0 size 20m; severity info; '
            "print-time yes; print-category yes; };",
            "  category default { lab; };",
            "  category lame-servers { null; };",
            "};",
            _POLICY,
        ]
        if role == "primary":
            for zone in self.all_zones:
                lines.append(f'zone "{zone}" {{ type primary; file "{base}/{zone}db";')
                if zone in self.fleet_zones:
                    lines.append(f'  allow-update {{ key "{TSIG_NAME}"; }};')
                    lines.append('  dnssec-policy "lab"; inline-signing no;')
                elif zone == "example.test.":
                    lines.append(f'  allow-update {{ key "{TSIG_NAME}"; }};')
                    lines.append('  dnssec-policy "lab"; inline-signing no;')
                    if self.with_secondary:
                        lines.append(f"  also-notify {{ {PRIMARY} port {self.secondary_port}; }};")
                elif zone in SIGNED_ZONES:
                    lines.append('  dnssec-policy "lab"; inline-signing yes;')
                lines.append("};")
        else:
            lines.append(self._secondary_zone(paused=False))
        (base / "named.conf").write_text("\n".join(lines) + "\n")

    def _secondary_zone(self, *, paused: bool) -> str:
        base = self.directory / "secondary"
        # A paused secondary is told to transfer from a port where nothing listens.
        port = self._rndc_ports["secondary"] if paused else self.port
        return (
            f'zone "example.test." {{ type secondary; file "{base}/example.test.db"; '
            f"primaries {{ {PRIMARY} port {port}; }}; }};"
        )

    def _write_unbound(self, name: str, port: int, control_port: int, cache_max: int) -> None:
        config = self.unbound_config(
            self.directory, name, PRIMARY, port, cache_max=cache_max, control_port=control_port
        )
        (self.directory / f"{name}.conf").write_text(config)

    def unbound_config(
        self,
        directory: Path,
        name: str,
        address: str,
        port: int,
        *,
        cache_max: int,
        control_port: int | None = None,
        root_stub: bool = False,
    ) -> str:
        """A validating unbound over the lab's zones (stub zones at the primary, the lab's
        trust anchor), listening on ``address@port``. ``root_stub`` sends every other name to
        the primary too (which refuses it), so nothing ever leaves loopback."""
        d = directory
        lines = [
            "server:",
            f"  interface: {address}@{port}",
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
            "  ede: yes",
            "  cache-min-ttl: 0",
            f"  cache-max-ttl: {cache_max}",
            f"  cache-max-negative-ttl: {cache_max}",
            "  val-bogus-ttl: 1",
            "  infra-host-ttl: 2",
            "  infra-keep-probing: yes",
            '  local-zone: "test." nodefault',
            '  local-zone: "lab." nodefault',
            f'  trust-anchor: "test. DS {self.ds["test."]}"',
            "remote-control:",
        ]
        if control_port is None:
            lines.append("  control-enable: no")
        else:
            lines += [
                "  control-enable: yes",
                "  control-use-cert: no",
                f"  control-interface: {PRIMARY}",
                f"  control-port: {control_port}",
            ]
        zones = (".", *self.all_zones) if root_stub else self.all_zones
        for zone in zones:
            lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {PRIMARY}@{self.port}"]
        return "\n".join(lines) + "\n"

    # -- helpers for tests -------------------------------------------------------------------
    def rndc(self, role: str, *args: str) -> str:
        out = subprocess.run(
            [_which("rndc"), "-c", str(self.directory / role / "rndc.conf"), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if out.returncode != 0:
            raise LabError(f"rndc {' '.join(args)} ({role}): {out.stderr.strip() or out.stdout}")
        return out.stdout

    def unbound_control(self, *args: str, resolver: str = "unbound") -> str:
        """unbound-control for the tool's resolver ("unbound") or the sender's ("sender")."""
        out = subprocess.run(
            [_which("unbound-control"), "-c", str(self.directory / f"{resolver}.conf"), *args],
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
        self.unbound_control("flush_zone", "lab.")
        self.unbound_control("flush_bogus")
        self.unbound_control("flush_negative")
        self.unbound_control("flush_infra", "all")

    def update(
        self,
        zone: str,
        *,
        add: tuple[tuple[str, int, str, str], ...] = (),
        delete: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Another writer's RFC 2136 update (TSIG-signed), for tests that race the tool."""
        message = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=TSIG_NAME, keyalgorithm="hmac-sha256"
        )
        for name, rdtype in delete:
            message.delete(name, rdtype)
        for name, ttl, rdtype, text in add:
            message.add(name, ttl, rdtype, text)
        response = dns.query.tcp(message, PRIMARY, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise LabError(f"update failed: {dns.rcode.to_text(response.rcode())}")

    def serial(self, server: str, zone: str) -> int:
        response = self.query(server, zone, "SOA")
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        raise LabError(f"no SOA for {zone} at {server}")

    def wait_secondary_serial(self, serial: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.serial(self.secondary, "example.test.") >= serial:
                    return
            except (OSError, dns.exception.DNSException, LabError):
                pass
            time.sleep(0.05)
        raise LabError(f"secondary did not reach serial {serial}")

    def pause_secondary_transfers(self) -> None:
        self._rewrite_secondary(paused=True)

    def resume_secondary_transfers(self) -> None:
        self._rewrite_secondary(paused=False)
        self.rndc("secondary", "refresh", "example.test.")

    def _rewrite_secondary(self, *, paused: bool) -> None:
        conf = self.directory / "secondary" / "named.conf"
        lines = [
            line
            for line in conf.read_text().splitlines()
            if not line.startswith('zone "example.test."')
        ]
        lines.append(self._secondary_zone(paused=paused))
        conf.write_text("\n".join(lines) + "\n")
        self.rndc("secondary", "reconfig")


_POLICY = """dnssec-policy "lab" {
  keys { csk key-directory lifetime unlimited algorithm ecdsap256sha256; };
  dnskey-ttl 5;
  max-zone-ttl 3600;
  publish-safety 1;
  retire-safety 1;
  zone-propagation-delay 1;
  parent-ds-ttl 5;
  parent-propagation-delay 1;
  signatures-refresh 5d;
  signatures-validity 14d;
  signatures-validity-dnskey 14d;
};"""


def main() -> None:
    lab = Lab.start_new()
    print(f"lab up in {lab.startup_seconds:.2f} s, directory {lab.directory}")
    print(f"primary    {lab.primary}  (zones: {', '.join(ALL_ZONES)})")
    if lab.with_secondary:
        print(f"secondary  {lab.secondary}  (example.test.)")
    print(f"resolver   {lab.resolver}  (validating; trust anchor test. DS {lab.ds['test.']})")
    print(f"TSIG       {TSIG_NAME} hmac-sha256, secret in {lab.secret_file}")
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
