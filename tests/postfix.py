"""Postfix's own DANE verdict beside ``rollover verify``, in the DNS lab (helpers, no tests).

The referee is ``posttls-finger -l dane`` (Postfix's SMTP client code and OpenSSL's DANE
verifier), run the way ``smtp(8)`` would meet each server:

- its own validating unbound (:class:`PostfixResolver`): the lab's stub zones and trust anchor,
  on ``127.0.0.153:53`` (or the next free loopback address), because libresolv only talks to port
  53 and glibc only passes the AD bit on with ``options trust-ad``. A stub zone for ``.`` at the
  lab primary keeps every query it makes on loopback;
- a private mount namespace per run (``unshare -m``) with a bind-mounted ``resolv.conf`` naming
  that resolver: the real ``/etc/resolv.conf`` is never touched;
- its own Postfix configuration directory (``MAIL_CONFIG``): no ``/etc/postfix``, no daemon;
- the destination ``[host]`` (no MX lookup): the A lookup, the TLSA lookup at ``_25._tcp.<host>``
  (CNAMEs followed, RFC 7672 section 2.2.2 order) and the handshake on port 25 are Postfix's.

Each run is classified into the words of RFC 7672 (:func:`classify_finger`): ``verified`` (the
server authenticated by DANE), ``defer`` (a DANE-protected destination that failed: no match,
no STARTTLS, TLSA or address lookup failure, bogus), ``opportunistic`` (DANE does not apply: no
TLSA, only unusable TLSA, an insecure zone; Postfix would deliver over unauthenticated TLS or in
the clear). ``rollover verify``'s JSON is mapped onto the same words by :func:`rollover_outcome`.

Every server listens on port 25 on its own loopback address (127.0.N.x), in this process
(:class:`tests.smtpserver.SmtpServer`). Binding port 25, ``unshare -m`` and ``mount --bind``
need root.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import run_rollover
from tests.lab import PRIMARY, TSIG_NAME, Lab
from tests.smtpserver import SmtpServer

REPO = Path(__file__).resolve().parent.parent
POSTTLS_FINGER = "/usr/sbin/posttls-finger"
OUTCOMES = ("verified", "defer", "opportunistic", "unknown", "error")
NOW = dt.datetime.now(dt.UTC)
ZONE = "example.test"
IN = dns.rdataclass.IN
TLSA = dns.rdatatype.TLSA

Key = CertificateIssuerPrivateKeyTypes
ChainItem = x509.Certificate | bytes  # bytes: a DER (or loose BER) certificate as sent


class HarnessError(RuntimeError):
    """The harness itself could not run (missing Postfix, not root, no free address)."""


# -- the two verdicts, in one vocabulary ---------------------------------------------------------


def classify_finger(output: str) -> tuple[str, str]:
    """``posttls-finger -v -l dane`` output -> (outcome, the lines that decided it).

    Read in this order (the first that applies wins):

    - ``TLSA lookup error`` (a bogus or failed TLSA lookup: Postfix skips the host, 4.7.5) and
      ``Destination address lookup failed`` (a bogus or failed A lookup, 4.4.3): ``defer``;
    - ``Failed to establish session`` otherwise (the TCP connection failed): ``error``, a
      harness problem, never a verdict;
    - ``no [usable ]TLSA records found, resorting to "secure"`` (logged with ``-v``): DANE does
      not apply to this host. ``posttls-finger`` goes on at the "secure" level, but ``smtp(8)``
      at the dane level falls back to opportunistic TLS (RFC 7672 section 2.2): ``opportunistic``
      (also when the address records are insecure: no TLSA lookup is made, the same line is
      logged); and ``all TLSA records unusable, fallback to unauthenticated TLS``, when OpenSSL
      refused every record Postfix passed on (a digest of the wrong length, an unknown matching
      type);
    - ``Verified TLS connection established``: ``verified``;
    - any other ``TLS connection established`` (``Untrusted``/``Anonymous``) under DANE: the
      certificate did not authenticate, ``smtp(8)`` defers: ``defer``;
    - connected but no TLS at all under DANE (no STARTTLS offered, or the handshake failed):
      ``smtp(8)`` defers (RFC 7672 section 2.2): ``defer``.
    """
    lines = [line.removeprefix("posttls-finger: ") for line in output.splitlines()]

    def having(*needles: str) -> list[str]:
        return [line for line in lines if any(n in line for n in needles)]

    telling = having(
        "Matched DANE",
        "verification failed",
        "TLSA",
        "TLS connection established",
        "warning:",
        "Failed to establish",
        "lookup failed",
        "resorting",
        "insecure",
    )
    telling = [line for line in telling if not line.startswith(("dns_", "ctable_", "lookup "))]
    detail = " | ".join(dict.fromkeys(telling))[:1500]
    if having("TLSA lookup error", "Destination address lookup failed"):
        return "defer", detail
    if having("Failed to establish session"):
        return "error", detail or output[-500:]
    if having('TLSA records found, resorting to "secure"', "fallback to unauthenticated TLS"):
        return "opportunistic", detail
    if having("Verified TLS connection established"):
        return "verified", detail
    if having("TLS connection established"):
        return "defer", detail
    if having("Connected to"):
        ehlo = [line for line in lines if line.startswith("< ") and "250" in line]
        offered = any("STARTTLS" in line.upper() for line in ehlo)
        why = "TLS handshake failed" if offered else "no STARTTLS offered"
        return "defer", f"{why} under DANE | {detail}"
    return "error", detail or output[-500:]


def rollover_outcome(exit_code: int, doc: dict[str, Any] | None) -> str:
    """``rollover verify --json`` -> the outcome it predicts for a DANE sender.

    - exit 3 (UNKNOWN) or no JSON: ``unknown``;
    - exit 2 (CRITICAL): ``defer``;
    - exit 0 or 1, every result's TLSA RRset ``secure`` and every chain presented ``matched``:
      ``verified`` (a WARNING such as an expiry within ``--warn`` days still verifies);
    - exit 0 or 1 otherwise (insecure or indeterminate RRset, no TLSA, only unusable TLSA, no
      chain presented): ``opportunistic``, DANE does not protect the host.
    """
    if doc is None or exit_code == 3:
        return "unknown"
    if exit_code == 2:
        return "defer"
    if exit_code not in (0, 1):
        return "unknown"
    results = doc.get("results") or []
    if results and all(
        r.get("dnssec") == "secure"
        and r.get("chains")
        and all(c.get("matched") for c in r["chains"])
        for r in results
    ):
        return "verified"
    return "opportunistic"


def rollover_reasons(doc: dict[str, Any] | None) -> str:
    """The reasons, problems and ignored records of a ``verify --json`` document, one line."""
    if doc is None:
        return ""
    parts: list[str] = []
    for r in doc.get("results", []):
        parts.append(f"dnssec={r.get('dnssec')}")
        parts += r.get("reasons", [])
        parts += [f"ignored {u}" for u in r.get("unusable_records", [])]
        for c in r.get("chains", []):
            matched = c.get("matched")
            parts.append(
                f"{c.get('asked')}: "
                + (
                    f"matched {matched['record'][:12]}.. depth {matched['depth']}"
                    if matched
                    else ""
                )
                + "; ".join(c.get("problems", []))
            )
    parts += [f"note: {n}" for n in doc.get("notes", [])]
    return " | ".join(dict.fromkeys(p for p in parts if p))


# -- certificates ----------------------------------------------------------------------------------


def new_key(kind: str = "p256") -> Key:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}[kind])


UNKNOWN_CRITICAL_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")


def build_cert(
    common_name: str,
    key: Key,
    issuer: tuple[x509.Certificate, Key] | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    dns_names: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    key_usage: bool = True,
    key_cert_sign: bool | None = None,
    excluded: Sequence[str] = (),
    permitted: Sequence[str] = (),
    unknown_critical: bool = False,
) -> x509.Certificate:
    """A certificate with the extensions the cases need (``cryptography`` directly): CA flag and
    pathLenConstraint, SANs, validity, EKU, key usage, DNS name constraints, and a made-up
    critical extension no verifier knows."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signer = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=2))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if key_usage:
        sign = ca if key_cert_sign is None else key_cert_sign
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=sign,
                crl_sign=sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if excluded or permitted:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(n) for n in permitted] or None,
                excluded_subtrees=[x509.DNSName(n) for n in excluded] or None,
            ),
            critical=True,
        )
    if unknown_critical:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(UNKNOWN_CRITICAL_OID, b"\x05\x00"), critical=True
        )
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv_header_size(data: bytes) -> int:
    first = data[1]
    return 2 if first < 0x80 else 2 + (first & 0x7F)


