"""A strict DANE test sender, independent of the product's matcher: what a Postfix or Exim built on
OpenSSL's DANE code would do to a server while its TLSA records roll over.

It differs from :class:`tests.rollover_env.Sender` on purpose, in every way that makes a rollover
harder to survive:

- **Several TTL-honouring caches** (default 4). Each starts at a random offset within the TTL
  (seeded, so a seed gives the same schedule), fetches the TLSA RRset from one source (round-robin
  or random among the authoritative servers and the validating resolvers), keeps that answer for
  exactly its TTL and only then fetches again. A cache that holds an answer fetched just before a
  change keeps using it for the whole TTL, as a real cache may.

  ==================  ========================================================================
  source              how the answer is taken, and for how long it is kept
  ==================  ========================================================================
  authoritative       RD=0, DO=1; an AA answer with RRSIGs is secure, without them insecure;
                      kept for the RRset TTL, capped by the RRSIG's TTL and original TTL
  validating resolver RD=1, DO=1; AD set is secure, AD clear insecure, SERVFAIL bogus (a
                      failure); kept for the remaining TTL the resolver returns
  negative answers    NXDOMAIN / NODATA: kept for min(SOA TTL, SOA minimum) from the authority
                      section (RFC 2308); a denial means no DANE (opportunistic TLS)
  CNAME owners        followed (asking an authoritative server again for a target outside its
                      answer); kept for the smallest TTL of the chain; from an authoritative
                      server secure only when every RRset of the chain is signed
  no answer           timeout, REFUSED, no SOA in a denial...: retried every 0.2 s, and the
                      cache has no answer (no checks through it) meanwhile
  ==================  ========================================================================

- **A check loop** every ``interval``: for every cache holding an answer, for every endpoint, a
  STARTTLS handshake for each key algorithm the probe can ask for ("default", "ecdsa", "rsa"), and
  each chain presented authenticated against that cache's RRset by :func:`authenticate`, OpenSSL's
  DANE semantics written out here (see its docstring), not :mod:`rollover.core.matching`.
- **Every failure cross-checked** with the real ``openssl s_client`` (:func:`openssl_dane_verify`)
  right after the failed handshake; its verdict goes into the failure text, and the sender counts
  how often OpenSSL confirmed or contradicted it.

Only loopback addresses are ever contacted: the constructor and :func:`openssl_dane_verify` refuse
anything else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import random
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rollover.edges.probe import KEY_ALGORITHMS, TlsProbe

AUTHENTICATED = "authenticated"
FAILED = "failed"
OPPORTUNISTIC = "opportunistic"  # no usable records: TLS without authentication, not a failure

RETRY = 0.2  # seconds between fetch attempts of a cache that has no answer
DIGEST_LENGTH = {1: 32, 2: 64}
# Server Gated Crypto EKUs OpenSSL's ssl_server purpose still accepts beside serverAuth.
_SGC = (
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
)


# -- TLSA records ----------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    @classmethod
    def parse(cls, text: str) -> Tlsa:
        usage, selector, mtype, *data = text.split()
        return cls(int(usage), int(selector), int(mtype), bytes.fromhex("".join(data)))

    @classmethod
    def of(cls, usage: int, selector: int, mtype: int, certificate: x509.Certificate) -> Tlsa:
        """The record of ``certificate`` with these parameters (selector/matching type 0-2)."""
        return cls(usage, selector, mtype, association_data(selector, mtype, certificate))


def rrset_text(records: Iterable[Tlsa]) -> str:
    return "{" + ", ".join(str(r) for r in sorted(records)) + "}"


def spki_of(certificate: x509.Certificate) -> bytes:
    """The SubjectPublicKeyInfo exactly as encoded in the certificate (what OpenSSL hashes for
    selector 1), cut out of the DER of the TBSCertificate: no re-encoding of a parsed key."""
    tbs = certificate.tbs_certificate_bytes
    tag, offset, _end = _der_element(tbs, 0)
    if tag != 0x30:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    if tbs[offset] == 0xA0:  # [0] EXPLICIT version
        offset = _der_element(tbs, offset)[2]
    for _field in ("serialNumber", "signature", "issuer", "validity", "subject"):
        offset = _der_element(tbs, offset)[2]
    tag, _start, end = _der_element(tbs, offset)
    if tag != 0x30:
        raise ValueError("subjectPublicKeyInfo is not a SEQUENCE")
    return tbs[offset:end]


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of the contents, end) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, start = data[offset], data[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > len(data):
        raise ValueError("truncated DER")
    return tag, start, start + length


def association_data(selector: int, mtype: int, certificate: x509.Certificate) -> bytes:
    content = (
        certificate.public_bytes(serialization.Encoding.DER)
        if selector == 0
        else spki_of(certificate)
    )
    if mtype == 0:
        return content
    if mtype == 1:
        return hashlib.sha256(content).digest()
    if mtype == 2:
        return hashlib.sha512(content).digest()
    raise ValueError(f"matching type {mtype}")


# -- the matcher -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    status: str  # AUTHENTICATED, FAILED or OPPORTUNISTIC
    reason: str
    matched: Tlsa | None = None
    depth: int | None = None  # where the matched record matched: 0 = the leaf
    usable: tuple[Tlsa, ...] = ()
    ignored: tuple[tuple[Tlsa, str], ...] = ()  # unusable or hidden by digest agility, and why

    @property
    def ok(self) -> bool:
        return self.status == AUTHENTICATED


def unusable_reason(record: Tlsa) -> str | None:
    """Why a record cannot be used by an SMTP sender (RFC 7672, OpenSSL's SSL_dane_tlsa_add),
    or None when it can."""
    if record.usage > 3:
        return f"unknown usage {record.usage}"
    if record.selector > 1:
        return f"unknown selector {record.selector}"
    if record.mtype > 2:
        return f"unknown matching type {record.mtype}"
    if not record.data:
        return "empty association data"
    if record.mtype in DIGEST_LENGTH and len(record.data) != DIGEST_LENGTH[record.mtype]:
        return (
            f"{len(record.data)}-byte digest for matching type {record.mtype} "
            f"(needs {DIGEST_LENGTH[record.mtype]})"
        )
    if record.mtype == 0:
        try:
            if record.selector == 0:
                x509.load_der_x509_certificate(record.data)
            else:
                serialization.load_der_public_key(record.data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            what = "certificate" if record.selector == 0 else "public key"
            return f"full data is not a DER {what}"
    if record.usage in (0, 1):
        return "PKIX usage, unusable for SMTP (RFC 7672 section 3.1.3)"
    return None


def usable_records(records: Iterable[Tlsa]) -> tuple[list[Tlsa], list[tuple[Tlsa, str]]]:
    """The records an OpenSSL-based SMTP sender uses, and the others with the reason.

    Digest agility (RFC 7671 section 9, OpenSSL's dane_match): within one (usage, selector)
    group of usable records, only the highest matching type among 1 (SHA2-256) and 2 (SHA2-512)
    counts; Full (0) records are never hidden."""
    usable: list[Tlsa] = []
    ignored: list[tuple[Tlsa, str]] = []
    for record in sorted(set(records)):
        reason = unusable_reason(record)
        if reason is None:
            usable.append(record)
        else:
            ignored.append((record, reason))
    strongest: dict[tuple[int, int], int] = {}
    for record in usable:
        if record.mtype in (1, 2):
            group = (record.usage, record.selector)
            strongest[group] = max(strongest.get(group, 0), record.mtype)
    kept: list[Tlsa] = []
    for record in usable:
        best = strongest.get((record.usage, record.selector), 0)
        if record.mtype in (1, 2) and record.mtype < best:
            ignored.append(
                (
                    record,
                    f"hidden by digest agility: {record.usage} {record.selector} {best} "
                    "is published (RFC 7671 section 9)",
                )
            )
        else:
            kept.append(record)
    return kept, ignored


def authenticate(
    records: Iterable[Tlsa],
    chain: Sequence[x509.Certificate],
    host: str,
    now: datetime | None = None,
) -> Verdict:
    """Authenticate ``chain`` (leaf first, as presented) against ``records`` for ``host``, the
    way OpenSSL's DANE verification does for an SMTP sender (Postfix, Exim):

    - unusable records are ignored (:func:`unusable_reason`), digest agility applies
      (:func:`usable_records`); none left: :data:`OPPORTUNISTIC`;
    - DANE-EE(3): the leaf's certificate or SPKI matches; names and dates are ignored;
    - DANE-TA(2): a presented certificate at depth >= 1 matches (never the leaf itself, even in a
      one-certificate chain), the leaf chains up to it by issuer name, key identifiers and
      signature, every certificate above the leaf is a CA (basicConstraints cA; for the anchor
      X509_check_ca's laxer rule), path lengths hold, every certificate on the path, anchor
      included, is within its dates, OpenSSL's ssl_server purpose holds (EKU, key usage) and the
      leaf carries ``host`` (DNS-ID, single whole left-most label wildcard; CN only without any
      DNS-ID).

    Stricter than OpenSSL 3.0 in one way, on purpose: OpenSSL checks the dates of a DANE-TA
    anchor only when it is self-issued (internal_verify never looks at a non-self-issued top
    certificate's dates), so an expired intermediate anchor passes there and fails here.

    Not modelled: DANE-TA(2) records whose certificate or key the server does not send (OpenSSL
    accepts "2 0 0" and "2 1 0" anchors from DNS alone), and partial wildcards ("f*.example"),
    which ``s_client`` accepts but Postfix refuses."""
    now = now or datetime.now(UTC)
    usable, ignored = usable_records(records)
    if not usable:
        why = "; ".join(f"{r}: {reason}" for r, reason in ignored) or "empty RRset"
        return Verdict(OPPORTUNISTIC, f"no usable TLSA records ({why})", ignored=tuple(ignored))
    if not chain:
        return Verdict(FAILED, "no certificate presented", usable=tuple(usable))
    leaf = chain[0]
    for record in usable:
        if record.usage == 3 and _matches(record, leaf):
            return Verdict(
                AUTHENTICATED, "DANE-EE matches the leaf", record, 0, tuple(usable), tuple(ignored)
            )
    problems: list[str] = []
    for record in usable:
        if record.usage != 2:
            continue
        if _matches(record, leaf):
            problems.append(
                f"{record} matches the leaf itself, and DANE-TA is never matched at depth 0"
            )
        for depth in range(1, len(chain)):
            if not _matches(record, chain[depth]):
                continue
            failure = _ta_failure(chain, depth, host, now)
            if failure is None:
                return Verdict(
                    AUTHENTICATED,
                    f"DANE-TA matches {_subject(chain[depth])} at depth {depth}",
                    record,
                    depth,
                    tuple(usable),
                    tuple(ignored),
                )
            problems.append(f"{record} matches {_subject(chain[depth])} but {failure}")
    if not problems:
        problems.append(
            "no usable TLSA record matches the presented chain (leaf is "
            f"3 1 1 {association_data(1, 1, leaf).hex()})"
        )
    return Verdict(FAILED, "; ".join(problems), None, None, tuple(usable), tuple(ignored))


def _matches(record: Tlsa, certificate: x509.Certificate) -> bool:
    try:
        return association_data(record.selector, record.mtype, certificate) == record.data
    except ValueError:
        return False


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "<empty subject>"


def _extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _self_issued(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """``parent`` issued ``child``: names, key identifiers (when both are present) and the
    signature, as OpenSSL's check_issued does."""
    if child.issuer != parent.subject:
        return False
    akid = _extension(child, x509.AuthorityKeyIdentifier)
    skid = _extension(parent, x509.SubjectKeyIdentifier)
    if (
        akid is not None
        and akid.key_identifier
        and skid is not None
        and akid.key_identifier != skid.digest
    ):
        return False
    try:
        verify = getattr(child, "verify_directly_issued_by", None)
        if verify is not None:
            verify(parent)
        else:  # cryptography < 40
            _verify_signature(child, parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _verify_signature(child: x509.Certificate, parent: x509.Certificate) -> None:
    key = parent.public_key()
    signature, data, algorithm = (
        child.signature,
        child.tbs_certificate_bytes,
        child.signature_hash_algorithm,
    )
    if isinstance(key, rsa.RSAPublicKey):
        assert algorithm is not None
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        assert algorithm is not None
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"cannot verify a signature by {type(key).__name__}")


def _paths(chain: Sequence[x509.Certificate], anchor: int) -> list[list[int]]:
    """Every path of presented certificates from the leaf (0) up to ``anchor``, by issuance."""
    found: list[list[int]] = []

    def walk(path: list[int]) -> None:
        if path[-1] == anchor:
            found.append(path)
            return
        for index in range(1, len(chain)):
            if index not in path and issued_by(chain[path[-1]], chain[index]):
                walk([*path, index])

    walk([0])
    return found


def _ta_failure(
    chain: Sequence[x509.Certificate], anchor: int, host: str, now: datetime
) -> str | None:
    """Why the chain does not validate up to the DANE-TA anchor at ``anchor``, or None."""
    paths = _paths(chain, anchor)
    if not paths:
        return "the leaf does not chain up to it (issuer names, key identifiers, signatures)"
    problems = [_path_failure(chain, path, host, now) for path in paths]
    if None in problems:
        return None
    return str(problems[0])


def _path_failure(
    chain: Sequence[x509.Certificate], path: list[int], host: str, now: datetime
) -> str | None:
    intermediates = 0  # non-self-issued CA certificates below the current one (OpenSSL's plen)
    for position, index in enumerate(path):
        certificate = chain[index]
        name = _subject(certificate)
        if now < certificate.not_valid_before_utc:
            return f"{name} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M}"
        if now > certificate.not_valid_after_utc:
            return f"{name} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M}"
        if position == 0:
            problem = _leaf_purpose_problem(certificate)
            if problem:
                return f"the leaf {name} {problem}"
            continue
        problem = _ca_problem(certificate, anchor=position == len(path) - 1)
        if problem:
            return f"{name} {problem}"
        constraints = _extension(certificate, x509.BasicConstraints)
        limit = None if constraints is None else constraints.path_length
        if position > 1 and limit is not None and intermediates > limit:
            return f"{name} allows a path length of {limit}"
        if not _self_issued(certificate):
            intermediates += 1
    if not host_matches(chain[0], host):
        return f"the leaf's names {names_of(chain[0])} do not include {host.rstrip('.')}"
    return None


def _ca_problem(certificate: x509.Certificate, *, anchor: bool) -> str | None:
    """OpenSSL's check_chain: X509_check_ca must say "CA"; below the anchor only a
    basicConstraints cA is good enough. And the ssl_server purpose's EKU rule for CAs."""
    usage = _extension(certificate, x509.KeyUsage)
    constraints = _extension(certificate, x509.BasicConstraints)
    if usage is not None and not usage.key_cert_sign:
        return "is not a CA (keyUsage without keyCertSign)"
    if constraints is not None and not constraints.ca:
        return "is not a CA (basicConstraints cA is false)"
    if constraints is None:
        # X509_check_ca also takes a v1 self-issued certificate or a keyCertSign key usage,
        # but only for the anchor: intermediates need basicConstraints cA (OpenSSL's check_chain).
        v1_root = certificate.version == x509.Version.v1 and _self_issued(certificate)
        if not anchor or not (v1_root or usage is not None):
            return "is not a CA (no basicConstraints)"
    return _eku_problem(certificate)


def _leaf_purpose_problem(certificate: x509.Certificate) -> str | None:
    usage = _extension(certificate, x509.KeyUsage)
    if usage is not None and not (
        usage.digital_signature or usage.key_encipherment or usage.key_agreement
    ):
        return "has a keyUsage unfit for a TLS server"
    return _eku_problem(certificate)


def _eku_problem(certificate: x509.Certificate) -> str | None:
    eku = _extension(certificate, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.SERVER_AUTH in eku or any(o in eku for o in _SGC):
        return None
    return "has an extendedKeyUsage without serverAuth"


def names_of(certificate: x509.Certificate) -> list[str]:
    """The DNS-IDs, or the CNs when there is no DNS-ID (RFC 6125 section 6.4.4)."""
    san = _extension(certificate, x509.SubjectAlternativeName)
    names = list(san.get_values_for_type(x509.DNSName)) if san is not None else []
    if names:
        return names
    return [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def host_matches(certificate: x509.Certificate, host: str) -> bool:
    """RFC 6125: exact (case-insensitive) or a wildcard that is the whole left-most label,
    matching exactly one label, with at least two labels after it (as OpenSSL insists)."""
    wanted = host.rstrip(".").lower()
    for name in names_of(certificate):
        presented = name.rstrip(".").lower()
        if presented == wanted:
            return True
        if presented.startswith("*.") and presented.count(".") >= 2:
            label, _, rest = wanted.partition(".")
            if label and rest == presented[2:]:
                return True
    return False


# -- OpenSSL itself ------------------------------------------------------------------------
def _require_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address}: the strict sender only ever contacts loopback addresses")


def _split(endpoint: str) -> tuple[str, int]:
    address, port = endpoint.rsplit(":", 1)
    address = address.strip("[]")
    _require_loopback(address)
    return address, int(port)


def openssl_dane_verify(
    address: str,
    port: int,
    host: str,
    records: Iterable[Tlsa | str],
    *,
    asked: str = "default",
    timeout: float = 5.0,
) -> tuple[bool, str]:
    """The real OpenSSL's DANE verdict on the server at ``address``:``port``: ``openssl
    s_client -starttls smtp`` with every record as ``-dane_tlsa_rrdata`` (it drops unusable ones
    itself), no CA store (PKIX usages can never succeed), no name checks for DANE-EE (as Postfix
    sets), ``-verify_return_error -brief``, stdin closed.

    Returns (True, "verified: <its DANE line>") or (False, "<its verify error line>"); a run
    that gave no verdict at all (no connection, timeout) returns (False, "no verdict: ...")."""
    _require_loopback(address)
    rrdata = [str(r) for r in records]
    if not rrdata:
        return False, "no verdict: no TLSA records given"
    name = host.rstrip(".")
    connect = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    argv = [
        "openssl",
        "s_client",
        "-connect",
        connect,
        "-starttls",
        "smtp",
        "-servername",
        name,
        "-dane_tlsa_domain",
        name,
        "-dane_ee_no_namechecks",
        "-no-CAfile",
        "-no-CApath",
        "-no-CAstore",
        "-verify_return_error",
        "-brief",
    ]
    ciphers = KEY_ALGORITHMS.get(asked)
    if ciphers is not None:
        argv += ["-tls1_2", "-cipher", ciphers]
    for text in rrdata:
        argv += ["-dane_tlsa_rrdata", text]
    try:
        run = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"no verdict: openssl timed out after {timeout:g} s"
    except OSError as exc:
        return False, f"no verdict: cannot run openssl: {exc}"
    lines = [line.strip() for line in (run.stderr + run.stdout).splitlines() if line.strip()]
    if run.returncode == 0 and "Verification: OK" in lines:
        dane = next((line for line in lines if line.startswith("DANE TLSA")), "")
        return True, f"verified: {dane}" if dane else "verified"
    for needle in ("verify error:", "Failed to import any TLSA records"):
        found = next((line for line in lines if needle in line), None)
        if found is not None:
            return False, found.removeprefix("s_client: ")
    tail = lines[-1] if lines else ""
    return False, f"no verdict: openssl exited {run.returncode}: {tail}"


# -- DNS ---------------------------------------------------------------------------------------
AUTHORITATIVE = "authoritative"
RESOLVER = "resolver"


@dataclass(frozen=True)
class Source:
    kind: str  # AUTHORITATIVE or RESOLVER
    server: str  # "127.0.0.1:PORT"

    def __str__(self) -> str:
        return f"{self.kind} {self.server}"


@dataclass(frozen=True)
class Answer:
    source: Source
    status: str  # "secure", "insecure", "secure denial", "insecure denial"
    records: frozenset[Tlsa]
    ttl: float
    received: float  # time.monotonic()

    @property
    def expires(self) -> float:
        return self.received + self.ttl

    @property
    def secure(self) -> bool:
        return self.status == "secure"

    def describe(self, now: float) -> str:
        return f"{self.source}, {self.status}, ttl {self.ttl:g} s, age {now - self.received:.2f} s"


class FetchError(Exception):
    """No answer a cache can keep: it retries."""


class BogusAnswerError(FetchError):
    """SERVFAIL from a validating resolver: a DANE sender defers the mail (a failure)."""


def fetch_tlsa(source: Source, owner: str, timeout: float = 1.0) -> Answer:
    """One fetch of the TLSA RRset of ``owner`` from ``source`` (see the module's table).

    CNAMEs are followed (an authoritative server is asked again for a target outside its
    answer); the answer is kept for the smallest TTL along the chain, and from an
    authoritative server it is secure only when every RRset of the chain is signed.

    TLSA records are read from the wire here, not by dnspython, which refuses a whole message
    holding one TLSA record whose digest length does not fit its matching type; a sender must
    see such a record (and ignore it), as OpenSSL does."""
    qname = dns.name.from_text(owner)
    ttl = float("inf")
    signed = True  # authoritative: every CNAME so far carried an RRSIG
    for _query in range(8):
        response, wire_answer, received = _ask(source, qname, timeout)
        for _hop in range(8):
            cname = response.get_rrset(
                response.answer, qname, dns.rdataclass.IN, dns.rdatatype.CNAME
            )
            if cname is None:
                break
            ttl = min(ttl, cname.ttl, *_sig_caps(response, qname, dns.rdatatype.CNAME))
            signed = signed and bool(_sig_caps(response, qname, dns.rdatatype.CNAME))
            qname = cname[0].target
        else:
            raise FetchError(f"{source}: a CNAME chain longer than 8")
        rcode = response.rcode()
        tlsa = [
            (rr_ttl, data)
            for rr_name, rdtype, rr_ttl, data in wire_answer
            if rdtype == dns.rdatatype.TLSA and rr_name == qname
        ]
        if rcode == dns.rcode.NOERROR and tlsa:
            if any(len(data) < 3 for _ttl, data in tlsa):
                raise FetchError(f"{source}: a TLSA record shorter than 3 octets")
            records = frozenset(Tlsa(d[0], d[1], d[2], bytes(d[3:])) for _ttl, d in tlsa)
            ttl = min(ttl, *(t for t, _d in tlsa))
            if source.kind == RESOLVER:
                secure = bool(response.flags & dns.flags.AD)
            else:
                caps = _sig_caps(response, qname, dns.rdatatype.TLSA)
                secure = signed and bool(caps)
                ttl = min(ttl, *caps)
            return Answer(source, "secure" if secure else "insecure", records, ttl, received)
        soa = next((r for r in response.authority if r.rdtype == dns.rdatatype.SOA), None)
        if soa is None and rcode == dns.rcode.NOERROR and source.kind == AUTHORITATIVE:
            if qname == dns.name.from_text(owner):
                raise FetchError(f"{source}: neither TLSA records nor a denial (no SOA)")
            continue  # a CNAME target this server did not answer for: ask it
        # NXDOMAIN or NODATA: RFC 2308 negative caching, by the SOA of the authority section.
        if soa is None:
            raise FetchError(f"{source}: a denial without SOA (RFC 2308: not cacheable)")
        ttl = min(ttl, soa.ttl, int(soa[0].minimum))
        if source.kind == RESOLVER:
            secure = bool(response.flags & dns.flags.AD)
        else:
            kinds = {r.rdtype for r in response.authority}
            secure = (
                signed
                and dns.rdatatype.RRSIG in kinds
                and bool(kinds & {dns.rdatatype.NSEC, dns.rdatatype.NSEC3})
            )
        status = "secure denial" if secure else "insecure denial"
        return Answer(source, status, frozenset(), ttl, received)
    raise FetchError(f"{source}: too many CNAME referrals")


def _sig_caps(response: dns.message.Message, name: dns.name.Name, covers: int) -> list[int]:
    """The TTL and original TTLs of the RRSIGs over (name, covers) in the answer; empty when
    there is none."""
    sigs = response.get_rrset(
        response.answer,
        name,
        dns.rdataclass.IN,
        dns.rdatatype.RRSIG,
        dns.rdatatype.RdataType.make(covers),
    )
    if sigs is None:
        return []
    return [sigs.ttl, *(int(r.original_ttl) for r in sigs)]


def _ask(
    source: Source, qname: dns.name.Name, timeout: float
) -> tuple[dns.message.Message, list[tuple[dns.name.Name, int, int, bytes]], float]:
    """One query: the parsed response (malformed rdata left out), the answer section read from
    the wire, and when it came; raises FetchError for anything a cache cannot keep."""
    address, port = _split(source.server)
    query = dns.message.make_query(qname, "TLSA", want_dnssec=True)
    if source.kind == AUTHORITATIVE:
        query.flags &= ~dns.flags.RD
    else:
        query.flags |= dns.flags.RD
    try:
        wire = _exchange(query, address, port, timeout)
        response = dns.message.from_wire(wire, continue_on_error=True)
        answer = _answer_section(wire)
    except (
        dns.exception.DNSException,
        OSError,
        EOFError,
        ValueError,
        IndexError,
        struct.error,
    ) as exc:
        raise FetchError(f"{source}: {type(exc).__name__}: {exc}") from None
    received = time.monotonic()
    if not query.is_response(response):
        raise FetchError(f"{source}: an answer to another question")
    rcode = response.rcode()
    if source.kind == RESOLVER and rcode == dns.rcode.SERVFAIL:
        raise BogusAnswerError(f"{source}: SERVFAIL (bogus or unreachable zone)")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise FetchError(f"{source}: {dns.rcode.to_text(rcode)}")
    if source.kind == AUTHORITATIVE and not response.flags & dns.flags.AA:
        raise FetchError(f"{source}: answer without AA (not authoritative for {qname})")
    return response, answer, received


def _exchange(query: dns.message.Message, address: str, port: int, timeout: float) -> bytes:
    """The raw response over UDP, or over TCP when it comes back truncated."""
    request = query.to_wire()
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((address, port))
        sock.sendall(request)
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            wire = sock.recv(65535)
            if len(wire) >= 12 and wire[:2] == request[:2]:
                break
    if not wire[2] & 0x02:  # TC clear
        return wire
    with socket.create_connection((address, port), max(0.001, deadline - time.monotonic())) as tcp:
        tcp.sendall(struct.pack("!H", len(request)) + request)
        length = struct.unpack("!H", _read_exactly(tcp, 2))[0]
        return _read_exactly(tcp, length)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("the DNS server closed the TCP connection")
        data += chunk
    return data


def _answer_section(wire: bytes) -> list[tuple[dns.name.Name, int, int, bytes]]:
    """(owner, type, TTL, RDATA) of every record of the answer section, from the wire."""
    qdcount, ancount = struct.unpack("!HH", wire[4:8])
    offset = 12
    for _ in range(qdcount):
        offset += dns.name.from_wire(wire, offset)[1] + 4
    records = []
    for _ in range(ancount):
        name, used = dns.name.from_wire(wire, offset)
        offset += used
        rdtype, _rdclass, ttl, length = struct.unpack("!HHIH", wire[offset : offset + 10])
        offset += 10
        if offset + length > len(wire):
            raise ValueError("truncated answer section")
        records.append((name, rdtype, ttl, wire[offset : offset + length]))
        offset += length
    return records


# -- the sender ------------------------------------------------------------------------------
@dataclass
class _Cache:
    index: int
    rng: random.Random
    answer: Answer | None = None
    fetches: int = 0

    def current(self, now: float) -> Answer | None:
        answer = self.answer
        return answer if answer is not None and now < answer.expires else None


@dataclass(frozen=True)
class Failure:
    at: float  # time.monotonic()
    text: str
    openssl_ok: bool | None  # None: not cross-checked, or openssl gave no verdict


class StrictSender:
    """The strict DANE sender. ``start()``, let it run, ``stop()``, then read the counters (or
    :func:`assert_clean`). All counters are updated under ``lock``.

    checks               successful DANE-authenticated handshakes (one per chain presented)
    failures             human-readable failures: time, cache, endpoint, chain, RRset, reason,
                         OpenSSL's verdict
    opportunistic        handshakes done without DANE: the cache held an insecure answer, a
                         denial, or no usable records
    unreachable          probes of an endpoint that failed before any chain was seen
    bogus                SERVFAIL answers from a validating resolver (each also a failure)
    fetches, fetch_errors, insecure_answers, denials   what the caches got from DNS
    openssl_confirmed / openssl_disagreed / openssl_inconclusive   the cross-checks of failures
    """

    def __init__(
        self,
        owner: str,
        host: str,
        endpoints: Sequence[str],
        *,
        authoritative: Sequence[str] = (),
        resolvers: Sequence[str] = (),
        caches: int = 4,
        interval: float = 0.15,
        seed: int = 0,
        policy: str = "round-robin",
        ttl_hint: float | None = None,
        probe_timeout: float = 3.0,
        openssl_timeout: float = 4.0,
        cross_check: bool = True,
        asked: Sequence[str] = tuple(KEY_ALGORITHMS),
    ) -> None:
        if policy not in ("round-robin", "random"):
            raise ValueError("policy: round-robin or random")
        if caches < 1 or not endpoints:
            raise ValueError("at least one cache and one endpoint")
        self.owner = owner if owner.endswith(".") else owner + "."
        self.host = host.rstrip(".")
        self.endpoints = tuple(endpoints)
        for endpoint in (*self.endpoints, *authoritative, *resolvers):
            _split(endpoint)
        self.sources = tuple(Source(AUTHORITATIVE, s) for s in authoritative) + tuple(
            Source(RESOLVER, s) for s in resolvers
        )
        if not self.sources:
            raise ValueError("at least one DNS source")
        self.interval = interval
        self.seed = seed
        self.policy = policy
        self.ttl_hint = ttl_hint
        self.probe_timeout = probe_timeout
        self.openssl_timeout = openssl_timeout
        self.cross_check = cross_check
        self.asked = tuple(asked)
        self.lock = threading.Lock()
        self._caches = [_Cache(i, random.Random(f"{seed}:{i}")) for i in range(caches)]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # counters
        self.checks = 0
        self.failures: list[str] = []
        self.failure_records: list[Failure] = []
        self.opportunistic = 0
        self.unreachable = 0
        self.bogus = 0
        self.fetches = 0
        self.fetch_errors = 0
        self.insecure_answers = 0
        self.denials = 0
        self.openssl_confirmed = 0
        self.openssl_disagreed = 0
        self.openssl_inconclusive = 0
        self.success_times: list[float] = []
        self.checks_by_rrset: Counter[frozenset[Tlsa]] = Counter()
        self.leaves: Counter[str] = Counter()  # successful checks by leaf "3 1 1" digest
        self.fetched: Counter[tuple[str, str]] = Counter()  # (source kind, status)
        self.rrsets_fetched: Counter[frozenset[Tlsa]] = Counter()
        self.last_errors: list[str] = []  # the latest fetch errors and unreachable probes
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    @classmethod
    def for_env(cls, env: Any, **kwargs: Any) -> StrictSender:
        """A sender for a :class:`tests.rollover_env.ServiceEnv`: its owner, host and endpoint,
        the lab's primary and secondary, the lab's sender resolver."""
        lab = env.lab
        authoritative = [lab.primary] + ([lab.secondary] if lab.with_secondary else [])
        kwargs.setdefault("ttl_hint", float(env.ttl))
        return cls(
            env.owner,
            env.host,
            [env.endpoint],
            authoritative=authoritative,
            resolvers=[lab.sender_resolver],
            **kwargs,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def max_gap(self) -> float:
        """The longest a healthy sender may go without a successful check: 3 s, or two rounds
        of every cache's check when ``interval`` is long. Caches are staggered and refetch in
        milliseconds, so a working server is authenticated on every round (interval plus a few
        handshakes, 0.2-0.5 s in the lab); 3 s without one means no cache could authenticate
        the server or the server was unreachable for longer than a lab TTL (2 s)."""
        return max(3.0, 2 * self.interval * len(self._caches))

    def start(self) -> StrictSender:
        if self.ttl_hint is None:
            self.ttl_hint = self._learn_ttl()
        self.started_at = time.monotonic()
        for cache in self._caches:
            self._threads.append(
                threading.Thread(
                    target=self._guard,
                    args=(self._cache_loop, cache),
                    name=f"strict-sender-cache-{cache.index}",
                    daemon=True,
                )
            )
        self._threads.append(
            threading.Thread(
                target=self._guard, args=(self._check_loop,), name="strict-sender", daemon=True
            )
        )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 8.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"strict sender threads still running after {timeout} s: {alive}")

    def wait_ready(self, checks: int = 2, timeout: float = 20.0) -> None:
        """Until ``checks`` successful checks (every cache starts within a TTL)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.checks >= checks:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the strict sender never authenticated the server: {self.summary()}")

    def summary(self) -> str:
        with self.lock:
            return (
                f"{self.checks} checks, {len(self.failures)} failures "
                f"(openssl confirmed {self.openssl_confirmed}, disagreed "
                f"{self.openssl_disagreed}, no verdict {self.openssl_inconclusive}), "
                f"{self.opportunistic} opportunistic, {self.unreachable} unreachable, "
                f"{self.fetches} fetches {dict(self.fetched)}, {self.fetch_errors} fetch errors, "
                f"last errors {self.last_errors[-3:]}"
            )

    def _guard(self, target: Any, *args: Any) -> None:
        """A thread's body; anything unexpected becomes a failure (never an unhandled thread
        exception, which the suite's warnings-as-errors would turn into a confusing error)."""
        try:
            target(*args)
        except Exception as exc:
            self._record_failure(f"internal error in the strict sender: {exc!r}", None)

    def _learn_ttl(self) -> float:
        for source in self.sources:
            try:
                answer = fetch_tlsa(source, self.owner)
            except FetchError:
                continue
            return max(answer.ttl, 0.5)
        return 2.0

    # -- the caches ----------------------------------------------------------------------------
    def _pick(self, cache: _Cache) -> Source:
        if self.policy == "random":
            return cache.rng.choice(self.sources)
        return self.sources[(cache.index + cache.fetches) % len(self.sources)]

    def _cache_loop(self, cache: _Cache) -> None:
        assert self.ttl_hint is not None
        if self._stop.wait(cache.rng.uniform(0, self.ttl_hint)):
            return
        while not self._stop.is_set():
            source = self._pick(cache)
            cache.fetches += 1
            try:
                answer = fetch_tlsa(source, self.owner)
            except (KeyError, IndexError, AttributeError, ValueError) as exc:
                answer = None
                error: FetchError | None = FetchError(f"{source}: unparseable answer: {exc!r}")
            except FetchError as exc:
                answer, error = None, exc
            else:
                error = None
            if isinstance(error, BogusAnswerError):
                cache.answer = None
                with self.lock:
                    self.bogus += 1
                self._record_failure(
                    f"cache {cache.index} [{source}]: RRset unknown: {error}", None
                )
                self._stop.wait(RETRY)
                continue
            if error is not None or answer is None:
                cache.answer = None
                with self.lock:
                    self.fetch_errors += 1
                    self.last_errors = [*self.last_errors[-9:], f"cache {cache.index}: {error}"]
                self._stop.wait(RETRY)
                continue
            with self.lock:
                self.fetches += 1
                self.fetched[(source.kind, answer.status)] += 1
                self.rrsets_fetched[answer.records] += 1
                if answer.status == "insecure":
                    self.insecure_answers += 1
                elif answer.status.endswith("denial"):
                    self.denials += 1
            cache.answer = answer
            # Keep it exactly for its TTL; a zero TTL is still spaced by RETRY.
            next_fetch = max(answer.expires, answer.received + RETRY)
            if self._stop.wait(max(0.0, next_fetch - time.monotonic())):
                return

    # -- the checks ------------------------------------------------------------------------------
    def _check_loop(self) -> None:
        """Each round: one handshake per endpoint and key algorithm, and what it presented
        authenticated against every cache's RRset (at one instant, every sender would be shown
        the same chains; one handshake each keeps the load on the server low)."""
        probe = TlsProbe(timeout=self.probe_timeout)
        while not self._stop.is_set():
            now = time.monotonic()
            answers = [(c, a) for c in self._caches if (a := c.current(now)) is not None]
            for endpoint in self.endpoints if answers else ():
                if self._stop.is_set():
                    return
                address, port = _split(endpoint)
                result = probe.probe(address, port, self.host, "smtp", self.asked)
                for cache, answer in answers:
                    try:
                        self._check(cache, answer, endpoint, result)
                    except Exception as exc:
                        self._record_failure(
                            f"cache {cache.index} {endpoint}: internal error in the strict "
                            f"sender's check: {exc!r}",
                            None,
                        )
            self._stop.wait(self.interval)

    def _check(self, cache: _Cache, answer: Answer, endpoint: str, result: Any) -> None:
        if not result.chains:
            with self.lock:
                self.unreachable += 1
                self.last_errors = [*self.last_errors[-9:], f"{endpoint}: {result.error}"]
            return
        for presented in result.chains:
            try:
                chain = [x509.load_der_x509_certificate(d) for d in presented.certificates]
            except ValueError as exc:
                self._record_failure(
                    f"cache {cache.index} [{answer.describe(time.monotonic())}] {endpoint} "
                    f"({presented.asked}): unparseable certificate: {exc}",
                    None,
                )
                continue
            if not answer.secure:
                with self.lock:
                    self.opportunistic += 1
                continue
            verdict = authenticate(answer.records, chain, self.host)
            if verdict.status == OPPORTUNISTIC:
                with self.lock:
                    self.opportunistic += 1
            elif verdict.ok:
                with self.lock:
                    self.checks += 1
                    self.success_times.append(time.monotonic())
                    self.checks_by_rrset[answer.records] += 1
                    self.leaves[association_data(1, 1, chain[0]).hex()] += 1
            else:
                self._fail(cache, answer, endpoint, presented.asked, chain, verdict)

    def _fail(
        self,
        cache: _Cache,
        answer: Answer,
        endpoint: str,
        asked: str,
        chain: list[x509.Certificate],
        verdict: Verdict,
    ) -> None:
        text = (
            f"cache {cache.index} [{answer.describe(time.monotonic())}] {endpoint} ({asked}) "
            f"presented {' <- '.join(_subject(c) for c in chain) or 'nothing'}: "
            f"RRset {rrset_text(answer.records)}: {verdict.reason}"
        )
        openssl_ok: bool | None = None
        if self.cross_check:
            address, port = _split(endpoint)
            ok, said = openssl_dane_verify(
                address, port, self.host, answer.records, asked=asked, timeout=self.openssl_timeout
            )
            openssl_ok = None if said.startswith("no verdict") else ok
            text += f"; openssl: {said}"
        self._record_failure(text, openssl_ok, cross_checked=self.cross_check)

    def _record_failure(
        self, text: str, openssl_ok: bool | None, cross_checked: bool = False
    ) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self.lock:
            self.failures.append(f"{stamp} {text}")
            self.failure_records.append(Failure(time.monotonic(), f"{stamp} {text}", openssl_ok))
            if cross_checked:
                if openssl_ok is False:
                    self.openssl_confirmed += 1
                elif openssl_ok:
                    self.openssl_disagreed += 1
                else:
                    self.openssl_inconclusive += 1


def assert_clean(sender: StrictSender, min_checks: int, *, max_unreachable: int = 0) -> None:
    """The sender, stopped, never failed: no failure, at least ``min_checks`` successful checks,
    no endpoint unreachable more than ``max_unreachable`` times, and successes all through: no
    gap longer than :attr:`StrictSender.max_gap` between consecutive successes, nor between the
    last success and ``stop()`` (a sender that stopped reaching the server fails)."""
    summary = sender.summary()
    with sender.lock:
        failures = list(sender.failures)
        checks = sender.checks
        unreachable = sender.unreachable
        times = list(sender.success_times)
    assert failures == [], f"{len(failures)} DANE failures ({summary}):\n" + "\n".join(
        failures[:20]
    )
    assert checks >= min_checks, f"only {checks} successful checks, wanted {min_checks}: {summary}"
    assert unreachable <= max_unreachable, f"the server was unreachable: {summary}"
    limit = sender.max_gap
    gaps = [(b - a, a) for a, b in itertools.pairwise(times) if b - a > limit]
    assert not gaps, (
        f"successful checks stopped for {max(g for g, _ in gaps):.2f} s (limit {limit:g} s), "
        f"{len(gaps)} time(s), first {gaps[0][1] - (sender.started_at or 0):.2f} s after start: "
        f"{summary}"
    )
    assert sender.stopped_at is not None, "stop() the sender before assert_clean"
    if times:
        quiet = sender.stopped_at - times[-1]
        assert quiet <= limit, (
            f"no successful check in the last {quiet:.2f} s before stop (limit {limit:g} s): "
            f"{summary}"
        )
