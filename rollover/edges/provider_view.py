"""An observer that sees DNS through the provider's own read-back.

For setups where the authoritative servers cannot be asked from where rollover runs (and for
tests against an API mock). It sees one "server", the provider, and no resolver; it cannot see
caches, so the waits rest on the TTLs alone. ``observe_via: dns`` (the default) is stronger.
"""

from __future__ import annotations

from rollover.core.observation import Observation, ServerAnswer
from rollover.errors import ProviderError
from rollover.ports import Provider


class ProviderObserver:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def observe(self, owner: str) -> Observation:
        try:
            zone = self.provider.zone_for(owner)
            rrset = self.provider.read(owner)
        except ProviderError as exc:
            return Observation(owner, None, owner, (), (), (), error=str(exc))
        answer = ServerAnswer(
            f"provider:{self.provider.name}",
            exists=rrset.exists,
            ttl=rrset.ttl,
            records=rrset.records,
        )
        return Observation(owner, zone, owner, (), (answer,), ())
