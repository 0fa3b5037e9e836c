"""Every edge the engine and the workflows touch, as a Protocol: the one place to read what a
fake (``tests/world.py``) or a new adapter must provide.

    Provider         the DNS provider: read an RRset, compare-and-swap it, wait for it
      Chronicled     optional: the zone's own history of changes (IXFR)
      Batching       optional: several owner names of one zone in one atomic change
      SigningAware   optional: the provider can say whether it signs the zone
      TtlBounded     optional: the provider publishes another TTL than asked (a minimum)
    Observer         what the authoritative servers and validating resolvers serve
    LiveProbe        the chains the server presents now, at every address
    Deployer         where the server reads its chain and key, and its reload
    StateStore       rollovers, their history and their leases
    OwnershipLedger  which records this tool published, since when, and what DNS served
    Clock            wall clock, shared-lease clock, this boot's non-jumping clock
    Checkpoint       called at each point where a crash would leave the world half-changed

The optional provider capabilities are small runtime-checkable Protocols: the engine asks
``isinstance(provider, Batching)``, never ``getattr``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from rollover.core.association import Association
from rollover.core.observation import Observation
from rollover.core.phases import Rollover
from rollover.core.plan import Change, TlsaRRset
from rollover.core.presented import LiveChains
from rollover.tlsrpt.report import Report

Boot = tuple[str | None, float | None]  # (boot id, this boot's clock) at a reading


@dataclass(frozen=True)
class Receipt:
    """What an applied change left behind: enough to wait for it and to log it."""

    provider: str
    change_id: str
    change: Change
    detail: str = ""


@dataclass(frozen=True)
class ZoneHistory:
    """What changed at one owner name since a zone version, from the provider's own record of
    the zone's changes (an IXFR, RFC 1995). ``steps`` is one (removed, added) pair per zone
    change, oldest first; None when the provider cannot tell (its history does not reach back
    that far, or it refused to say)."""

    version: str
    steps: tuple[tuple[frozenset[Association], frozenset[Association]], ...] | None


@runtime_checkable
class Provider(Protocol):
    """Reads the TLSA RRset at an owner name, applies a :class:`~rollover.core.plan.Change`
    atomically *only if* the RRset is still ``change.before`` (compare-and-swap, raising
    :class:`~rollover.errors.ConflictError` otherwise), and waits until it is in effect."""

    name: str

    def zone_for(self, owner: str) -> str:
        """The zone that holds ``owner`` at this provider (absolute, lowercase)."""
        ...

    def read(self, owner: str) -> TlsaRRset:
        """The TLSA RRset at ``owner`` as the provider has it now."""
        ...

    def apply(self, change: Change) -> Receipt:
        """Replace ``change.before`` by ``change.after``; ConflictError if the RRset moved."""
        ...

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """Return once the provider reports the change in effect; ProviderError on timeout."""
        ...


@runtime_checkable
class Chronicled(Protocol):
    """A provider that can say what happened to an RRset between two reads: the "current +
    next" fast path then trusts a publication only if nothing removed it in between."""

    def history(self, owner: str, since: str | None) -> ZoneHistory:
        """Changes at ``owner`` after version ``since`` (None: only the version now)."""
        ...


@runtime_checkable
class Batching(Protocol):
    """A provider that applies changes at several owner names of one zone atomically."""

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """One receipt per change, in order; ConflictError if any RRset moved."""
        ...


@runtime_checkable
class SigningAware(Protocol):
    """A provider that can say whether it signs a zone (Route 53's GetDNSSEC)."""

    def dnssec_signing(self, owner: str) -> bool: ...


@runtime_checkable
class TtlBounded(Protocol):
    """A provider that publishes another TTL than the one asked (deSEC raises a TTL to the
    domain's ``minimum_ttl``): every plan is made, and every wait computed, with this one."""

    def published_ttl(self, owner: str, ttl: int) -> int: ...


class Observer(Protocol):
    """What DNS serves at an owner name: every authoritative server and every resolver."""

    def observe(self, owner: str) -> Observation: ...


LiveProbe = Callable[[], LiveChains]
"""The chains the service presents now, at every address and key algorithm."""


class Deployer(Protocol):
    """Where the server reads its chain and key, and how it is told to read them again."""

    def deployed(self) -> tuple[bytes | None, bytes | None]: ...
    def matches(self, chain: bytes, key: bytes) -> bool: ...
    def install(self, chain: bytes, key: bytes) -> None: ...
    def reload(self) -> None: ...
    def describe(self) -> str: ...


@dataclass(frozen=True)
class HistoryEvent:
    """A history entry that explains a save: written with it, in one transaction."""

    at: datetime
    event: str
    detail: dict[str, Any]


