"""The one interface every DNS provider adapter implements.

An adapter reads the TLSA RRset at an owner name, applies a :class:`~rollover.plan.Change`
atomically *only if* the RRset is still ``change.before`` (compare-and-swap, raising
:class:`~rollover.errors.ConflictError` otherwise), and waits until the change is in effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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
