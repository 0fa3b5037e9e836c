"""The real edges for a configured service, and the engine over them.

The CLI and the lab tests both build engines here; the model and unit tests hand the
:class:`~rollover.engine.machine.Engine` fakes of the same ports instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509

from rollover.config import Config, ServiceConfig
from rollover.core.phases import Rollover
from rollover.core.presented import LiveChains
from rollover.engine.machine import Engine
from rollover.ports import (
    Checkpoint,
    Clock,
    Deployer,
    LiveProbe,
    Observer,
    OwnershipLedger,
    Provider,
    StateStore,
    no_checkpoint,
)

if TYPE_CHECKING:
    from rollover.state.backends import StateBackend

Output = Callable[[str], None]
EventHandler = Callable[[str, Rollover, str], None]


def make_provider(config: Config, name: str) -> Provider:
    """The provider adapter configured under ``providers.<name>``."""
    from rollover import providers

    entry = config.providers[name]
    return providers.create_provider(entry.name, entry.type, entry.settings)


def service_live(config: Config, service: ServiceConfig) -> LiveProbe:
    """A probe of every chain the service presents, with its probe settings (the withdraw guard
    and the rollover's cut-over both use it)."""

    def live() -> LiveChains:
        from rollover.edges.live import live_chains

        return live_chains(
            service.host,
            service.port,
            connect=service.probe.connect,
            starttls=service.probe.starttls,
            resolvers=list(service.resolvers or config.resolvers),
            timeout=service.probe.timeout,
        )

    return live


def services_by_owner(config: Config) -> dict[str, list[ServiceConfig]]:
    """Every configured service by the owner name it publishes at (computed once a process:
    a fleet's tick must not compare every service with every other)."""
    index: dict[str, list[ServiceConfig]] = {}
    for service in config.services.values():
        index.setdefault(service.owner, []).append(service)
    return index


def shared_live(
    config: Config, service: ServiceConfig, by_owner: dict[str, list[ServiceConfig]]
) -> LiveProbe | None:
    """The chains of the other services that publish at the same owner name (``tlsa_owner``,
    ``by_owner`` from :func:`services_by_owner`): the RRset is theirs too, so what they
    present must keep matching all through."""
    neighbours = [o for o in by_owner.get(service.owner, []) if o.name != service.name]
    if not neighbours:
        return None
    probes = [service_live(config, other) for other in neighbours]

    def shared() -> LiveChains:
        chains: list[tuple[x509.Certificate, ...]] = []
        for probe in probes:
            seen = probe()
            if seen.error is not None:
                return LiveChains(error=seen.error)
            chains += [c for c in seen.chains if c not in chains]
        return LiveChains(tuple(chains))

    return shared


def observer_for(config: Config, service: ServiceConfig, provider: Provider) -> Observer:
    """DNS as the authoritative servers and resolvers serve it, or (``observe_via:
    provider``) as the provider reads it back."""
    if service.observe_via == "provider":
        from rollover.edges.provider_view import ProviderObserver

        return ProviderObserver(provider)
    from rollover.edges.observer import DnsObserver

    return DnsObserver(
        resolvers=list(service.resolvers or config.resolvers),
        authoritative=list(service.authoritative),
        timeout=2.0,
    )


class SharedEdges:
    """The edges every engine of one process shares: one state-store connection, one
    ownership ledger and one adapter per configured provider. A tick over thousands of
    services then holds one database connection (three descriptors), not one per service,
    and a provider's connection can serve every service of its zones."""

    def __init__(self, config: Config, state_dir: str | None = None) -> None:
        self.config = config
        self.state_dir = str(state_dir or config.state_dir)
        self._state: StateBackend | None = None
        self._providers: dict[str, Provider] = {}
        self._by_owner: dict[str, list[ServiceConfig]] | None = None

    def by_owner(self) -> dict[str, list[ServiceConfig]]:
        if self._by_owner is None:
            self._by_owner = services_by_owner(self.config)
        return self._by_owner

    def state(self) -> StateBackend:
        """The configured backend (SQLite in the state directory, or PostgreSQL), opened
        once per process."""
        if self._state is None:
            from rollover.state.backends import open_state

            self._state = open_state(self.config, self.state_dir)
        return self._state

    def store(self) -> StateStore:
        return self.state().store

    def clock(self) -> Clock:
        """The store's clock where several hosts share it (PostgreSQL), else this host's."""
        from rollover.edges.clock import SharedClock, SystemClock

        offset = self.state().clock_offset
        return SystemClock() if offset is None else SharedClock(offset)

    def ownership(self) -> OwnershipLedger:
        return self.state().ownership

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = make_provider(self.config, name)
        return self._providers[name]


def _deployer(service: ServiceConfig) -> Deployer | None:
    """The file deploy of a service, or a pool's gate (its members' agents deploy)."""
    from rollover.edges.deploy import FileDeployer
    from rollover.edges.pool import PoolGate

    if service.members:
        return PoolGate(service)
    return None if service.deploy is None else FileDeployer(service.deploy)


def build_engine(
    config: Config,
    name: str,
    *,
    state_dir: str | None = None,
    out: Output = lambda _line: None,
    on_event: EventHandler | None = None,
    checkpoint: Checkpoint = no_checkpoint,
    shared: SharedEdges | None = None,
) -> Engine:
    """The engine of service ``name`` over the real provider, DNS, server, state and clock;
    engines built with one ``shared`` use one store connection and one provider adapter."""

    edges = shared or SharedEdges(config, state_dir)
    service = config.service(name)
    provider = edges.provider(service.provider)
    return Engine(
        service,
        provider,
        edges.store(),
        ownership=edges.ownership(),
        observer=observer_for(config, service, provider),
        live=service_live(config, service),
        clock=edges.clock(),
        state_dir=edges.state_dir,
        safety_factor=config.safety_factor,
        out=out,
        on_event=on_event,
        deployer=_deployer(service),
        checkpoint=checkpoint,
        shared=shared_live(config, service, edges.by_owner()),
        lease_seconds=config.state.lease_seconds,
        cutover_timeout=timedelta(seconds=service.cutover_timeout),
        serialized_with=tuple(
            o.name
            for o in edges.by_owner().get(service.owner, [])
            if o.name != service.name and service.pool == "key-per-member"
        ),
        # Half the lease at most: a provider wait is one call made under it.
        wait_timeout=min(120.0, (config.state.lease_seconds or 240.0) / 2),
    )