def loose_ber(cert: x509.Certificate, issuer_key: Key) -> bytes:
    """``cert`` re-encoded in loose BER and signed again by ``issuer_key``: the length of its
    TBSCertificate in a non-minimal long form (one leading zero byte). OpenSSL reads it (and
    sends it on byte for byte, it keeps the TBS encoding it parsed); a strict DER parser does
    not. Only the leaf under a DANE-EE record is authenticated, so senders must not care."""
    tbs = cert.tbs_certificate_bytes
    head = _tlv_header_size(tbs)
    content = tbs[head:]
    # One byte longer than needed: 0x8(k+1) 00 <k bytes>.
    body = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    loose = bytes([0x80 | (len(body) + 1), 0]) + body
    new_tbs = b"\x30" + loose + content
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    signature = issuer_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    # AlgorithmIdentifier ecdsa-with-SHA256 and the BIT STRING, as DER.
    algorithm = bytes.fromhex("300a06082a8648ce3d040302")
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body_all = new_tbs + algorithm + bit_string
    return b"\x30" + _der_length(len(body_all)) + body_all


def cert_der(item: ChainItem) -> bytes:
    return item if isinstance(item, bytes) else item.public_bytes(serialization.Encoding.DER)


def spki_der_of(item: ChainItem | Key) -> bytes:
    if isinstance(item, x509.Certificate):
        public = item.public_key()
    elif isinstance(item, bytes):
        raise TypeError("a selector-1 record of a raw certificate: pass the key")
    else:
        public = item.public_key()  # type: ignore[assignment]
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tlsa(params: str, item: ChainItem | Key, *, truncate: int | None = None) -> str:
    """TLSA rdata text for ``item`` (a certificate, raw certificate bytes, or a key for selector
    1), computed here with hashlib (not with rollover's code); ``truncate`` cuts the data to that
    many bytes (a malformed digest)."""
    usage, selector, mtype = (int(x) for x in params.split())
    selected = cert_der(item) if selector == 0 else spki_der_of(item)  # type: ignore[arg-type]
    data = {0: selected, 1: hashlib.sha256(selected).digest()}.get(mtype)
    if data is None:
        data = hashlib.sha512(selected).digest()
    if truncate is not None:
        data = data[:truncate]
    return f"{usage} {selector} {mtype} {data.hex()}"


