"""The deployer of a pool: the coordinator opens the gate, each member's agent deploys.

The coordinator holds no member's private key (it never leaves the member's host) and no
member's files: its deploy step checks the aged invariant and that every member staged the
rollover's key, then moves the rollover to cutting-over. That phase is the open gate: each
agent (``rollover agent --member NAME``) installs its key, reloads and records it, and the
cut-over ends only when every address of every member presents the new key.
"""

from __future__ import annotations

from rollover.config import ServiceConfig


class PoolGate:
    """The :class:`rollover.ports.Deployer` of a service with ``members``."""

    def __init__(self, service: ServiceConfig) -> None:
        self.service = service

    def deployed(self) -> tuple[bytes | None, bytes | None]:
        return None, None  # on the members' hosts, not here (no backup here either)

    def matches(self, chain: bytes, key: bytes) -> bool:
        return False

    def install(self, chain: bytes, key: bytes) -> None:
        """Nothing here: the agents install, once the rollover is cutting over."""

    def reload(self) -> None:
        """Nothing here: each agent reloads its own server."""

    def describe(self) -> str:
        names = ", ".join(m.name for m in self.service.members)
        return f"pool {self.service.name}: members {names}, each through its agent"
