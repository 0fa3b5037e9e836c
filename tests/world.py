"""An in-memory world for the rollover engine: a DNS provider, the DNS (servers, resolvers, TTL-
honouring caches), the mail server and its deploy, the clock, the state and ownership stores.

Nothing here touches the network or a real clock; every engine call runs over these fakes, each
operation as a fresh process (a fresh :class:`~rollover.engine.machine.Engine`), and
:meth:`World.sender_failures` says, exactly, whether any sender could have failed so far:

- **Time.** ``world.real`` is the time that really passed (what TTLs count); the engine's clock
  (:class:`FakeClock`) moves with it on :meth:`FakeClock.advance` (wall clock and boot clock
  together) but :meth:`FakeClock.step_wall` moves only the wall clock (an NTP step: no time passed
  for the caches). Every event (an RRset version, a reload) gets a stamp ``(real, sequence)``, so
  events at the same instant stay in the order they happened.
- **DNS.** Every RRset the provider ever held is a :class:`Version`, served from the stamp it was
  made to the stamp it was replaced. A cache may fetch a version at any instant it was served and
  keep it for exactly its TTL (the negative TTL when the RRset was empty), so it may hold it until
  ``end + ttl``. The :class:`Cache` objects are concrete caches fetching on their own schedules
  (spread over the TTL); the check does not rest on them but on every instant a cache could fetch.
- **The server.** Each address presents one chain at a time (a :class:`Presentation`, from one
  stamp to another); the deployer's ``install`` writes the files, ``reload`` makes every address
  present them, except an address told to lag (it keeps what it presented until
  :meth:`FakeServer.catch_up`).
- **State.** The state store is :class:`MemoryStateStore` (or the SQLite one), the ownership
  store the real file one in the world's directory (put it on tmpfs: :func:`scratch_dir`).
- **The check.** For every version a cache may have held and every chain an address presented
  while it was held, the rule (:func:`rollover.core.promise.authenticates`, with the parameter sets
  configured when the version was made) and an independent OpenSSL-semantics matcher
  (:func:`tests.dane_sender.authenticate`) must both accept (the rule under the configuration
  of then and of now, when it changed in between); no usable record at all means
  opportunistic TLS, no failure. Failures the test caused itself (a foreign edit breaking a chain
  that was already presented when the edit was made) are not the tool's and are excused. Also:
  the tool never leaves the RRset without a usable record while an address presents a key that had
  DANE on (a downgrade; an abort or rollback back to a starting point without DANE excepted), and
  never removes a foreign record (not added by the tool) unless it pinned a key presented when the
  rollover started that no address presents any more (RFC 7671 section 8: the old key's records go).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from rollover.config import ServiceConfig
from rollover.core.association import Association, owner_name
from rollover.core.matching import match_chain, usable_records
from rollover.core.observation import DnssecState, Observation, ResolverAnswer, ServerAnswer
from rollover.core.params import TlsaParams, parse_params
from rollover.core.phases import FINAL, Rollover
from rollover.core.plan import Change, TlsaRRset
from rollover.core.presented import LiveChains
from rollover.core.promise import Context, associations_for, authenticates
from rollover.engine.machine import AdvanceResult, Engine
from rollover.engine.staging import Staged, load_staged
from rollover.errors import ConflictError, DeployError, ProviderError
from rollover.ports import HistoryEvent, Receipt, StateStore, ZoneHistory
from rollover.state.ownership import OwnershipStore
from rollover.state.store import SqliteStateStore, _decode, _encode
from tests import dane_sender
from tests.certs import key_pem, pem

HOST = "mx1.example.test"
PORT = 25
SERVICE = "mx1"
OWNER = owner_name(HOST, PORT, "tcp")
TTL = 300  # the service's configured TTL
ZONE = "example.test."
# Fixed, so that a derandomized run is the same run in every process (as the certificates
# below); the seconds have a fraction, as real ones do.
BASE = datetime(2026, 11, 28, 12, 0, 0, 500000, tzinfo=UTC)
# A process id no process can have (Linux caps pid_max at 2**22): a crashed "process" of the
# world is seen as dead on this host, the way a killed ``rollover advance`` is.
DEAD_PID = 1 << 22

Chain = tuple[x509.Certificate, ...]
Stamp = tuple[float, int]
NEVER: Stamp = (math.inf, 0)
ALWAYS: Stamp = (-math.inf, 0)


# -- certificates --------------------------------------------------------------------------
def _scalar(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(f"tests.world {tag}".encode()).digest(), "big")


def _ca_key(tag: str) -> ed25519.Ed25519PrivateKey:
    """Ed25519: signatures are deterministic, so every certificate is the same in every run."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(_scalar(tag).to_bytes(32, "big"))