def pem_of(items: Iterable[ChainItem]) -> bytes:
    out = []
    for item in items:
        b64 = base64.encodebytes(cert_der(item)).decode().replace("\n", "")
        lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        out.append(f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n")
    return "".join(out).encode()


def key_pem_of(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    """The module's certificate material: a root, an intermediate below it, leaf keys."""

    root_key: Key = field(default_factory=lambda: new_key("p384"))
    int_key: Key = field(default_factory=new_key)
    leaf_key: Key = field(default_factory=new_key)
    other_key: Key = field(default_factory=new_key)
    rsa_key: Key = field(default_factory=lambda: new_key("rsa2048"))

    def __post_init__(self) -> None:
        self.root = build_cert("Conformance Root", self.root_key, ca=True)
        self.intermediate = build_cert(
            "Conformance Intermediate", self.int_key, (self.root, self.root_key), ca=True
        )

    def leaf(
        self,
        *names: str,
        key: Key | None = None,
        issuer: tuple[x509.Certificate, Key] | None = None,
        **options: Any,
    ) -> x509.Certificate:
        """A leaf for ``names`` (the first is the CN; no names: CN only), by the intermediate
        unless ``issuer``."""
        return build_cert(
            names[0] if names else "no-name",
            key or self.leaf_key,
            issuer or (self.intermediate, self.int_key),
            dns_names=[n for n in names if n],
            **options,
        )


# -- one case: where it listens, what it serves, what DNS says ------------------------------------


@dataclass
class Slot:
    """What one case is given (its label, host name and loopback address) and what it builds:
    the records to add to ``example.test.``, the chains its server presents, STARTTLS or not,
    and, for the cases that live in other zones, the destination to ask about instead."""

    label: str
    address: str
    pki: Pki
    records: list[tuple[str, str, str]] = field(default_factory=list)
    chains: list[tuple[list[ChainItem], Key]] = field(default_factory=list)
    starttls: bool = True
    destination: str = ""
    a_record: bool = True

    @property
    def host(self) -> str:
        return f"{self.label}.{ZONE}"

    @property
    def owner(self) -> str:
        return f"_25._tcp.{self.host}"

    def name(self, suffix: str) -> str:
        return f"{self.label}-{suffix}.{ZONE}"

    @property
    def target(self) -> str:
        return self.destination or self.host

    def add(self, owner: str, rdtype: str, text: str) -> Slot:
        self.records.append((owner, rdtype, text))
        return self

    def tlsa(self, *texts: str, owner: str | None = None) -> Slot:
        for text in texts:
            self.add(owner or self.owner, "TLSA", text)
        return self

    def serve(self, chain: Sequence[ChainItem], key: Key | None = None) -> Slot:
        self.chains.append((list(chain), key or self.pki.leaf_key))
        return self

    def leaf(self, *names: str, **options: Any) -> x509.Certificate:
        """A leaf for the host (or ``names``) by the module's intermediate."""
        return self.pki.leaf(*(names or (self.target,)), **options)

    def elsewhere(self, destination: str, address: str | None = None) -> Slot:
        """Ask about ``destination`` instead of the slot's host (its records are the builder's,
        or the lab's own names such as ``mx.plain.test`` at 127.0.0.1)."""
        self.destination = destination
        if address is not None:
            self.address = address
        return self

    def standard(self) -> x509.Certificate:
        """Serve [leaf, intermediate] for the host; the leaf."""
        leaf = self.leaf()
        self.serve([leaf, self.pki.intermediate])
        return leaf


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # what Postfix does: verified, defer, opportunistic
    build: Callable[[Slot], object]
    note: str = ""


@dataclass
class CaseResult:
    case: Case
    destination: str
    address: str
    postfix: str = "error"
    postfix_detail: str = ""
    postfix_output: str = ""
    rollover: str = "unknown"
    rollover_exit: int = -1
    rollover_reasons: str = ""
    rollover_doc: dict[str, Any] | None = None
    rollover_stderr: str = ""

    @property
    def agree(self) -> bool:
        return self.postfix == self.rollover


# -- the resolver and the posttls-finger runs -------------------------------------------------------


def _free(
    address: str, port: int, kinds: Sequence[int] = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def require_environment() -> None:
    """Fail (in the caller) with one line saying what is missing."""
    if not os.access(POSTTLS_FINGER, os.X_OK):
        raise HarnessError(
            f"{POSTTLS_FINGER} not found: install Postfix (apt-get install postfix, with debconf "
            "'postfix postfix/main_mailer_type select No configuration')"
        )
    if os.geteuid() != 0:
        raise HarnessError("needs root: port 25 on loopback, unshare -m and mount --bind")
    for tool in ("unshare", "mount", "unbound"):
        if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            raise HarnessError(f"{tool} not found")


@dataclass
class PostfixResolver:
    """A validating unbound for posttls-finger: the lab's zones and trust anchor, on port 53 of a
    free loopback address, started and stopped by its PID."""

    lab: Lab
    directory: Path
    address: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostfixResolver:
        self.directory.mkdir(parents=True, exist_ok=True)
        for last in range(153, 200):
            candidate = f"127.0.0.{last}"
            if _free(candidate, 53):
                self.address = candidate
                break
        else:
            raise HarnessError("no loopback address 127.0.0.153-199 has port 53 free")
        d = self.directory
        # Everything else (Postfix's DNSSEC probe, stray names) to the lab primary too, which
        # refuses it: no query ever leaves loopback.
        config = self.lab.unbound_config(
            d, "unbound", self.address, 53, cache_max=5, root_stub=True
        )
        conf = d / "unbound.conf"
        conf.write_text(config)
        unbound = shutil.which("unbound") or "/usr/sbin/unbound"
        with open(d / "unbound.out", "ab") as log:
            self.process = subprocess.Popen(
                [unbound, "-d", "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (d / "unbound.pid").write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"unbound for Postfix exited: {self._tail()}")
            if self._ready():
                return self
            time.sleep(0.05)
        raise HarnessError(f"unbound for Postfix not ready: {self._tail()}")

    def _tail(self) -> str:
        texts = [
            (self.directory / f).read_text(errors="replace")[-800:]
            for f in ("unbound.out", "unbound.log")
            if (self.directory / f).exists()
        ]
        return "\n".join(texts)

    def _ready(self) -> bool:
        query = dns.message.make_query("_lab-nonce.example.test.", "TXT", want_dnssec=True)
        try:
            response = dns.query.udp(query, self.address, port=53, timeout=0.3)
        except (OSError, dns.exception.DNSException):
            return False
        texts = [
            b"".join(r.strings).decode()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for r in rrset
        ]
        return bool(response.flags & dns.flags.AD) and self.lab.nonce in texts

    def stop(self) -> None:
        """TERM by PID, KILL after 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@dataclass
class Finger:
    """posttls-finger runs against the resolver, each in its own mount namespace."""

    resolver: PostfixResolver
    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.resolv_conf = self.directory / "resolv.conf"
        self.resolv_conf.write_text(
            f"nameserver {self.resolver.address}\noptions trust-ad attempts:2 timeout:2\n"
        )
        self.config = self.directory / "postfix"
        self.config.mkdir(exist_ok=True)
        (self.config / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    "myhostname = sender.example.test",
                    "inet_protocols = ipv4",
                    "smtp_host_lookup = dns",
                    "smtp_dns_support_level = dnssec",
                    "smtp_tls_security_level = dane",
                    # Postfix's "is DNSSEC validation available" probe only logs; its default
                    # (NS of the root) has no answer in the lab. Off: the cases that must verify
                    # show that the AD bit reaches Postfix.
                    "dnssec_probe =",
                    "",
                ]
            )
        )

    def command(self, destination: str) -> list[str]:
        script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        return [
            "unshare",
            "-m",
            "sh",
            "-c",
            script,
            str(self.resolv_conf),
            POSTTLS_FINGER,
            "-v",
            "-l",
            "dane",
            "-L",
            "summary,certmatch,untrusted",
            "-t",
            "5",
            "-T",
            "5",
            f"[{destination}]",
        ]

    def run(self, destination: str) -> tuple[str, str, str]:
        """(outcome, deciding lines, whole output)."""
        env = {
            "MAIL_CONFIG": str(self.config),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C",
        }
        result = subprocess.run(
            self.command(destination),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = result.stdout + result.stderr
        outcome, detail = classify_finger(output)
        return outcome, detail, output


def run_verify(lab: Lab, destination: str, address: str) -> tuple[int, dict[str, Any] | None, str]:
    """``rollover verify --host <destination> --connect <address>:25 --json`` against the lab."""
    result = run_rollover(
        "verify",
        "--host",
        destination,
        "--connect",
        f"{address}:25",
        "--resolver",
        lab.resolver,
        "--authoritative",
        lab.primary,
        "--timeout",
        "5",
        "--json",
    )
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        doc = None
    return result.returncode, doc, result.stderr


# -- the whole run -------------------------------------------------------------------------------------


def _address_block(count: int) -> list[str]:
    """``count`` loopback addresses 127.0.B.1.. with port 25 free on each (B random, so two runs
    side by side do not meet)."""
    blocks = list(range(1, 250))
    random.shuffle(blocks)
    for block in blocks[:40]:
        addresses = [f"127.0.{block}.{i}" for i in range(1, count + 1)]
        if all(_free(a, 25, (socket.SOCK_STREAM,)) for a in addresses):
            return addresses
    raise HarnessError(f"no 127.0.B.0/24 block with port 25 free on {count} addresses")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def plan(cases: Sequence[Case], pki: Pki, token: str) -> list[Slot]:
    """Give each case a label and an address and let it build its slot."""
    addresses = _address_block(len(cases))
    slots = []
    for i, (case, address) in enumerate(zip(cases, addresses, strict=True)):
        slot = Slot(f"pf{i:02d}-{token}", address, pki)
        case.build(slot)
        if slot.a_record and not slot.destination:
            slot.records.insert(0, (slot.host, "A", slot.address))
        slots.append(slot)
    return slots


def publish(lab: Lab, slots: Sequence[Slot]) -> None:
    """Every case's records in a few TSIG-signed RFC 2136 updates (TTL 5). TLSA records go as
    RFC 3597 generic RDATA: dnspython refuses to build a malformed one (a 31-byte SHA-256),
    BIND does not."""
    records = [r for slot in slots for r in slot.records]
    for chunk in _chunks(records, 150):
        update = dns.update.UpdateMessage(
            f"{ZONE}.", keyring=lab.keyring, keyname=TSIG_NAME, keyalgorithm="hmac-sha256"
        )
        for owner, rdtype, text in chunk:
            name = owner.rstrip(".") + "."
            if rdtype == "TLSA":
                usage, selector, mtype, data = text.split()
                wire = bytes([int(usage), int(selector), int(mtype)]) + bytes.fromhex(data)
                update.add(name, 5, dns.rdata.GenericRdata(IN, TLSA, wire))
            else:
                update.add(name, 5, rdtype, text)
        response = dns.query.tcp(update, PRIMARY, port=lab.port, timeout=10)
        if response.rcode() != dns.rcode.NOERROR:
            raise HarnessError(f"update failed: {dns.rcode.to_text(response.rcode())}")


def start_servers(slots: Sequence[Slot], directory: Path) -> dict[str, SmtpServer]:
    """One STARTTLS server per address (port 25); cases sharing an address (the lab's own names
    at 127.0.0.1) share the first one's server."""
    servers: dict[str, SmtpServer] = {}
    try:
        for slot in slots:
            if not slot.chains or slot.address in servers:
                continue
            files = []
            for n, (chain, key) in enumerate(slot.chains):
                chain_file = directory / f"{slot.label}-{n}.pem"
                key_file = directory / f"{slot.label}-{n}.key"
                chain_file.write_bytes(pem_of(chain))
                key_file.write_bytes(key_pem_of(key))
                key_file.chmod(0o600)
                files.append((chain_file, key_file))
            server = SmtpServer(
                files,
                offer_starttls=slot.starttls,
                hostname=slot.target,
                address=slot.address,
                port=25,
            )
            try:
                servers[slot.address] = server.start()
            except OSError as exc:
                raise HarnessError(f"cannot listen on {slot.address}:25: {exc}") from exc
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def run_conformance(
    lab: Lab, directory: Path, cases: Sequence[Case], *, workers: int = 8
) -> dict[str, CaseResult]:
    """Build every case once (one batch of DNS updates, every server up), then ask Postfix and
    ``rollover verify`` about each, in parallel; the results by case name."""
    import secrets

    require_environment()
    directory.mkdir(parents=True, exist_ok=True)
    slots = plan(cases, Pki(), secrets.token_hex(3))
    publish(lab, slots)
    servers = start_servers(slots, directory)
    results = {
        slot_case.name: CaseResult(slot_case, slot.target, slot.address)
        for slot_case, slot in zip(cases, slots, strict=True)
    }
    try:
        resolver = PostfixResolver(lab, directory / "resolver").start()
        try:
            finger = Finger(resolver, directory / "finger")
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                fingers = {
                    c.name: pool.submit(finger.run, s.target)
                    for c, s in zip(cases, slots, strict=True)
                }
                verifies = {
                    c.name: pool.submit(run_verify, lab, s.target, s.address)
                    for c, s in zip(cases, slots, strict=True)
                }
                for name, result in results.items():
                    result.postfix, result.postfix_detail, result.postfix_output = fingers[
                        name
                    ].result()
                    code, doc, stderr = verifies[name].result()
                    result.rollover_exit, result.rollover_doc = code, doc
                    result.rollover_stderr = stderr[-2000:]
                    result.rollover = rollover_outcome(code, doc)
                    result.rollover_reasons = rollover_reasons(doc)
        finally:
            resolver.stop()
    finally:
        for server in servers.values():
            server.stop()
    return results


def table(results: Iterable[CaseResult], deliberate: dict[str, str]) -> str:
    """The comparison, one line per case, and the agreement figure."""
    rows = list(results)
    width = max((len(r.case.name) for r in rows), default=4)
    lines = [f"{'case':<{width}}  {'postfix':<13} {'rollover':<13} agree"]
    for r in rows:
        mark = "yes" if r.agree else ("deliberate" if r.case.name in deliberate else "NO")
        lines.append(f"{r.case.name:<{width}}  {r.postfix:<13} {r.rollover:<13} {mark}")
    agree = sum(r.agree for r in rows)
    lines.append(f"{agree} of {len(rows)} agree")
    return "\n".join(lines)
