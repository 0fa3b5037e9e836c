"""The one interface every DNS provider adapter implements.

An adapter reads the TLSA RRset at an owner name, applies a :class:`~rollover.plan.Change`
atomically *only if* the RRset is still ``change.before`` (compare-and-swap, raising
:class:`~rollover.errors.ConflictError` otherwise), and waits until the change is in effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rollover.association import Association
from rollover.plan import Change, TlsaRRset


@dataclass(frozen=True)
class Receipt:
    """What an applied change left behind: enough to wait for it and to log it."""

    provider: str
    change_id: str
    change: Change
    detail: str = ""


@runtime_checkable
class Provider(Protocol):
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


@dataclass(frozen=True)
class ZoneHistory:
    """What changed at one owner name since a zone version, from the provider's own record of
    the zone's changes (an IXFR, RFC 1995). ``steps`` is one (removed, added) pair per zone
    change, oldest first; None when the provider cannot tell (its history does not reach back
    that far, or it refused to say)."""

    version: str
    steps: tuple[tuple[frozenset[Association], frozenset[Association]], ...] | None


@runtime_checkable
class Chronicled(Protocol):
    """A provider that can say what happened to an RRset between two reads: the "current +
    next" fast path then trusts a publication only if nothing removed it in between."""

    def history(self, owner: str, since: str | None) -> ZoneHistory:
        """Changes at ``owner`` after version ``since`` (None: only the version now)."""
        ...
