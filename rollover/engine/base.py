"""What every section of the engine shares: the ports it was handed, its settings, and
the few readings each section needs (the shared chains, this boot, a chain's verdict).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from rollover.config import ServiceConfig
from rollover.core.association import Association
from rollover.core.keys import describe_key
from rollover.core.matching import match_chain, spki_sha256
from rollover.core.phases import (
    CUTOVER_TIMEOUT,
    Rollover,
)
from rollover.core.promise import Context
from rollover.engine.staging import Staged, load_staged, load_staged_chain, read_passphrase
from rollover.errors import PreconditionError, RolloverError
from rollover.ports import (
    Checkpoint,
    Clock,
    Deployer,
    HistoryEvent,
    LiveProbe,
    Observer,
    OwnershipLedger,
    Provider,
    StateStore,
    TtlBounded,
    no_checkpoint,
)

Output = Callable[[str], None]


def node_name() -> str:
    """The name this host goes by in leases: ``ROLLOVER_NODE`` where set (containers or test
    "hosts" that share one host name), else the host name. A lease of a holder of this node
    whose process is gone is taken over at once; one of another node only once it expires."""
    return os.environ.get("ROLLOVER_NODE") or socket.gethostname()


class EngineBase:
    def __init__(
        self,
        service: ServiceConfig,
        provider: Provider,
        store: StateStore,
        *,
        ownership: OwnershipLedger,
        observer: Observer,
        live: LiveProbe,
        clock: Clock,
        state_dir: str,
        safety_factor: float = 2.0,
        out: Output = lambda _line: None,
        cutover_timeout: timedelta = CUTOVER_TIMEOUT,
        wait_timeout: float = 120.0,
        on_event: Callable[[str, Rollover, str], None] | None = None,
        deployer: Deployer | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        shared: LiveProbe | None = None,
        lease_seconds: float | None = None,
        serialized_with: tuple[str, ...] = (),
    ) -> None:
        self.service = service
        self.provider = provider
        self.store = store
        self.ownership = ownership
        self.observer = observer
        self.live = live
        self.clock = clock
        self.state_dir = state_dir
        self.safety_factor = safety_factor
        self.out = out
        self.cutover_timeout = cutover_timeout
        self.wait_timeout = wait_timeout
        self.on_event = on_event
        self.deployer = deployer
        self.checkpoint = checkpoint
        self.shared = shared  # the other hosts sharing the RRset (``tlsa_owner``)
        self.lease_seconds = lease_seconds
        # Services whose rollovers change the same RRset one at a time with this one's (the
        # members of a key-per-member pool).
        self.serialized_with = serialized_with
        self.holder = f"{node_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed: dict[int | None, float] = {}  # rollover id -> last lease write (boot clock)

    def published_ttl(self, owner: str) -> int:
        """The TTL the provider will really publish for the configured one (deSEC raises it
        to the domain's minimum): the one every plan carries and every wait counts."""
        if isinstance(self.provider, TtlBounded):
            return self.provider.published_ttl(owner, self.service.ttl)
        return self.service.ttl

    def _durable(self) -> None:
        """Before a change outside the state (a provider change, a deploy): everything the
        state says about it is on disk first, so a power loss cannot leave it unrecorded."""
        self.store.durable()
        self.ownership.durable()

    # -- start -----------------------------------------------------------------------------
    def steady(self) -> tuple[tuple[x509.Certificate, ...], ...]:
        """The chains of the other hosts that share this RRset: presented all through."""
        if self.shared is None:
            return ()
        seen = self.shared()
        if seen.error is not None:
            raise PreconditionError(
                f"cannot probe a host that shares {self.service.owner} ({seen.error}); "
                "the RRset is theirs too"
            )
        return seen.chains

    def context(self, now: datetime) -> Context:
        service = self.service
        return Context(service.port, service.host, now, tuple(service.records))

    def _event(self, event: str, rollover: Rollover, message: str) -> None:
        if self.on_event is not None:
            self.on_event(event, rollover, message)

    def _boot(self) -> tuple[str | None, float | None]:
        return self.clock.boot_id(), self.clock.boottime()

    def _authenticated(
        self, records: frozenset[Association], chain: tuple[x509.Certificate, ...], now: datetime
    ) -> bool:
        service = self.service
        return match_chain(
            records, chain, port=service.port, reference_names=[service.host], now=now
        ).ok

    def _deployer(self) -> Deployer:
        """The deployer handed in (:func:`rollover.engine.build.build_engine` makes the file
        deployer of a configured ``deploy:``); none means the service cannot be deployed to."""
        if self.deployer is None:
            raise PreconditionError(f"services.{self.service.name}.deploy is not configured")
        return self.deployer

    def staged(self, r: Rollover) -> Staged:
        """The staged chain and key as recorded at start (an encrypted key's passphrase read
        again from the source recorded then)."""
        if self.service.members and not r.staged_key:
            staged = load_staged_chain(r.staged_chain)  # a pool: the keys stay on the members
        else:
            staged = load_staged(r.staged_chain, r.staged_key, read_passphrase(r.passphrase_source))
        if staged.spki_sha256 != r.staged_spki:
            raise PreconditionError(
                f"{r.staged_key}: the staged key changed since the rollover "
                "started; its association is not the one published"
            )
        return staged

    def _record_error(self, rollover: Rollover, error: str) -> Rollover:
        latest = self.store.current(self.service.name) or rollover
        try:
            return self.store.save(
                replace(latest, error=error),
                [HistoryEvent(self.clock.now(), "error", {"error": error})],
            )
        except RolloverError:
            return latest

    def _backup_dir(self, r: Rollover) -> Path:
        return Path(self.state_dir) / "backups" / f"{r.service}-{r.id}"


def leaf_first(label: str, chain_pem: bytes) -> tuple[x509.Certificate, ...]:
    """A PEM bundle as a server presents it, leaf first (empty when it holds none)."""
    from rollover.core.chain import build_chain
    from rollover.core.material import parse_material

    certificates = parse_material(label, chain_pem).certificates
    if not certificates:
        return ()
    return tuple(certificates[i] for i in build_chain(label, certificates).path)


def der_sha256(certificate: x509.Certificate) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def is_staged(r: Rollover, leaf: x509.Certificate) -> bool:
    """The staged leaf itself (the same key under another certificate, a renewal with the key
    reused or a new CA, is not the new chain); the key alone for rollovers from before."""
    if r.staged_cert is not None:
        return der_sha256(leaf) == r.staged_cert
    return spki_sha256(leaf) == r.staged_spki


def key_line(chain: tuple[x509.Certificate, ...]) -> str:
    leaf = chain[0]
    return (
        f"{describe_key(leaf)} key {spki_sha256(leaf)[:16]} in certificate "
        f"{der_sha256(leaf)[:16]} ({leaf.subject.rfc4514_string()})"
    )
