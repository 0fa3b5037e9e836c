"""``rollover agent --member NAME``: what one member of a pool does on its own host.

The coordinator (``advance --all`` on any host) holds no member's key and writes no member's
files. Each member's agent, run from that host's timer, reads its services' rollovers from
the shared state store and:

- while the rollover publishes and ages: checks that the key staged on this host is the
  rollover's and says so (``member-staged``; a different key is a ``member-fault``). The
  coordinator opens the deploy gate only once every member said so;
- once the gate is open (the rollover is cutting over): backs up what this host serves,
  installs the staged chain and key, reloads, probes this member's own addresses and records
  what they present (``member-deployed``);
- when the rollover was rolled back: puts the backup back, reloads (``member-rolled-back``).

The private key never leaves the host; the agent needs no DNS credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rollover.config import Config, MemberConfig, ServiceConfig
from rollover.core.members import member_states
from rollover.core.phases import BEFORE_DEPLOY, Phase, Rollover
from rollover.edges.files import write_atomic
from rollover.engine.staging import Staged, load_staged
from rollover.errors import DeployError, InputError, RolloverError
from rollover.ports import StateStore

Output = Callable[[str], None]


@dataclass(frozen=True)
class AgentOutcome:
    service: str
    action: str  # nothing, staged, deployed, rolled-back, fault
    message: str


def pooled(config: Config, member: str) -> list[tuple[ServiceConfig, MemberConfig]]:
    """The services ``member`` serves, with its entry in each."""
    found = [
        (service, m)
        for service in config.services.values()
        for m in service.members
        if m.name == member
    ]
    if not found:
        known = sorted({m.name for s in config.services.values() for m in s.members})
        raise InputError(
            f"--member {member}: no service lists it (members: {', '.join(known) or 'none'})"
        )
    return found


class Agent:
    """One member's agent over the shared store; ``now`` is the store's clock."""

    def __init__(
        self,
        store: StateStore,
        state_dir: str,
        now: Callable[[], datetime],
        node: str,
        probe: Callable[[ServiceConfig, MemberConfig], dict[str, str | None]],
    ) -> None:
        self.store = store
        self.state_dir = Path(state_dir)
        self.now = now
        self.node = node
        self.probe = probe

    def run(self, service: ServiceConfig, member: MemberConfig) -> AgentOutcome:
        r = self.store.current(service.name)
        if r is None or r.id is None:
            return AgentOutcome(service.name, "nothing", "no rollover")
        state = member_states([member.name], self.store.history(service.name), r.id, r.staged_spki)[
            0
        ]
        try:
            if r.phase in BEFORE_DEPLOY or r.phase == Phase.DEPLOYING:
                if state.state in ("staged", "deployed"):
                    return AgentOutcome(service.name, "nothing", "staged; the gate is shut")
                self._staged(service, r)
                self._record(r, "member-staged", member, {})
                return AgentOutcome(service.name, "staged", "the rollover's key is staged here")
            if r.phase == Phase.CUTTING_OVER:
                if state.state == "deployed":
                    return AgentOutcome(service.name, "nothing", "deployed")
                return self._deploy(service, member, r)
            if r.phase == Phase.ABORTED and r.rolled_back and state.state == "deployed":
                return self._roll_back(service, member, r)
        except RolloverError as exc:
            if state.fault != str(exc):  # said once, not at every run of the timer
                self._record(r, "member-fault", member, {"fault": str(exc)})
            return AgentOutcome(service.name, "fault", str(exc))
        return AgentOutcome(service.name, "nothing", f"rollover {r.phase}")

    def _staged(self, service: ServiceConfig, r: Rollover) -> Staged:
        if service.staged is None:
            raise InputError(
                f"services.{service.name}.staged: not set: where this host's new chain "
                "and key are staged"
            )
        staged = load_staged(*service.staged, None)
        if staged.spki_sha256 != r.staged_spki:
            raise InputError(
                f"{service.staged[1]}: the key staged on this host (SPKI SHA-256 "
                f"{staged.spki_sha256[:16]}) is not the rollover's ({r.staged_spki[:16]})"
            )
        return staged

    def _deployer(self, service: ServiceConfig, member: MemberConfig) -> Any:
        from rollover.edges.deploy import FileDeployer

        deploy = member.deploy or service.deploy
        if deploy is None:  # refused by the configuration already
            raise DeployError(f"member {member.name}: no deploy configured")
        return FileDeployer(deploy)

    def _backup(self, service: ServiceConfig, member: MemberConfig, r: Rollover) -> Path:
        return self.state_dir / "backups" / f"{service.name}-{r.id}-{member.name}"

    def _deploy(self, service: ServiceConfig, member: MemberConfig, r: Rollover) -> AgentOutcome:
        staged = self._staged(service, r)
        deployer = self._deployer(service, member)
        if not deployer.matches(staged.chain, staged.key):
            backup = self._backup(service, member, r)
            if not (backup / "chain.pem").exists():
                chain, key = deployer.deployed()
                if chain is not None and key is not None:
                    backup.mkdir(parents=True, exist_ok=True, mode=0o700)
                    write_atomic(backup / "key.pem", key)
                    write_atomic(backup / "chain.pem", chain)
            deployer.install(staged.chain, staged.key)
        deployer.reload()
        presenting = self.probe(service, member)
        self._record(r, "member-deployed", member, {"presenting": presenting})
        behind = [a for a, spki in presenting.items() if spki != r.staged_spki]
        note = f"; {', '.join(behind)} not yet on it" if behind else ""
        return AgentOutcome(service.name, "deployed", f"deployed and reloaded{note}")

    def _roll_back(self, service: ServiceConfig, member: MemberConfig, r: Rollover) -> AgentOutcome:
        backup = self._backup(service, member, r)
        try:
            chain = (backup / "chain.pem").read_bytes()
            key = (backup / "key.pem").read_bytes()
        except OSError:
            raise DeployError(
                f"member {member.name}: no backup of the previous deployment in {backup}"
            ) from None
        deployer = self._deployer(service, member)
        deployer.install(chain, key)
        deployer.reload()
        presenting = self.probe(service, member)
        self._record(r, "member-rolled-back", member, {"presenting": presenting})
        return AgentOutcome(service.name, "rolled-back", "the previous chain and key are back")

    def _record(
        self, r: Rollover, event: str, member: MemberConfig, detail: dict[str, Any]
    ) -> None:
        self.store.durable()
        self.store.append(
            r,
            self.now(),
            event,
            {"member": member.name, "spki_sha256": r.staged_spki, "node": self.node, **detail},
        )


def probe_member(service: ServiceConfig, member: MemberConfig) -> dict[str, str | None]:
    """SPKI SHA-256 of the leaf each of the member's own addresses presents (None: could not
    be seen), every key algorithm asked for."""
    from cryptography import x509

    from rollover.core.addresses import format_server, parse_server
    from rollover.core.matching import spki_sha256
    from rollover.edges.probe import TlsProbe, default_starttls

    probe = TlsProbe(timeout=service.probe.timeout)
    starttls = service.probe.starttls or default_starttls(service.port)
    seen: dict[str, str | None] = {}
    for text in member.connect:
        address, port = parse_server(text, service.port)
        result = probe.probe(address, port, service.host, starttls)
        leaves = {
            spki_sha256(x509.load_der_x509_certificate(c.certificates[0]))
            for c in result.chains
            if c.certificates
        }
        label = format_server(address, port)
        seen[label] = None if result.error or not leaves else ",".join(sorted(leaves))
    return seen