class StateStore(Protocol):
    """Rollovers (compare-and-swap by version, one active per service), their append-only
    history, and leases so that one process at a time acts on a rollover."""

    def create(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover: ...
    def current(self, service: str) -> Rollover | None: ...
    def latest(self) -> dict[str, Rollover]:
        """What :meth:`current` gives for every service that has a rollover, in one read
        (``status`` and ``metrics`` of a fleet: one round trip, not one per service)."""
        ...

    def save(self, rollover: Rollover, events: Sequence[HistoryEvent] = ()) -> Rollover:
        """Compare-and-swap by version; ``events`` go into the history in the same
        transaction, so a process killed after the save never leaves a step unrecorded."""
        ...

    def acquire(self, rollover: Rollover, holder: str, now: float, ttl: float) -> bool: ...
    def release(self, rollover: Rollover, holder: str) -> None: ...
    def lease_holder(self, rollover: Rollover, now: float) -> str | None: ...
    def break_lease(self, rollover: Rollover, holder: str) -> None: ...
    def append(
        self, rollover: Rollover, at: datetime, event: str, detail: dict[str, Any]
    ) -> None: ...
    def history(self, service: str) -> list[dict[str, Any]]: ...
    def services(self) -> list[str]:
        """Services with an active rollover: by the minute they entered their phase, then by
        owner name from the root down (one zone's services together)."""
        ...

    def durable(self) -> None:
        """Every write so far survives a power loss: called before each change outside the
        store (a provider change, a deploy), so none is ever left unrecorded."""
        ...


class OwnershipLedger(Protocol):
    """The records this tool published (it never touches another's), when each was seen
    served, and the RRsets it replaced (their TTLs bound how long caches may hold them)."""

    def owned(self, owner: str) -> frozenset[Association]: ...
    def published(self, owner: str) -> dict[Association, dict[str, Any]]: ...
    def replaced(self, owner: str) -> dict[int, dict[str, Any]]: ...
    def note_served(
        self, owner: str, ttls: set[int | None], now: datetime, boot: Boot = (None, None)
    ) -> None: ...
    def last_rrset(self, owner: str) -> tuple[frozenset[Association], int | None] | None: ...
    def published_at(self, owner: str) -> dict[Association, datetime | None]: ...
    def claim(
        self, owner: str, associations: frozenset[Association], service: str, now: datetime
    ) -> None: ...
    def confirm(
        self,
        owner: str,
        associations: frozenset[Association],
        now: datetime,
        boot: Boot = (None, None),
    ) -> None: ...
    def seen(
        self,
        owner: str,
        present: frozenset[Association],
        now: datetime,
        boot: Boot = (None, None),
        ttl: int | None = None,
    ) -> None: ...
    def version(self, owner: str) -> str | None: ...
    def set_version(self, owner: str, version: str) -> None: ...
    def restart(
        self,
        owner: str,
        associations: frozenset[Association],
        now: datetime,
        boot: Boot = (None, None),
    ) -> None: ...
    def release(self, owner: str, associations: frozenset[Association]) -> None: ...
    def durable(self) -> None:
        """Every claim so far survives a power loss (called before the change it precedes)."""
        ...


class OwnerRow(Protocol):
    """One owner's row, read inside a transaction that keeps others from editing it until
    the transaction ends: ``text`` as read (None: no row), ``write`` it back (None: delete)."""

    text: str | None

    def write(self, text: str | None) -> None: ...


class OwnershipRows(Protocol):
    """Where the rows live: the state database of a backend (SQLite, PostgreSQL). The
    document logic (:class:`OwnershipRecord`) is the same for each."""

    label: str  # names the store in errors (a path, a DSN file; never a secret)

    def read(self, owner: str) -> str | None:
        """The row of ``owner`` as committed (no transaction held after)."""
        ...

    def edit(self, owner: str) -> AbstractContextManager[OwnerRow]:
        """The row of ``owner`` in one transaction, committed when the block ends, rolled
        back if it raises; a concurrent edit of the same owner waits for it (no lost
        update)."""
        ...


Added = Literal["new", "duplicate", "conflict"]  # what storing a TLS-RPT report did


@dataclass(frozen=True)
class StoredReport:
    report: Report
    ingested_at: datetime


class ReportStore(Protocol):
    """Where ingested RFC 8460 reports are kept, de-duplicated by ``report-id``."""

    def add(self, report: Report, ingested_at: datetime) -> Added:
        """Store ``report`` unless its id is stored: ``"new"``, ``"duplicate"`` (the same
        content) or ``"conflict"`` (other content under the id: the first is kept)."""
        ...

    def reports(self, since: datetime | None = None) -> list[StoredReport]:
        """The reports whose date range ends after ``since`` (all when None), by start."""
        ...

    def newest_end(self) -> datetime | None:
        """The latest ``end-datetime`` of a stored report (None: no report)."""
        ...

    def count(self) -> int: ...


class Clock(Protocol):
    """Three readings for three jobs (see :mod:`rollover.edges.clock`)."""

    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...
    def monotonic(self) -> float: ...
    def boottime(self) -> float | None: ...
    def boot_id(self) -> str | None: ...


Checkpoint = Callable[[str], None]
"""Called with a point's name (after-publish, after-install, after-reload, during-cutover,
after-retire) where a crash would leave the world changed and the state not yet written. The
product passes :func:`no_checkpoint`; the crash-campaign tests pass one that dies there."""


def no_checkpoint(point: str) -> None:
    del point
