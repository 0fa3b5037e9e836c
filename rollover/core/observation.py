"""What DNS says about a TLSA owner name, and what follows from it. Pure: no sockets, no clock.

The network side (:mod:`rollover.edges.observer`) fills these values in; everything that decides
(DNSSEC state, consistency across authoritative servers, how long caches may hold an old answer,
the verdict) lives here and is tested table-driven.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollover.core.association import Association


class DnssecState(StrEnum):
    """RFC 4033 section 5, as a sending MTA acts on it (RFC 7672 section 2.2)."""

    SECURE = "secure"  # validated: the sender MUST use the TLSA records
    INSECURE = "insecure"  # provably unsigned: opportunistic TLS, records protect nothing
    BOGUS = "bogus"  # validation failed (SERVFAIL): the sender MUST NOT deliver to this host
    INDETERMINATE = "indeterminate"  # signed, but the resolver did not validate it


# Extended DNS Error codes (RFC 8914 section 4) that mean a DNSSEC validation failure.
DNSSEC_EDE_CODES = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 11, 12})


@dataclass(frozen=True)
class ServerAnswer:
    """One authoritative server's view of the TLSA RRset (asked with RD=0, DO=1)."""

    address: str
    serial: int | None = None
    exists: bool = False
    ttl: int | None = None
    records: frozenset[Association] = frozenset()
    signed: bool = False
    rrsig_original_ttl: int | None = None
    rrsig_expiration: datetime | None = None
    negative_ttl: int | None = None
    transport: str = "udp"
    error: str | None = None

    @property
    def cache_ttl(self) -> int:
        """How long a cache may keep what this server hands out (RFC 2308 for absence)."""
        if self.error is not None:
            return 0
        if self.exists:
            return max(self.ttl or 0, self.rrsig_original_ttl or 0)
        return self.negative_ttl or 0


