"""RFC 2136 dynamic updates with TSIG, over TCP, every change guarded by prerequisites.

A change from RRset A to RRset B is sent as one UPDATE message whose prerequisite (RFC 2136
section 2.4.2, "RRset exists (value dependent)", or 2.4.5 "RRset does not exist" when A is empty)
makes the server apply it only if the RRset is still exactly A. NXRRSET/YXRRSET answers become
:class:`ConflictError`. Every response code is checked; TSIG failures are named.

Messages to the primary reuse one TCP connection per thread (RFC 7766 section 6.2.1: a client
SHOULD send several queries over one connection); a connection the server closed while idle
(BIND's tcp-idle-timeout) is seen before use and replaced. The zone of an owner name is looked
up once per process.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.serial
import dns.tsig
import dns.update

from rollover.config import Section, check_secret_file
from rollover.core.addresses import format_server, parse_server
from rollover.core.association import Association, associations_from_rdata
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, InputError, ProviderError
from rollover.ports import Receipt, ZoneHistory
from rollover.providers.tsig import ALGORITHMS, TsigKey, read_key_file, read_secret_file


@dataclass(frozen=True)
class Rfc2136Settings:
    server: str
    port: int
    zone: str | None
    tsig: TsigKey
    timeout: float = 5.0
    retries: int = 3


def parse_settings(section: Section, warnings: list[str]) -> Rfc2136Settings:
    server = section.text("server", required=True)
    try:
        parse_server(server)
    except InputError as exc:
        raise section.fail("server", str(exc)) from None
    port = section.integer("port", 53, low=1, high=65535)
    zone = section.text("zone")
    timeout = section.number("timeout", 5.0, low=0.1)
    retries = section.integer("retries", 3, low=1, high=10)
    tsig_section = section.required_section("tsig")
    name = tsig_section.text("name")
    algorithm = tsig_section.text("algorithm", "hmac-sha256").lower()
    if algorithm not in ALGORITHMS:
        raise tsig_section.fail("algorithm", f"use one of {', '.join(ALGORITHMS)}")
    secret_file = tsig_section.text("secret_file")
    key_file = tsig_section.text("key_file")
    if (secret_file is None) == (key_file is None):
        raise tsig_section.fail("secret_file", "give exactly one of secret_file and key_file")
    if secret_file is not None:
        where = f"{section.source}: {tsig_section.key('secret_file')}"
        if name is None:
            raise tsig_section.fail("name", "is required with secret_file")
        check_secret_file(secret_file, tsig_section.key("secret_file"), section.source, warnings)
        key = read_secret_file(secret_file, name, algorithm, where)
    else:
        if key_file is None:  # excluded just above; said again for the type checker
            raise tsig_section.fail("key_file", "give exactly one of secret_file and key_file")
        where = f"{section.source}: {tsig_section.key('key_file')}"
        check_secret_file(key_file, tsig_section.key("key_file"), section.source, warnings)
        key = read_key_file(key_file, name, where)
    tsig_section.finish()
    if zone is not None:
        zone = dns.name.from_text(zone).to_text().lower()
    return Rfc2136Settings(server, port, zone, key, timeout, retries)


def create(name: str, settings: Rfc2136Settings) -> Rfc2136Provider:
    return Rfc2136Provider(name, settings)


BATCH_RRSETS = 100  # RRsets per UPDATE: well inside 64 KiB with a few records each


class _TsigRefusedError(ProviderError):
    """The server answered and refused the request's TSIG: it did not process it (RFC 8945
    section 5.2), so an UPDATE refused this way was certainly not applied."""


class Rfc2136Provider:
    """Talks to the primary named in the configuration, never to anything else."""

    def __init__(
        self, name: str, settings: Rfc2136Settings, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.name = name
        self.settings = settings
        self._sleep = sleep
        address, port = parse_server(settings.server, settings.port)
        self._address, self._port = address, port
        self._label = format_server(address, port)
        self._keyring = {
            dns.name.from_text(settings.tsig.name): dns.tsig.Key(
                settings.tsig.name, settings.tsig.secret, settings.tsig.algorithm
            )
        }
        self._keyname = dns.name.from_text(settings.tsig.name)
        self._zones: dict[str, str] = {}
        self._serials: dict[str, int] = {}  # the latest serial seen of each zone
        self._local = threading.local()  # this thread's open connection to the primary
        self._open: set[socket.socket] = set()  # every thread's, closed by close()
        self._open_lock = threading.Lock()

    # -- transport -------------------------------------------------------------------------
    def _connection(self) -> tuple[socket.socket, bool]:
        """This thread's connection to the primary, and whether it was kept from an earlier
        exchange; opened when there is none or the server closed it meanwhile (readable
        while idle means EOF or garbage: either way, unusable)."""
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                readable = [sock]
            if not readable:
                return sock, True
            self._drop()
        family = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.settings.timeout)
            sock.connect((self._address, self._port))
        except BaseException:
            sock.close()
            raise
        self._local.sock = sock
        with self._open_lock:
            self._open.add(sock)
        return sock, False

    def _drop(self) -> None:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            with self._open_lock:
                self._open.discard(sock)
            sock.close()

    def close(self) -> None:
        """Close every thread's connection to the primary."""
        lock = getattr(self, "_open_lock", None)  # None: __init__ failed before it
        if lock is None:
            return
        with lock:
            opened, self._open = self._open, set()
        for sock in opened:
            sock.close()

    def __del__(self) -> None:
        self.close()

    def _exchange(self, message: dns.message.Message) -> dns.message.Message:
        """One TCP exchange on this thread's connection, retried with backoff on timeouts and
        dropped connections (each retry on a fresh connection)."""
        delay = 0.5
        last = ""
        for attempt in range(self.settings.retries):
            if attempt:
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            try:
                return self._send(message)
            except dns.exception.Timeout:
                last = f"timed out after {self.settings.timeout:g} s"
            except (ConnectionError, EOFError) as exc:
                last = f"connection failed: {exc or type(exc).__name__}"
            except OSError as exc:
                last = f"network error: {exc.strerror or exc}"
            except dns.tsig.PeerBadKey:
                # Knot DNS also answers NOTAUTH/BADKEY when the key is known but no ACL rule of
                # the zone allows it this action (knot.conf(5), ACL section); BIND says REFUSED.
                raise _TsigRefusedError(
                    self._tsig_problem(
                        "BADKEY: the server does not know this key and algorithm, or no ACL "
                        "of the zone allows this key to do this"
                    )
                ) from None
            except dns.tsig.PeerBadSignature:
                raise _TsigRefusedError(
                    self._tsig_problem("BADSIG: wrong secret or algorithm")
                ) from None
            except dns.tsig.PeerBadTime:
                raise _TsigRefusedError(
                    self._tsig_problem("BADTIME: the clocks differ too much")
                ) from None
            except dns.exception.DNSException as exc:
                raise ProviderError(f"{self.name}: {self._label}: bad answer: {exc}") from None
        raise ProviderError(
            f"{self.name}: {self._label}: {last} ({self.settings.retries} attempts)"
        )

    def _send(self, message: dns.message.Message) -> dns.message.Message:
        """One exchange. On a kept connection that turns out closed (the server closed it as
        it went idle, just as this message left), once more at once on a fresh one: the
        message never reached the server, and an UPDATE's prerequisite would refuse a
        second application anyway."""
        sock, kept = self._connection()
        try:
            return self._send_on(message, sock)
        except (ConnectionError, EOFError):
            if not kept:
                raise
        return self._send_on(message, self._connection()[0])

    def _send_on(self, message: dns.message.Message, sock: socket.socket) -> dns.message.Message:
        try:
            return dns.query.tcp(
                message, self._address, port=self._port, timeout=self.settings.timeout, sock=sock
            )
        except BaseException:
            self._drop()  # never reused after a failure: its stream may be out of step
            raise

    def _tsig_problem(self, what: str) -> str:
        return f"{self.name}: {self._label}: TSIG key {self.settings.tsig} rejected: {what}"

    def _query(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        query.use_tsig(self._keyring, keyname=self._keyname, algorithm=self.settings.tsig.algorithm)
        response = self._exchange(query)
        rcode = response.rcode()
        if rcode == dns.rcode.NOTAUTH:
            raise ProviderError(self._tsig_problem("NOTAUTH"))
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise ProviderError(
                f"{self.name}: {self._label}: query for {qname} answered {dns.rcode.to_text(rcode)}"
            )
        return response

    # -- Provider --------------------------------------------------------------------------
    def zone_for(self, owner: str) -> str:
        key = owner.lower()
        if key not in self._zones:
            self._zones[key] = self._find_zone(owner)
        return self._zones[key]

    def _find_zone(self, owner: str) -> str:
        if self.settings.zone is not None:
            zone = dns.name.from_text(self.settings.zone)
            if not dns.name.from_text(owner).is_subdomain(zone):
                raise ConfigError(f"{self.name}: {owner} is not in zone {self.settings.zone}")
            return zone.to_text().lower()
        name = dns.name.from_text(owner)
        candidate = name
        while True:
            response = self._query(candidate, dns.rdatatype.SOA)
            if any(r.rdtype == dns.rdatatype.SOA and r.name == candidate for r in response.answer):
                return candidate.to_text().lower()
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA and candidate.is_subdomain(rrset.name):
                    return rrset.name.to_text().lower()
            if candidate == dns.name.root:
                raise ProviderError(f"{self.name}: {self._label} is not authoritative for {owner}")
            candidate = candidate.parent()

    def serial(self, zone: str) -> int:
        response = self._query(dns.name.from_text(zone), dns.rdatatype.SOA)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                self._serials[zone] = int(rrset[0].serial)
                return int(rrset[0].serial)
        raise ProviderError(f"{self.name}: {self._label} has no SOA for {zone}")

    def history(self, owner: str, since: str | None) -> ZoneHistory:
        """The changes at ``owner`` after serial ``since``, from an IXFR (RFC 1995) of the
        zone at the primary, TSIG-signed. A server that answers with a whole zone (its journal
        does not reach back to ``since``), or refuses the transfer, cannot tell: steps None."""
        zone = self.zone_for(owner)
        if since is None:
            return ZoneHistory(str(self.serial(zone)), ())
        try:
            base = int(since)
        except ValueError:
            return ZoneHistory(str(self.serial(zone)), None)
        name = dns.name.from_text(owner)
        try:
            rrs = [
                (rrset.name, rrset.rdtype, rdata)
                for message in dns.query.xfr(
                    self._address,
                    zone,
                    rdtype=dns.rdatatype.IXFR,
                    port=self._port,
                    timeout=self.settings.timeout,
                    lifetime=max(30.0, self.settings.timeout * 3),
                    keyring=self._keyring,
                    keyname=self._keyname,
                    keyalgorithm=self.settings.tsig.algorithm,
                    relativize=False,
                    serial=base,
                    raise_on_serial_went_backwards=False,
                )
                for rrset in message.answer
                for rdata in rrset
            ]
        except (dns.exception.DNSException, OSError, EOFError):
            return ZoneHistory(str(self.serial(zone)), None)
        return ixfr_steps(rrs, name, base)

    def read(self, owner: str) -> TlsaRRset:
        name = dns.name.from_text(owner)
        response = self._query(name, dns.rdatatype.TLSA)
        if not response.flags & dns.flags.AA:
            raise ProviderError(f"{self.name}: {self._label} is not authoritative for {owner}")
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.CNAME:
                raise ProviderError(
                    f"{self.name}: {owner} is a CNAME to {rrset[0].target}; "
                    "manage the TLSA records at the target name"
                )
            if rrset.name == name and rrset.rdtype == dns.rdatatype.TLSA:
                return TlsaRRset(owner, rrset.ttl, associations_from_rdata(rrset))
        return TlsaRRset(owner)

    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        return self._update(self.zone_for(change.owner), [change])[0]

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """Several owner names of one zone in one UPDATE, each RRset with its own prerequisite
        (RFC 2136 section 3.2: the server checks every prerequisite before any change, so the
        message is applied whole or not at all). Split into messages of at most
        ``BATCH_RRSETS`` RRsets; a conflict at any RRset refuses its message (the caller then
        goes RRset by RRset, so one foreign edit does not hold the others back)."""
        pending = [c for c in changes if not c.is_noop]
        if not pending:
            return [Receipt(self.name, "noop", c) for c in changes]
        zones = {self.zone_for(c.owner) for c in pending}
        if len(zones) != 1:
            raise ProviderError(f"{self.name}: one UPDATE can only touch one zone")
        (zone,) = zones
        receipts: dict[int, Receipt] = {}
        for start in range(0, len(pending), BATCH_RRSETS):
            chunk = pending[start : start + BATCH_RRSETS]
            for change, receipt in zip(chunk, self._update(zone, chunk), strict=True):
                receipts[id(change)] = receipt
        return [receipts.get(id(c), Receipt(self.name, "noop", c)) for c in changes]

    def _update(self, zone: str, changes: Sequence[Change]) -> list[Receipt]:
        serial_before = self.serial(zone)
        update = dns.update.UpdateMessage(
            zone,
            keyring=self._keyring,
            keyname=self._keyname,
            keyalgorithm=self.settings.tsig.algorithm,
        )
        for change in changes:
            name = dns.name.from_text(change.owner)
            if change.before.exists:
                # RFC 2136 section 2.4.2: prerequisite RRs carry TTL 0, or the server says FORMERR.
                update.present(name, _rdataset(change.before, ttl=0))
            else:
                update.absent(name, dns.rdatatype.TLSA)
        for change in changes:
            name = dns.name.from_text(change.owner)
            update.delete(name, dns.rdatatype.TLSA)
            if change.after.exists:
                update.add(name, _rdataset(change.after))
        owners = ", ".join(c.owner for c in changes)
        try:
            update.to_wire()
        except dns.exception.TooBig:
            # A DNS message is at most 64 KiB (RFC 1035 section 4.2.2): send halves, each
            # applied whole, as apply_many already does past BATCH_RRSETS.
            if len(changes) == 1:
                raise ProviderError(
                    f"{self.name}: the TLSA RRset at {owners} does not fit in one DNS "
                    "message (64 KiB); publish fewer or smaller records (x 0 0 are large)"
                ) from None
            half = len(changes) // 2
            return self._update(zone, changes[:half]) + self._update(zone, changes[half:])
        try:
            response = self._exchange(update)
        except _TsigRefusedError:
            raise
        except ProviderError as exc:
            raise ProviderError(
                f"{exc}; the update may still reach the server: read the RRset "
                "again before retrying"
            ) from None
        rcode = response.rcode()
        change_id = f"serial>{serial_before}"
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET):
            # A retried update may already have been applied by an earlier attempt.
            if all(self.read(c.owner).records == c.after.records for c in changes):
                return [Receipt(self.name, change_id, c, "already applied") for c in changes]
            raise ConflictError(
                f"{self.name}: the TLSA RRset at {owners} changed since it was read "
                f"({dns.rcode.to_text(rcode)}); nothing was changed, read it again"
            )
        if rcode != dns.rcode.NOERROR:
            raise ProviderError(
                f"{self.name}: update of {owners} refused: {_rcode_meaning(rcode, zone)}"
            )
        return [Receipt(self.name, change_id, c) for c in changes]

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """In effect: the primary's serial moved past the one before, and a read gives ``after``."""
        if receipt.change_id == "noop":
            return
        serial_before = int(receipt.change_id.split(">", 1)[1])
        zone = self.zone_for(receipt.change.owner)
        deadline = time.monotonic() + timeout
        while True:
            # Serials only move forward (RFC 1982): one this process saw past ``serial_before``
            # already says it moved (the other changes of a batch need not ask again).
            known = self._serials.get(zone)
            if known is not None and dns.serial.Serial(known) > dns.serial.Serial(serial_before):
                serial = known
            else:
                serial = self.serial(zone)
            moved = dns.serial.Serial(serial) > dns.serial.Serial(serial_before)
            current = self.read(receipt.change.owner)
            if moved and current.records == receipt.change.after.records:
                return
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"{self.name}: change at {receipt.change.owner} not in effect "
                    f"after {timeout:g} s (serial {serial})"
                )
            self._sleep(0.2)