def _leaf_key(tag: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_scalar(tag) % (_P256_ORDER - 1) + 1, ec.SECP256R1())


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _certificate(
    name: str,
    key: Any,
    issuer: tuple[x509.Certificate, Any] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(_scalar(f"serial {name} {issuer_name.rfc4514_string()}") >> 100)
        .not_valid_before(BASE - timedelta(days=300))
        .not_valid_after(BASE + timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False
        )
    return builder.sign(signer, None)


@dataclass(frozen=True)
class Ca:
    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: Any


def _ca(tag: str) -> Ca:
    root_key, intermediate_key = _ca_key(f"root {tag}"), _ca_key(f"intermediate {tag}")
    root = _certificate(f"World Root {tag}", root_key, None, ca=True)
    intermediate = _certificate(
        f"World Intermediate {tag}", intermediate_key, (root, root_key), ca=True
    )
    return Ca(root, intermediate, intermediate_key)


CAS = {ca: _ca(ca) for ca in ("A", "B")}
KEYS = tuple(_leaf_key(f"key{i}") for i in range(4))  # P-256, derived: the same in every run
UNUSABLE = Association(TlsaParams(3, 1, 1), b"\x01" * 31)  # a 31-byte SHA-256: unusable


@cache
def chain_of(key: int, ca: str = "A") -> Chain:
    """Key ``key`` (0 is the one served at first) certified by CA ``ca``, leaf first."""
    pki = CAS[ca]
    leaf = _certificate(HOST, KEYS[key], (pki.intermediate, pki.intermediate_key), ca=False)
    return (leaf, pki.intermediate)


@cache
def _labels() -> dict[bytes, str]:
    return {
        chain_of(k, ca)[0].public_bytes(Encoding.DER): f"key{k}/{ca}"
        for k in range(len(KEYS))
        for ca in CAS
    }


def label(chain: Chain) -> str:
    if not chain:
        return "(nothing)"
    return _labels().get(chain[0].public_bytes(Encoding.DER), chain[0].subject.rfc4514_string())


def records_of(chain: Chain, *params: str) -> frozenset[Association]:
    found: frozenset[Association] = frozenset()
    for p in params:
        found |= associations_for(chain, parse_params(p))
    return found


def short(records: Iterable[Association]) -> str:
    """``{3 1 1 key1/A, 2 0 1 CA-A}``: records named after what they pin, where known."""
    names = []
    for a in sorted(records):
        what = a.hex[:8]
        for k in range(len(KEYS)):
            for ca in CAS:
                chain = chain_of(k, ca)
                if a in associations_for(chain, a.params):
                    what = f"CA-{ca}" if a.params.usage in (0, 2) else f"key{k}"
        if a == UNUSABLE:
            what = "unusable"
        names.append(f"{a.params} {what}")
    return "{" + ", ".join(dict.fromkeys(names)) + "}"


def scratch_dir(prefix: str = "world-") -> Path:
    """A fresh directory on tmpfs when there is one (the ownership store fsyncs every write)."""
    import tempfile

    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def parse_chain(data: bytes | None) -> Chain:
    return tuple(x509.load_pem_x509_certificates(data)) if data else ()


def ok(records: frozenset[Association], chain: Chain) -> bool:
    """OpenSSL's verdict on the whole RRset (no per-parameter-set rule)."""
    return match_chain(records, chain, port=PORT, reference_names=[HOST], now=BASE).ok


class ProcessKilled(BaseException):
    """The simulated process was killed at a crash point (nothing of it runs any more)."""


# -- the record of what happened -----------------------------------------------------------
@dataclass
class Version:
    """One RRset the provider held, served from ``start`` until ``end`` (None: still)."""

    index: int
    records: frozenset[Association]
    ttl: int | None
    origin: str  # "initial", "tool" or "foreign"
    start: Stamp
    configured: tuple[TlsaParams, ...]
    end: Stamp | None = None
    phase: str | None = None  # the phase of the rollover when the tool wrote it
    presented: tuple[Chain, ...] = ()  # what the addresses presented when it was written

    def kept_until(self, negative_ttl: int) -> Stamp:
        """The latest a cache may still hold it (exclusive)."""
        if self.end is None:
            return NEVER
        hold = (self.ttl or 0) if self.records else negative_ttl
        return (self.end[0] + hold, self.end[1])


@dataclass
class Presentation:
    """What one address presented from ``start`` until ``end``; ``caused`` is when the reload
    that made it present this happened (a lagging address catches up later)."""

    address: str
    chain: Chain
    start: Stamp
    caused: Stamp
    end: Stamp | None = None


@dataclass(frozen=True)
class ChangeRecord:
    at: Stamp
    origin: str  # "tool" or "foreign"
    before: frozenset[Association]
    after: frozenset[Association]

    @property
    def added(self) -> frozenset[Association]:
        return self.after - self.before

    @property
    def removed(self) -> frozenset[Association]:
        return self.before - self.after


# -- the clock -----------------------------------------------------------------------------
class FakeClock:
    """Wall clock, lease clock (``monotonic``: the wall clock's epoch seconds) and boot clock.

    ``advance`` is time passing (the world's real time moves with it); ``step_wall`` only moves
    the wall clock (NTP); ``reboot`` starts a new boot with its own boot clock.
    """

    def __init__(self, wall: datetime, on_advance: Callable[[float], None] | None = None) -> None:
        self.wall = wall
        self.boot = 1000.0
        self.boot_number = 0
        self.on_advance = on_advance

    def now(self) -> datetime:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def monotonic(self) -> float:
        return self.wall.timestamp()

    def boottime(self) -> float | None:
        return self.boot

    def boot_id(self) -> str | None:
        return f"boot-{self.boot_number}"

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.boot += seconds
        if self.on_advance is not None:
            self.on_advance(seconds)

    def step_wall(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)

    def reboot(self) -> None:
        self.boot = 5.0
        self.boot_number += 1


# -- the provider ----------------------------------------------------------------------------
class FakeProvider:
    """The DNS provider's API over the world's RRset: compare-and-swap, faults on demand."""

    name = "fake"

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls: Counter[str] = Counter()
        self.receipts: list[Receipt] = []
        self._failures = 0
        self._failing_ops: frozenset[str] = frozenset()
        self._lost = 0

    def fail_next(self, count: int = 1, ops: Iterable[str] = ("read", "apply", "wait")) -> None:
        """The next ``count`` calls among ``ops`` raise ProviderError (nothing applied)."""
        self._failures = count
        self._failing_ops = frozenset(ops)

    def lose_next_reply(self, count: int = 1) -> None:
        """The next ``count`` applies take effect, then raise ProviderError (reply lost)."""
        self._lost = count

    def _call(self, op: str) -> None:
        self.calls[op] += 1
        if self._failures and op in self._failing_ops:
            self._failures -= 1
            raise ProviderError(f"fake provider: {op} failed (injected fault)")

    def zone_for(self, owner: str) -> str:
        self._call("zone_for")
        return ZONE

    def read(self, owner: str) -> TlsaRRset:
        self._call("read")
        if owner != OWNER:
            return TlsaRRset(owner)
        return self.world.rrset()

    def apply(self, change: Change) -> Receipt:
        self._call("apply")
        self.world.require_durable("a provider change")
        if change.owner != OWNER:
            raise ProviderError(f"fake provider: {change.owner} is not in {ZONE}")
        current = self.world.rrset()
        if change.before.records != current.records or (
            current.exists and change.before.ttl != current.ttl
        ):
            raise ConflictError(f"{OWNER}: the RRset changed since it was read")
        after = change.after
        self.world.set_rrset(after.records, after.ttl, "tool")
        receipt = Receipt(self.name, f"change-{len(self.receipts) + 1}", change)
        self.receipts.append(receipt)
        if self._lost:
            self._lost -= 1
            raise ProviderError("fake provider: the connection dropped after the change was sent")
        return receipt

    def wait(self, receipt: Receipt, timeout: float) -> None:
        self._call("wait")

    def history(self, owner: str, since: str | None) -> ZoneHistory:
        """The zone's record of its changes (an IXFR): each RRset version is a zone version."""
        self._call("history")
        versions = self.world.versions
        now = str(versions[-1].index)
        if since is None or owner != OWNER:
            return ZoneHistory(now, ())
        base = int(since)
        steps = tuple(
            (before.records - after.records, after.records - before.records)
            for before, after in zip(versions[base:], versions[base + 1 :], strict=False)
        )
        return ZoneHistory(now, steps)


# -- DNS as the observer sees it -----------------------------------------------------------
class FakeObserver:
    """Authoritative servers and a validating resolver that all serve the provider's RRset now,
    signed and secure: the engine's propagation check passes at once after a change."""

    def __init__(
        self, world: World, servers: tuple[str, ...] = ("ns1", "ns2"), resolvers: int = 1
    ) -> None:
        self.world = world
        self.servers = servers
        self.resolvers = tuple(f"127.0.0.{53 + i}" for i in range(resolvers))
        self._failures = 0
        self.observations = 0  # how often the engine looked

    def fail_next(self, count: int = 1) -> None:
        self._failures = count

    def observe(self, owner: str) -> Observation:
        self.observations += 1
        if self._failures:
            self._failures -= 1
            return Observation(
                owner, None, owner, (), (), (), error="fake: no authoritative server answered"
            )
        version = self.world.current
        exists = bool(version.records)
        ttl = version.ttl if exists else None
        answers = tuple(
            ServerAnswer(
                address=server,
                serial=version.index + 1,
                exists=exists,
                ttl=ttl,
                records=version.records,
                signed=True,
                rrsig_original_ttl=ttl,
                rrsig_expiration=self.world.signatures_expire if exists else None,
                negative_ttl=None if exists else self.world.negative_ttl,
            )
            for server in self.servers
        )
        resolvers = tuple(
            ResolverAnswer(
                address=address,
                state=DnssecState.SECURE,
                ad=True,
                records=version.records,
                ttl=ttl if exists else self.world.negative_ttl,
            )
            for address in self.resolvers
        )
        return Observation(owner, ZONE, owner, (), answers, resolvers)


class Cache:
    """A concrete cache: fetches when what it holds expires, keeps each answer exactly its TTL."""

    def __init__(self, name: str, first_fetch: float) -> None:
        self.name = name
        self.next_fetch = first_fetch
        self.held: Version | None = None
        self.fetches = 0

    def catch_up(self, world: World, until: float) -> None:
        while self.next_fetch < until:
            version = world.served_at(self.next_fetch)
            self.held = version
            self.fetches += 1
            hold = (version.ttl or 0) if version.records else world.negative_ttl
            self.next_fetch += max(1, hold)


# -- the server and its deploy -------------------------------------------------------------
class FakeServer:
    """Addresses presenting a chain each; a lagging address ignores reloads until it catches up."""

    def __init__(self, world: World, addresses: tuple[str, ...]) -> None:
        self.world = world
        self.addresses = addresses
        self.lagging: set[str] = set()
        self.missed: dict[str, Stamp] = {}  # address -> the first reload it missed
        self._probe_failures = 0

    def presenting(self, address: str) -> Chain:
        return self.world.presentation(address).chain

    def reload(self, chain: Chain) -> None:
        at = self.world.stamp()
        for address in self.addresses:
            if address in self.lagging:
                self.missed.setdefault(address, at)
            else:
                self.world.present(address, chain, caused=at)

    def lag(self, address: str) -> None:
        self.lagging.add(address)

    def catch_up(self, address: str) -> None:
        """The address reloads at last (what is installed now), if it missed a reload."""
        self.lagging.discard(address)
        missed = self.missed.pop(address, None)
        if missed is not None:
            self.world.present(address, parse_chain(self.world.deployer.chain), caused=missed)

    def fail_next_probe(self, count: int = 1) -> None:
        self._probe_failures = count

    def live(self) -> LiveChains:
        if self._probe_failures:
            self._probe_failures -= 1
            return LiveChains(error="fake probe: connection refused")
        seen = tuple((f"{a}:{PORT}", self.presenting(a)) for a in self.addresses)
        chains = tuple(dict.fromkeys(chain for _where, chain in seen))
        return LiveChains(chains=chains, seen=seen)


class FakeDeployer:
    """The chain and key files the server reads, in memory; reload hands them to the server."""

    def __init__(self, world: World, chain: bytes, key: bytes) -> None:
        self.world = world
        self.chain: bytes | None = chain
        self.key: bytes | None = key
        self.installs = 0
        self.reloads = 0
        self._failures = 0
        self._failing_ops: frozenset[str] = frozenset()

    def fail_next(self, count: int = 1, ops: Iterable[str] = ("install", "reload")) -> None:
        self._failures = count
        self._failing_ops = frozenset(ops)

    def _call(self, op: str) -> None:
        if self._failures and op in self._failing_ops:
            self._failures -= 1
            raise DeployError(f"fake deploy: {op} failed (injected fault)")

    def deployed(self) -> tuple[bytes | None, bytes | None]:
        return self.chain, self.key

    def matches(self, chain: bytes, key: bytes) -> bool:
        return (self.chain, self.key) == (chain, key)

    def install(self, chain: bytes, key: bytes) -> None:
        self._call("install")
        self.world.require_durable("an install")
        self.chain, self.key = chain, key
        self.installs += 1

    def reload(self) -> None:
        self._call("reload")
        self.world.require_durable("a reload")
        self.reloads += 1
        self.world.server.reload(parse_chain(self.chain))
        self.world.check_downgrade("reload")

    def describe(self) -> str:
        return "memory:/etc/mail/chain.pem"


# -- the state and ownership stores ----------------------------------------------------------
def _undurable(store: Any) -> int:
    """Writes since the store's last durable(): the fake counts them; the SQLite store's
    connection says how many changes it made since its last sync."""
    if isinstance(store, MemoryStateStore):
        return store.undurable
    return int(store._db.total_changes - (store.synced or [0])[0])


@dataclass
class _Row:
    service: str
    active: bool
    version: int
    data: str
    lease_holder: str | None = None
    lease_until: float | None = None


class MemoryStateStore:
    """:class:`rollover.ports.StateStore` in memory: create-if-absent, compare-and-swap on the
    version, leases, history. Rollovers go through the real store's encoding, both ways."""

    def __init__(self) -> None:
        self.rows: dict[int, _Row] = {}
        self.events: list[dict[str, Any]] = []
        self.undurable = 0  # rollover writes since the last durable(): lost on a power cut

    def create(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        if any(r.service == rollover.service and r.active for r in self.rows.values()):
            raise ConflictError(
                f"service {rollover.service} already has a rollover in progress (see rollover "
                "status)"
            )
        row_id = len(self.rows) + 1
        self.rows[row_id] = _Row(rollover.service, True, 1, _encode(rollover))
        self.undurable += 1
        created = _decode(row_id, 1, self.rows[row_id].data)
        for e in events:
            self.append(created, e.at, e.event, e.detail)
        return created

    def current(self, service: str) -> Rollover | None:
        rows = [(row.active, i) for i, row in self.rows.items() if row.service == service]
        if not rows:
            return None
        _active, row_id = max(rows)
        row = self.rows[row_id]
        return _decode(row_id, row.version, row.data)

    def latest(self) -> dict[str, Rollover]:
        found = (self.current(service) for service in {r.service for r in self.rows.values()})
        return {r.service: r for r in found if r is not None}

    def save(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        assert rollover.id is not None
        row = self.rows[rollover.id]
        if row.version != rollover.version:
            raise ConflictError(
                f"rollover of {rollover.service} was changed by another process; nothing was "
                "written"
            )
        active = rollover.phase not in FINAL
        if active and any(
            r.service == rollover.service and r.active and i != rollover.id
            for i, r in self.rows.items()
        ):
            raise ConflictError(
                f"service {rollover.service} has another rollover in progress (see rollover "
                "status); nothing was written"
            )
        row.data = _encode(rollover)
        row.version += 1
        row.active = active
        self.undurable += 1
        for e in events:
            self.append(rollover, e.at, e.event, e.detail)
        return _decode(rollover.id, row.version, row.data)

    def acquire(self, rollover: Rollover, holder: str, now: float, ttl: float) -> bool:
        row = self.rows[rollover.id or 0]
        if row.lease_holder in (None, holder) or (row.lease_until or 0.0) < now:
            row.lease_holder, row.lease_until = holder, now + ttl
            return True
        return False

    def lease_holder(self, rollover: Rollover, now: float) -> str | None:
        row = self.rows.get(rollover.id or 0)
        if row is None or row.lease_holder is None or (row.lease_until or 0.0) < now:
            return None
        return row.lease_holder

    def break_lease(self, rollover: Rollover, holder: str) -> None:
        self.release(rollover, holder)

    def release(self, rollover: Rollover, holder: str) -> None:
        row = self.rows.get(rollover.id or 0)
        if row is not None and row.lease_holder == holder:
            row.lease_holder = row.lease_until = None

    def durable(self) -> None:
        self.undurable = 0

    def append(self, rollover: Rollover, at: datetime, event: str, detail: dict[str, Any]) -> None:
        self.undurable += 1
        self.events.append(
            {
                "rollover": rollover.id,
                "service": rollover.service,
                "at": at.isoformat(),
                "event": event,
                "phase": rollover.phase.value,
                "detail": json.loads(json.dumps(detail, sort_keys=True, default=str)),
            }
        )

    def history(self, service: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in e.items() if k != "service"}
            for e in self.events
            if e["service"] == service
        ]

    def services(self) -> list[str]:
        active = [_decode(i, r.version, r.data) for i, r in self.rows.items() if r.active]

        def order(r: Rollover) -> tuple[str, tuple[str, ...], str]:
            labels = tuple(reversed(r.owner.lower().rstrip(".").split(".")))
            return (r.since.isoformat()[:16], labels, r.service)

        return [r.service for r in sorted(active, key=order)]


# -- processes -------------------------------------------------------------------------------
class _Process:
    def __init__(self, number: int, holder: str) -> None:
        self.number = number
        self.holder = holder
        self.dead = False

    def check(self) -> None:
        if self.dead:
            raise ProcessKilled(f"process {self.number} is dead")


class _Guarded:
    """A dependency as one process sees it: once the process is killed, nothing it still runs
    (``finally`` blocks) reaches the world."""

    def __init__(self, target: Any, process: _Process) -> None:
        self._target = target
        self._process = process

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        process = self._process

        def call(*args: Any, **kwargs: Any) -> Any:
            process.check()
            return attr(*args, **kwargs)

        return call


# -- the world -------------------------------------------------------------------------------
@dataclass
class Failure:
    """One way a sender could have failed."""

    kind: str  # "sender", "downgrade" or "foreign"
    text: str
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@dataclass
class WorldConfig:
    records: frozenset[Association] = frozenset()  # the RRset at first
    owned: frozenset[Association] = frozenset()  # of those, the ones the tool published
    rrset_ttl: int = TTL  # the TTL the RRset has at first
    negative_ttl: int = 300
    configured: tuple[str, ...] = ("3 1 1",)
    addresses: tuple[str, ...] = ("192.0.2.25", "198.51.100.25")
    caches: int = 4
    safety_factor: float = 2.0
    key: int = 0  # what the server presents at first
    ca: str = "A"
    real_store: bool = False  # the SQLite state store in the world's directory, not the fake


@dataclass
class OperationLog:
    steps: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.steps.append(line)


class World:
    """Everything around the engine, in memory (see the module docstring).

    Operations, each a fresh process (RolloverError propagates): :meth:`start` (params, key,
    CA), :meth:`advance` (None when the process was killed, see :meth:`arm_crash`),
    :meth:`abort`, :meth:`rollback`, :meth:`resume`, :meth:`run` (advance until over).
    The world: :meth:`elapse` (time passes), :meth:`step_wall` (NTP step), :meth:`reboot`,
    :meth:`edit` / :meth:`delete` (foreign edits), ``provider.fail_next`` /
    ``provider.lose_next_reply``, ``deployer.fail_next``, ``server.lag`` / ``server.catch_up``
    / ``server.fail_next_probe``, ``observer.fail_next``.
    The verdict: :meth:`sender_failures` (every failure so far, as :class:`Failure`),
    :meth:`held_now`, :meth:`cached`, :meth:`presented_now`, :meth:`foreign_removals`, and
    :meth:`describe` (operations, RRset versions, presentations) for a report.
    """

    def __init__(self, directory: Path, config: WorldConfig | None = None) -> None:
        config = config or WorldConfig()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.real = 0.0
        self._sequence = 0
        self.negative_ttl = config.negative_ttl
        self.signatures_expire: datetime | None = None  # the TLSA RRSIGs' expiration served
        self.safety_factor = config.safety_factor
        self.clock = FakeClock(BASE, self._time_passes)
        self.configured = tuple(parse_params(p) for p in config.configured)
        self.service = self.service_for(self.configured)
        initial = config.records
        self.versions: list[Version] = [
            Version(
                0,
                initial,
                config.rrset_ttl if initial else None,
                "initial",
                ALWAYS,
                self.configured,
            )
        ]
        self.changes: list[ChangeRecord] = []
        self.foreign: set[Association] = set(initial - config.owned)
        self.presentations: list[Presentation] = []
        self.provider = FakeProvider(self)
        self.observer = FakeObserver(self)
        self.server = FakeServer(self, config.addresses)
        first = chain_of(config.key, config.ca)
        for address in config.addresses:
            self.presentations.append(Presentation(address, first, ALWAYS, ALWAYS))
        self.deployer = FakeDeployer(self, pem(*first), key_pem(KEYS[config.key]))
        self.state_dir = self.directory / "state"
        self.store: StateStore = (
            SqliteStateStore(str(self.state_dir)) if config.real_store else MemoryStateStore()
        )
        self.ownership = OwnershipStore(str(self.state_dir))
        if config.owned:
            self.ownership.claim(OWNER, config.owned, SERVICE, BASE - timedelta(days=30))
            self.ownership.confirm(OWNER, config.owned, BASE - timedelta(days=30))
            self.ownership.set_version(OWNER, "0")
            self.ownership.seen(OWNER, initial, BASE - timedelta(days=30), ttl=config.rrset_ttl)
        self.caches = [
            Cache(f"cache{i}", (i + 0.5) * TTL / max(1, config.caches) - TTL)
            for i in range(config.caches)
        ]
        self.log = OperationLog()
        self.out: list[str] = []
        self.violations: list[Failure] = []
        self.reached: Counter[str] = Counter()  # crash points reached
        self.crash_at: set[str] = set()  # armed crash points: each kills the next to reach it
        self.crash_host: str | None = None
        self.killed: Counter[str] = Counter()
        self.last_killed: str | None = None
        self.processes = 0
        self.process: _Process | None = None
        self.rollover_start: frozenset[Association] = initial  # the RRset the rollover began at
        self.rollover_chains: tuple[Chain, ...] = (first,)  # what was presented then
        self.rollover_started: Stamp = ALWAYS
        self._returning = False  # an abort or rollback is under way
        self._verdicts: dict[Any, tuple[str | None, str | None]] = {}
        self._checked: set[tuple[int, int]] = set()
        self._sender: list[Failure] = []
        self._catch_up_caches()

    # -- time ----------------------------------------------------------------------------
    def _time_passes(self, seconds: float) -> None:
        self.real += seconds
        self._catch_up_caches()

    def elapse(self, seconds: float) -> None:
        """Time passes: every clock moves, caches expire and fetch."""
        self.log.add(f"elapse {seconds:g}")
        self.clock.advance(seconds)

    def step_wall(self, seconds: float) -> None:
        """The wall clock is stepped (NTP); no time passes for caches or the boot clock."""
        self.log.add(f"step_wall {seconds:g}")
        self.clock.step_wall(seconds)

    def reboot(self) -> None:
        self.log.add("reboot")
        self.clock.reboot()

    @property
    def wall_offset(self) -> float:
        return (self.clock.wall - BASE).total_seconds() - self.real

    def stamp(self) -> Stamp:
        self._sequence += 1
        return (self.real, self._sequence)

    def _catch_up_caches(self) -> None:
        for c in self.caches:
            c.catch_up(self, self.real)

    def now(self) -> datetime:
        """The true time (what senders' clocks say)."""
        return BASE + timedelta(seconds=self.real)

    # -- DNS -----------------------------------------------------------------------------
    @property
    def current(self) -> Version:
        return self.versions[-1]

    def rrset(self) -> TlsaRRset:
        v = self.current
        return TlsaRRset(OWNER, v.ttl if v.records else None, v.records)

    def served_at(self, real: float) -> Version:
        """The version an authoritative server handed out at ``real`` (the last one made by
        then)."""
        found = self.versions[0]
        for v in self.versions:
            if v.start[0] <= real:
                found = v
        return found

    def set_rrset(self, records: frozenset[Association], ttl: int | None, origin: str) -> None:
        before = self.current
        at = self.stamp()
        before.end = at
        r = self.store.current(SERVICE) if origin == "tool" else None
        self.versions.append(
            Version(
                len(self.versions),
                frozenset(records),
                ttl if records else None,
                origin,
                at,
                self.configured,
                phase=None if r is None else r.phase.value,
                presented=tuple(self.server.presenting(a) for a in self.server.addresses)
                if hasattr(self, "server")
                else (),
            )
        )
        change = ChangeRecord(at, origin, before.records, frozenset(records))
        self.changes.append(change)
        if origin == "tool":
            self._check_foreign(change)
            self.foreign -= change.added
            self.check_downgrade("change")
        else:
            self.foreign |= change.added

    def edit(self, records: Iterable[Association], ttl: int | None = None) -> None:
        """A foreign edit (someone else, out of band): the RRset becomes ``records``."""
        records = frozenset(records)
        self.log.add(f"foreign edit -> {short(records)}")
        self.set_rrset(records, ttl or self.current.ttl or TTL, "foreign")

    def delete(self, records: Iterable[Association]) -> None:
        """A foreign edit deleting ``records``."""
        self.edit(self.current.records - frozenset(records))

    def blink(self, records: Iterable[Association]) -> None:
        """Deleted and put back by hand, no time passing: no read of the tool can see it,
        but a cache may have fetched the RRset in the gap."""
        before, foreign = self.current.records, set(self.foreign)
        self.delete(records)
        self.edit(before)
        self.foreign = foreign  # the same records, still the tool's

    def held_now(self) -> list[Version]:
        """Every version some cache may hold at this instant."""
        now = (self.real, self._sequence)
        return [v for v in self.versions if v.kept_until(self.negative_ttl) > now]

    def cached(self) -> list[tuple[str, frozenset[Association]]]:
        return [(c.name, c.held.records) for c in self.caches if c.held is not None]

    # -- the server ----------------------------------------------------------------------
    def presentation(self, address: str) -> Presentation:
        return next(
            p for p in reversed(self.presentations) if p.address == address and p.end is None
        )

    def present(self, address: str, chain: Chain, *, caused: Stamp) -> None:
        current = self.presentation(address)
        if current.chain == chain:
            return
        at = self.stamp()
        current.end = at
        self.presentations.append(Presentation(address, chain, at, caused))

    def presented_now(self) -> list[tuple[str, Chain]]:
        return [(a, self.server.presenting(a)) for a in self.server.addresses]

    # -- the service and the engine ------------------------------------------------------
    def service_for(self, configured: Iterable[TlsaParams]) -> ServiceConfig:
        return ServiceConfig(
            name=SERVICE,
            host=HOST,
            port=PORT,
            proto="tcp",
            provider="fake",
            records=tuple(configured),
            ttl=TTL,
        )

    def stage(self, key: int, ca: str = "A") -> Staged:
        directory = self.directory / "staged"
        directory.mkdir(exist_ok=True)
        chain_path, key_path = directory / f"key{key}-{ca}.pem", directory / f"key{key}.key"
        chain_path.write_bytes(pem(*chain_of(key, ca)))
        key_path.write_bytes(key_pem(KEYS[key]))
        return load_staged(str(chain_path), str(key_path), None)

    def engine(self) -> Engine:
        """A fresh process running the engine (a CLI invocation, a timer's ``rollover advance``).
        Its lease holder names this host and a process id that is gone once it was killed, or
        the host :meth:`arm_crash` named (another machine: its lease must expire)."""
        holder_host = self.crash_host
        self.processes += 1
        tag = uuid.uuid4().hex[:8]
        if holder_host is None:
            holder = f"{socket.gethostname()}:{DEAD_PID + self.processes}:{tag}"
        else:
            holder = f"{holder_host}:{1000 + self.processes}:{tag}"
        process = _Process(self.processes, holder)
        self.process = process

        def live() -> LiveChains:
            process.check()
            return self.server.live()

        def guarded(target: Any) -> Any:
            return _Guarded(target, process)

        engine = Engine(
            self.service,
            guarded(self.provider),
            guarded(self.store),
            ownership=guarded(self.ownership),
            observer=guarded(self.observer),
            live=live,
            clock=guarded(self.clock),
            state_dir=str(self.state_dir),
            safety_factor=self.safety_factor,
            out=self.out.append,
            deployer=guarded(self.deployer),
            checkpoint=self._checkpoint,
        )
        engine.holder = holder
        return engine

    def _checkpoint(self, name: str) -> None:
        if self.process is not None:
            self.process.check()
        self.reached[name] += 1
        if name in self.crash_at:
            self.crash_at.discard(name)
            self.crash_host = None
            self.killed[name] += 1
            self.last_killed = name
            if self.process is not None:
                self.process.dead = True
            raise ProcessKilled(name)

    def arm_crash(self, point: str, holder_host: str | None = None) -> None:
        """The next process to reach ``point`` is killed there (points armed add up;
        ``holder_host``: the processes run meanwhile are on another host, so a killed one's
        lease must expire)."""
        where = f" on {holder_host}" if holder_host else ""
        self.log.add(f"a process will be killed at {point}{where}")
        self.crash_at.add(point)
        self.crash_host = holder_host

    def rollover(self) -> Rollover | None:
        return self.store.current(SERVICE)

    def active(self) -> Rollover | None:
        r = self.rollover()
        return r if r is not None and r.phase not in FINAL else None

    # -- operations (each a fresh process; RolloverError propagates, a kill returns None) ---
    def start(self, params: Iterable[str], key: int, ca: str = "A") -> Rollover:
        """``rollover start`` with the configuration changed to ``params``; a refused start
        puts the configuration back."""
        configured = tuple(parse_params(p) for p in params)
        previous = self.configured, self.service
        self.configured, self.service = configured, self.service_for(configured)
        self.log.add(f"start {list(params)} key{key}/{ca}")
        chains = tuple(chain for _a, chain in self.presented_now())
        try:
            rollover = self.engine().start(self.stage(key, ca))
        except BaseException:
            self.configured, self.service = previous
            raise
        self.rollover_start = self.current.records
        self.rollover_chains = tuple(dict.fromkeys(chains))
        self.rollover_started = self.stamp()
        return rollover

    def advance(self, *, crash_at: str | None = None) -> AdvanceResult | None:
        """``rollover advance``; None when the process was killed (see :meth:`arm_crash`)."""
        if crash_at is not None:
            self.arm_crash(crash_at)
        self.log.add("advance")
        try:
            return self.engine().advance()
        except ProcessKilled:
            self.log.add(f"  -> killed at {self.last_killed}")
            return None

    def abort(self) -> Rollover:
        self.log.add("abort")
        with self._withdrawing():
            return self.engine().abort()

    def rollback(self) -> Rollover:
        self.log.add("rollback")
        with self._withdrawing():
            return self.engine().rollback()

    def resume(self) -> Rollover:
        self.log.add("resume")
        return self.engine().resume()

    @contextmanager
    def _withdrawing(self) -> Iterator[None]:
        self._returning = True
        try:
            yield
        finally:
            self._returning = False

    def run(self, *, limit: int = 50, step: float = 60.0) -> Rollover | None:
        """Advance, letting time pass between advances, until the rollover is over."""
        for _ in range(limit):
            r = self.rollover()
            if r is None or r.phase in FINAL:
                return r
            self.advance()
            r = self.rollover()
            if r is not None and r.phase not in FINAL:
                self.elapse(step)
        return self.rollover()

    # -- the check -----------------------------------------------------------------------
    def _verdict(
        self, records: frozenset[Association], chain: Chain, configured: tuple[TlsaParams, ...]
    ) -> tuple[str | None, str | None]:
        """(why the rule refuses, why an OpenSSL sender fails): None each when it accepts."""
        key = (records, chain, configured)
        if key not in self._verdicts:
            ctx = Context(PORT, HOST, self.now(), configured)
            rule = authenticates(records, chain, ctx)
            tlsa = [
                dane_sender.Tlsa(a.params.usage, a.params.selector, a.params.mtype, a.data)
                for a in records
            ]
            verdict = dane_sender.authenticate(tlsa, chain, HOST, self.now())
            openssl = verdict.reason if verdict.status == dane_sender.FAILED else None
            self._verdicts[key] = (rule, openssl)
        result: tuple[str | None, str | None] = self._verdicts[key]
        return result

    def _check_senders(self) -> None:
        for v in self.versions:
            if not usable_records(v.records, PORT)[0]:
                continue  # no DANE: opportunistic TLS, nobody fails
            held_until = v.kept_until(self.negative_ttl)
            for i, p in enumerate(self.presentations):
                if (v.index, i) in self._checked:
                    continue
                if p.end is not None and v.end is not None:
                    self._checked.add((v.index, i))  # both over: decided once and for all
                if max(v.start, p.start) >= min(held_until, p.end or NEVER):
                    continue  # never a cache holding it while the address presented that
                if v.origin == "foreign" and p.caused <= v.start:
                    continue  # the test broke a chain already presented: not the tool's doing
                rule, openssl = self._verdict(v.records, p.chain, v.configured)
                if rule is not None and v.configured != self.configured:
                    # The configuration changed since: the rule is the one promised for both.
                    rule = rule if self._verdict(v.records, p.chain, self.configured)[0] else None
                if rule is None and openssl is None:
                    continue
                reason = rule or ""
                if openssl is not None:
                    reason += f"{'; ' if rule else ''}OpenSSL (tests.dane_sender): {openssl}"
                elif rule is not None:
                    reason += " (an OpenSSL sender accepts it: the rule alone refuses)"
                self._checked.add((v.index, i))
                self._sender.append(
                    Failure(
                        "sender",
                        f"{p.address} presents {label(p.chain)} from {_at(p.start)} "
                        f"to {_at(p.end)} while a cache may hold RRset #{v.index} "
                        f"{short(v.records)} ({v.origin}, served {_at(v.start)} to "
                        f"{_at(v.end)}, TTL {v.ttl}): {reason}",
                        {"version": v, "presentation": p, "rule": rule, "openssl": openssl},
                    )
                )

    def sender_failures(self) -> list[Failure]:
        """Every way a sender could have failed so far (see the module docstring)."""
        self._check_senders()
        return [*self._sender, *self.violations]

    def require_durable(self, what: str) -> None:
        """The state invariant every change of the world rests on: what the state says
        about it (the rollover, its history, the ownership claims) already survives a power
        loss, so none can be left unrecorded."""
        undurable = [
            _undurable(self.store),
            self.ownership._db.total_changes - (self.ownership.synced or [0])[0],
        ]
        if any(undurable):
            raise AssertionError(
                f"{what} went out with state writes not yet durable "
                f"({undurable[0]} rollover writes, {undurable[1]} ownership changes)"
            )

    def check_downgrade(self, event: str) -> None:
        """The tool never leaves the name without a usable record while an address presents a
        key that had DANE on (an abort or rollback back to a starting point without DANE
        excepted)."""
        v = self.current
        if event == "change" and v.origin != "tool":
            return
        if usable_records(v.records, PORT)[0]:
            return
        if self._returning and not usable_records(self.rollover_start, PORT)[0]:
            return
        for address, chain in self.presented_now():
            pinned = [
                w.index
                for w in self.versions
                if usable_records(w.records, PORT)[0] and ok(w.records, chain)
            ]
            if pinned:
                self.violations.append(
                    Failure(
                        "downgrade",
                        f"after a {event} at {_at(v.start)} the RRset is {short(v.records)} "
                        f"while {address} presents {label(chain)}, pinned by RRset "
                        f"#{pinned[0]} before",
                        {"event": event, "version": v, "withdrawing": self._returning},
                    )
                )

    def _check_foreign(self, change: ChangeRecord) -> None:
        """A foreign record removed by the tool must have pinned a key presented when the
        rollover started that no address presents any more."""
        presented = [chain for _a, chain in self.presented_now()]
        for a in sorted(change.removed & self.foreign):
            pinned_old = any(ok(frozenset({a}), c) for c in self.rollover_chains)
            in_use = [label(c) for c in presented if ok(frozenset({a}), c)]
            if not pinned_old or in_use:
                why = (
                    f"it still matches {', '.join(dict.fromkeys(in_use))}, presented"
                    if in_use
                    else "it pinned no key presented when the rollover started"
                )
                self.violations.append(
                    Failure(
                        "foreign",
                        f"the tool removed the foreign record {short({a})} at {_at(change.at)}: "
                        f"{why}",
                        {"record": a, "in_use": bool(in_use), "pinned_old": pinned_old},
                    )
                )

    def foreign_removals(self) -> list[tuple[Stamp, Association]]:
        """Every foreign record the tool removed (allowed or not), for the record."""
        out: list[tuple[Stamp, Association]] = []
        foreign = set(self.config.records - self.config.owned)
        for change in self.changes:
            if change.origin == "tool":
                out += [(change.at, a) for a in sorted(change.removed & foreign)]
                foreign -= change.added
            else:
                foreign |= change.added
        return out

    def describe(self) -> str:
        """What happened: the operations, the versions, the presentations."""
        lines = ["operations:", *(f"  {s}" for s in self.log.steps), "RRset versions:"]
        lines += [
            f"  #{v.index} {v.origin:8} {_at(v.start)} to {_at(v.end)} TTL {v.ttl} "
            f"{short(v.records)}" + (f" (written in {v.phase})" if v.phase else "")
            for v in self.versions
        ]
        lines.append("presented:")
        lines += [
            f"  {p.address} {label(p.chain)} {_at(p.start)} to {_at(p.end)}"
            for p in self.presentations
        ]
        r = self.rollover()
        if r is not None:
            lines.append(f"rollover: {r.phase} {r.error or ''}")
        return "\n".join(lines)


def _at(stamp: Stamp | None) -> str:
    if stamp is None:
        return "now"
    if stamp[0] == -math.inf:
        return "always"
    return f"t={stamp[0]:g}s"


__all__ = [
    "BASE",
    "CAS",
    "HOST",
    "KEYS",
    "OWNER",
    "TTL",
    "UNUSABLE",
    "Cache",
    "Failure",
    "FakeClock",
    "FakeDeployer",
    "FakeObserver",
    "FakeProvider",
    "FakeServer",
    "MemoryStateStore",
    "ProcessKilled",
    "Version",
    "World",
    "WorldConfig",
    "chain_of",
    "label",
    "records_of",
    "scratch_dir",
    "short",
]