@dataclass(frozen=True)
class ResolverAnswer:
    """A validating resolver's answer (asked with RD=1, DO=1, AD=1)."""

    address: str
    state: DnssecState | None = None
    rcode: str = "NOERROR"
    ad: bool = False
    records: frozenset[Association] = frozenset()
    ttl: int | None = None
    extended_errors: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything seen for one owner name at one moment."""

    owner: str
    zone: str | None
    target: str
    cname_chain: tuple[str, ...]
    authoritative: tuple[ServerAnswer, ...]
    resolvers: tuple[ResolverAnswer, ...]
    error: str | None = None

    @property
    def consistent(self) -> bool:
        return is_consistent(self.authoritative)

    @property
    def records(self) -> frozenset[Association]:
        """The RRset the authoritative servers agree on (empty when they do not)."""
        answered = [a for a in self.authoritative if a.error is None]
        if not answered or not self.consistent:
            return frozenset()
        return answered[0].records

    @property
    def cache_horizon(self) -> int:
        return cache_horizon(self.authoritative)


def servfail_reason(extended_errors: Iterable[str]) -> str:
    """What a validating resolver's SERVFAIL means to a sender, from its Extended DNS Errors
    (RFC 8914): a DNSSEC failure (bogus), or a lookup failure (a lame delegation, an
    unreachable or failing server). Either way a DANE sender defers the mail (RFC 7672 2.1)."""
    errors = tuple(extended_errors)
    detail = f" ({'; '.join(errors)})" if errors else ""
    codes = {_ede_code(e) for e in errors}
    if codes & DNSSEC_EDE_CODES:
        return f"TLSA RRset is bogus{detail}: DANE senders defer mail to this host"
    if errors:
        return (
            f"the TLSA lookup failed at the resolver (SERVFAIL{detail}): not a DNSSEC "
            "failure, but DANE senders defer mail until it answers"
        )
    return (
        "the TLSA lookup failed at the resolver (SERVFAIL): a DNSSEC validation failure, a "
        "lame delegation or a server failure; DANE senders defer mail until it answers"
    )


def _ede_code(text: str) -> int | None:
    """``"EDE 6: DNSSEC Bogus"`` -> 6."""
    head = text.removeprefix("EDE ").split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


def classify(rcode: str, ad: bool, signed_at_authority: bool) -> DnssecState:
    """The DNSSEC state of a resolver's answer.

    SERVFAIL from a validating resolver is bogus; AD=1 is secure; AD=0 is insecure unless the
    authoritative servers sign the data, in which case the resolver did not validate it (no trust
    anchor covers it, or it is not validating): indeterminate, which senders treat as insecure.
    """
    if rcode == "SERVFAIL":
        return DnssecState.BOGUS
    if ad:
        return DnssecState.SECURE
    if signed_at_authority:
        return DnssecState.INDETERMINATE
    return DnssecState.INSECURE


def resolver_lag(
    answer: ResolverAnswer, allowed: set[DnssecState], serves_enough: bool
) -> str | None:
    """Why a validating resolver does not yet count as serving the RRset (None: it does)."""
    if answer.error is not None:
        return answer.error
    if answer.state is DnssecState.BOGUS:
        why = "; ".join(answer.extended_errors)
        return f"bogus: SERVFAIL{', ' + why if why else ''}"
    if answer.state not in allowed:
        return f"{answer.state}, not validated"
    if not serves_enough:
        return "still serves the old RRset"
    return None


def is_consistent(answers: Iterable[ServerAnswer]) -> bool:
    """True when every authoritative server answered and serves the same RRset."""
    answers = list(answers)
    if not answers or any(a.error is not None for a in answers):
        return False
    first = answers[0]
    return all(a.exists == first.exists and a.records == first.records for a in answers)


def disagreements(answers: Iterable[ServerAnswer]) -> list[str]:
    """One line per server that failed, lags behind, or serves another RRset."""
    answers = list(answers)
    lines = [f"{a.address}: {a.error}" for a in answers if a.error is not None]
    answered = [a for a in answers if a.error is None]
    serials = [a.serial for a in answered if a.serial is not None]
    newest = max(serials, default=None)
    if newest is not None:
        lines += [
            f"{a.address}: serial {a.serial} is behind {newest}"
            for a in answered
            if a.serial is not None and a.serial != newest
        ]
    if answered:
        # The RRset the newest server serves is the reference.
        reference = next((a for a in answered if a.serial == newest), answered[0])
        lines += [
            f"{a.address}: serves a different TLSA RRset than {reference.address}"
            for a in answered
            if (a.exists, a.records) != (reference.exists, reference.records)
        ]
    return lines


def cache_horizon(answers: Iterable[ServerAnswer]) -> int:
    """The longest a cache anywhere may still hold an answer these servers gave, in seconds.

    The largest of the RRset TTL and the RRSIG original TTL (a resolver caps the TTL at the
    original TTL, RFC 4035 section 5.3.3, but a server may publish either one higher), or the
    negative-caching TTL (min of SOA MINIMUM and SOA TTL, RFC 2308 section 5) when the RRset did
    not exist. Feed it the answers from before *and* after a change.
    """
    return max((a.cache_ttl for a in answers), default=0)


@dataclass(frozen=True)
class Verdict:
    """Nagios-style outcome of an observation: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""

    exit: int
    status: str
    reasons: tuple[str, ...]


_STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def verdict(observation: Observation) -> Verdict:
    """OK when every authoritative server agrees and every resolver validates it as secure."""
    reasons: list[str] = []
    worst = 0

    def note(level: int, reason: str) -> None:
        nonlocal worst
        worst = max(worst, level)
        reasons.append(reason)

    if observation.error is not None:
        return Verdict(3, "UNKNOWN", (observation.error,))
    auth = observation.authoritative
    resolvers = observation.resolvers
    if all(a.error is not None for a in auth) and all(r.error is not None for r in resolvers):
        return Verdict(3, "UNKNOWN", ("no authoritative server and no resolver answered",))
    for line in disagreements(auth):
        note(2, line)
    if auth and not any(a.exists for a in auth if a.error is None):
        note(1, f"no TLSA records at {observation.target}")
    for r in resolvers:
        if r.error is not None:
            note(1, f"resolver {r.address}: {r.error}")
        elif r.state is DnssecState.BOGUS:
            detail = f" ({'; '.join(r.extended_errors)})" if r.extended_errors else ""
            note(2, f"resolver {r.address}: bogus, SERVFAIL{detail}")
        elif r.state is not DnssecState.SECURE:
            note(1, f"resolver {r.address}: {r.state}")
        elif observation.consistent and r.records != observation.records:
            note(1, f"resolver {r.address}: returns a different RRset (cached older answer?)")
    return Verdict(worst, _STATUS[worst], tuple(reasons))