def _rcode_meaning(rcode: dns.rcode.Rcode, zone: str) -> str:
    text = dns.rcode.to_text(rcode)
    meanings = {
        dns.rcode.REFUSED: "REFUSED (is this TSIG key allowed to update the zone?)",
        dns.rcode.NOTAUTH: f"NOTAUTH (the server is not authoritative for {zone}, "
        "or the TSIG key was rejected)",
        dns.rcode.NOTZONE: f"NOTZONE (the name is not inside zone {zone})",
        dns.rcode.SERVFAIL: "SERVFAIL (the server failed to apply it; see its log)",
        dns.rcode.FORMERR: "FORMERR (the server could not parse the update)",
        dns.rcode.NOTIMP: "NOTIMP (the server does not support dynamic updates)",
    }
    return meanings.get(rcode, text)


def _rdataset(rrset: TlsaRRset, ttl: int | None = None) -> dns.rdataset.Rdataset:
    rdatas = [
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, str(a))
        for a in sorted(rrset.records)
    ]
    return dns.rdataset.from_rdata_list(rrset.ttl or 0 if ttl is None else ttl, rdatas)


def ixfr_steps(
    rrs: list[tuple[dns.name.Name, int, dns.rdata.Rdata]], owner: dns.name.Name, base: int
) -> ZoneHistory:
    """Read an IXFR answer (RFC 1995 section 4): SOA(new), then per change SOA(old), the
    deletions, SOA(new'), the additions, ending with SOA(new). Only TLSA at ``owner`` is kept.
    An answer that is a whole zone (AXFR form) or starts elsewhere than ``base`` says nothing
    about what happened in between."""
    if not rrs or rrs[0][1] != dns.rdatatype.SOA:
        raise ProviderError(f"IXFR answer for {owner} does not start with the SOA")
    newest = int(rrs[0][2].serial)  # type: ignore[attr-defined]
    if len(rrs) == 1:
        # Up to date (the serial is ``base``), or a condensed answer that says only the newest.
        return ZoneHistory(str(newest), () if newest == base else None)
    if rrs[1][1] != dns.rdatatype.SOA or int(rrs[1][2].serial) != base:  # type: ignore[attr-defined]
        return ZoneHistory(str(newest), None)  # AXFR form: no history from ``base``
    steps: list[tuple[frozenset[Association], frozenset[Association]]] = []
    removed: list[dns.rdata.Rdata] = []
    added: list[dns.rdata.Rdata] = []
    adding, first = True, True
    for name, rdtype, rdata in rrs[1:-1]:
        if rdtype == dns.rdatatype.SOA:
            if adding and not first:
                steps.append((associations_from_rdata(removed), associations_from_rdata(added)))
                removed, added = [], []
            first, adding = False, not adding
            continue
        if name == owner and rdtype == dns.rdatatype.TLSA:
            (added if adding else removed).append(rdata)
    if adding:
        steps.append((associations_from_rdata(removed), associations_from_rdata(added)))
    return ZoneHistory(str(newest), tuple(steps))


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
