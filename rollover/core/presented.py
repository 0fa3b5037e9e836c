"""What a server presents: the chains each handshake sent, per address, as values.

The TLS probe (:mod:`rollover.edges.probe`) fills these in; the verdicts and the rollover
guards read them. Nothing here opens a connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509


@dataclass(frozen=True)
class PresentedChain:
    """One handshake's result: the chain as sent (leaf first), protocol and cipher."""

    certificates: tuple[bytes, ...]
    protocol: str
    cipher: str
    asked: str  # which key algorithm was asked for: default, ecdsa, rsa


@dataclass(frozen=True)
class ProbeResult:
    address: str
    chains: tuple[PresentedChain, ...] = ()
    error: str | None = None
    starttls_missing: bool = False

    @property
    def distinct_chains(self) -> tuple[PresentedChain, ...]:
        seen: dict[tuple[bytes, ...], PresentedChain] = {}
        for chain in self.chains:
            seen.setdefault(chain.certificates, chain)
        return tuple(seen.values())


@dataclass(frozen=True)
class LiveChains:
    """What the probe saw: the distinct chains presented, or why it could not tell."""

    chains: tuple[tuple[x509.Certificate, ...], ...] = ()
    error: str | None = None
    # Where each chain was seen: ("ADDRESS:PORT (asked)", chain), every address and algorithm.
    seen: tuple[tuple[str, tuple[x509.Certificate, ...]], ...] = ()
