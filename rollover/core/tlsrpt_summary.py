"""What senders saw, next to what rollover did: RFC 8460 reports summed per policy domain, policy
type, receiving MX host and result type, each failure beside the rollover events of that host
whose time overlaps the reports' date ranges.

Pure: validated :class:`~rollover.tlsrpt.report.Report` values and the state store's history in,
rows out; no files, sockets or clock.

Rows. Per ``(policy_domain, policy_type, mx_host, result_type)``, over every report given:

- the **successes row** of a policy (``result_type`` None) counts its
  ``total-successful-session-count``; its ``failed_sessions`` are the failures the summary
  counts but no ``failure-details`` entry explains (RFC 8460 section 4.4 makes the details
  optional: Google sends none), usually 0;
- one **failure row** per ``failure-details`` result type counts ``failed-session-count``.

``mx_host`` of a failure row is its ``receiving-mx-hostname``; of the successes row (and of a
failure without one) the policy's ``mx-host`` when it names exactly one host, else, for a
``tlsa`` policy, the policy domain (RFC 8460 section 3: a DANE policy domain is the MX host that
publishes the TLSA records), else None (an MTA-STS policy lists MX patterns, not the host a
session went to).

Correlation. A row with failed sessions lists the rollover events of every service whose
``host`` is the row's ``mx_host`` that overlap the date range of a report the failures came
from: phase intervals (from one transition to the next; a phase not yet left is open-ended)
and the point events that changed what senders see: a deploy, a DNS change by the provider
(``provider-change``), one found applied after the fact (``provider-change-seen``).

Exit code (:func:`exit_code`): 0 no failure, 1 failures of other types only, 2 any of
``tlsa-invalid``, ``dnssec-invalid``, ``dane-required`` (section 4.3.2.1: senders could not use
the DANE policy; the early warning of a rollover or a signing problem hurting mail).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollover.tlsrpt.report import DANE_RESULT_TYPES, PolicyResult, Report

#: History events that are a moment, not a phase: what a sender can notice.
POINT_EVENTS = frozenset({"deploy", "provider-change", "provider-change-seen"})
#: Events whose name is a final phase (rollover.engine.recovery._end), and the final phases.
FINAL_PHASES = frozenset({"done", "aborted", "failed"})

EXIT_OK, EXIT_FAILURES, EXIT_DANE_FAILURES = 0, 1, 2


@dataclass(frozen=True)
class PhaseInterval:
    """A rollover spent ``start`` to ``until`` in ``phase``; ``until`` None: still in it."""

    service: str
    rollover: int | None
    phase: str
    start: datetime
    until: datetime | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Half open: a phase left at the instant a report's range begins is not in it."""
        return self.start <= end and (self.until is None or self.until > start)

    @property
    def begins(self) -> datetime:
        return self.start


@dataclass(frozen=True)
class PointEvent:
    """A deploy or a DNS change at ``at``."""

    service: str
    rollover: int | None
    event: str
    at: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start <= self.at <= end

    @property
    def begins(self) -> datetime:
        return self.at


RolloverEvent = PhaseInterval | PointEvent


@dataclass(frozen=True)
class SummaryRow:
    policy_domain: str
    policy_type: str
    mx_host: str | None
    result_type: str | None  # None: the successes row
    successful_sessions: int
    failed_sessions: int
    organizations: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    rollover_events: tuple[RolloverEvent, ...] = ()

    @property
    def dane_failure(self) -> bool:
        return self.result_type in DANE_RESULT_TYPES and self.failed_sessions > 0


def parse_time(text: str) -> datetime:
    """A history time (``datetime.isoformat``); naive ones are UTC."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def history_events(service: str, history: Sequence[Mapping[str, Any]]) -> list[RolloverEvent]:
    """The phase intervals and point events of ``service`` from its history (``store.history``:
    ``{rollover, at, event, phase, detail}``, oldest first).

    A rollover enters its first phase at ``start``; a ``transition`` (detail ``from``/``to``)
    or a ``resumed`` moves it; a final phase (a transition to it, or an ``aborted``/``failed``
    event) ends it. An interval left open is the phase the rollover is in now.
    """
    events: list[RolloverEvent] = []
    open_phase: dict[int | None, tuple[str, datetime]] = {}

    def move(rollover: int | None, phase: str | None, at: datetime) -> None:
        current = open_phase.get(rollover)
        if current is not None and current[0] == phase:
            return
        if current is not None:
            events.append(PhaseInterval(service, rollover, current[0], current[1], at))
            del open_phase[rollover]
        if phase is not None and phase not in FINAL_PHASES:
            open_phase[rollover] = (phase, at)

    for entry in history:
        rollover = entry.get("rollover")
        rollover_id = rollover if isinstance(rollover, int) else None
        event = str(entry.get("event", ""))
        at = parse_time(str(entry["at"]))
        detail = entry.get("detail")
        detail = detail if isinstance(detail, Mapping) else {}
        if event in POINT_EVENTS:
            events.append(PointEvent(service, rollover_id, event, at))
        elif event in {"start", "resumed"}:
            move(rollover_id, str(entry.get("phase")), at)
        elif event == "transition":
            target = detail.get("to")
            move(rollover_id, str(target) if target is not None else None, at)
        elif event in FINAL_PHASES:
            move(rollover_id, None, at)
    for rollover_id, (phase, since) in open_phase.items():
        events.append(PhaseInterval(service, rollover_id, phase, since, None))
    events.sort(key=lambda e: (e.begins, e.rollover or 0, _order(e)))
    return events


def events_by_host(
    services: Iterable[tuple[str, str, Sequence[Mapping[str, Any]]]],
) -> dict[str, list[RolloverEvent]]:
    """``(service, host, history)`` triples as the events of each host (normalized name)."""
    found: dict[str, list[RolloverEvent]] = {}
    for service, host, history in services:
        found.setdefault(normalize(host), []).extend(history_events(service, history))
    for events in found.values():
        events.sort(key=lambda e: (e.begins, e.service, e.rollover or 0, _order(e)))
    return found


def normalize(host: str) -> str:
    return host.strip().rstrip(".").lower()


def in_domain(name: str, domain: str) -> bool:
    """``name`` is ``domain`` or under it (DANE policy domains are MX host names, which may sit
    under the mail domain)."""
    name, domain = normalize(name), normalize(domain)
    return name == domain or name.endswith("." + domain)


Key = tuple[str, str, str | None, str | None]


@dataclass
class _Tally:
    first: datetime
    last: datetime
    successful: int = 0
    failed: int = 0
    organizations: set[str] = field(default_factory=set)
    failing_ranges: set[tuple[datetime, datetime]] = field(default_factory=set)

    def add(self, report: Report, successful: int, failed: int) -> None:
        self.successful += successful
        self.failed += failed
        self.organizations.add(report.organization_name)
        self.first, self.last = min(self.first, report.start), max(self.last, report.end)
        if failed:
            self.failing_ranges.add((report.start, report.end))


def _add(
    tallies: dict[Key, _Tally], key: Key, report: Report, successful: int, failed: int
) -> None:
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = _Tally(report.start, report.end)
    tally.add(report, successful, failed)


def policy_host(policy: PolicyResult) -> str | None:
    """The MX host the policy's sessions went to, where the report says (module docstring)."""
    if len(policy.mx_hosts) == 1 and "*" not in policy.mx_hosts[0]:
        return policy.mx_hosts[0]
    if policy.policy_type == "tlsa":
        return policy.policy_domain
    return None


def summarize(
    reports: Iterable[Report],
    events: Mapping[str, Sequence[RolloverEvent]],
    *,
    domain: str | None = None,
) -> list[SummaryRow]:
    """The rows of ``reports`` (only policy domains in ``domain`` when given), each with failed
    sessions beside the ``events`` of its MX host (:func:`events_by_host`) that overlap."""
    tallies: dict[Key, _Tally] = {}
    for report in reports:
        for policy in report.policies:
            if domain is not None and not in_domain(policy.policy_domain, domain):
                continue
            host = policy_host(policy)
            base = (policy.policy_domain, policy.policy_type)
            detailed = sum(f.failed_session_count for f in policy.failures)
            unexplained = max(0, policy.failed - detailed)
            _add(tallies, (*base, host, None), report, policy.successful, unexplained)
            for failure in policy.failures:
                key = (*base, failure.receiving_mx_hostname or host, failure.result_type)
                _add(tallies, key, report, 0, failure.failed_session_count)
    rows = [_row(key, tally, events) for key, tally in tallies.items()]
    rows.sort(
        key=lambda r: (
            r.policy_domain,
            r.policy_type,
            r.mx_host or "",
            r.result_type is not None,
            r.result_type or "",
        )
    )
    return rows


def _row(key: Key, tally: _Tally, events: Mapping[str, Sequence[RolloverEvent]]) -> SummaryRow:
    policy_domain, policy_type, mx_host, result_type = key
    overlapping: tuple[RolloverEvent, ...] = ()
    if tally.failed and mx_host is not None:
        overlapping = tuple(
            event
            for event in events.get(normalize(mx_host), ())
            if any(event.overlaps(start, end) for start, end in tally.failing_ranges)
        )
    return SummaryRow(
        policy_domain=policy_domain,
        policy_type=policy_type,
        mx_host=mx_host,
        result_type=result_type,
        successful_sessions=tally.successful,
        failed_sessions=tally.failed,
        organizations=tuple(sorted(tally.organizations)),
        first_seen=tally.first,
        last_seen=tally.last,
        rollover_events=overlapping,
    )


def exit_code(rows: Iterable[SummaryRow]) -> int:
    """0 no failed session; 1 failures of non-DANE types only; 2 any DANE failure."""
    code = EXIT_OK
    for row in rows:
        if row.dane_failure:
            return EXIT_DANE_FAILURES
        if row.failed_sessions:
            code = EXIT_FAILURES
    return code


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as :func:`rollover.tlsrpt.report.report_json` writes."""
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def event_json(event: RolloverEvent) -> dict[str, object]:
    """``{service, rollover, phase, from, until}`` or ``{service, rollover, event, at}``."""
    if isinstance(event, PhaseInterval):
        return {
            "service": event.service,
            "rollover": event.rollover,
            "phase": event.phase,
            "from": format_time(event.start),
            "until": None if event.until is None else format_time(event.until),
        }
    return {
        "service": event.service,
        "rollover": event.rollover,
        "event": event.event,
        "at": format_time(event.at),
    }


def row_json(row: SummaryRow) -> dict[str, object]:
    """One row as ``rollover tlsrpt summary --json`` prints it (the keys are a contract)."""
    return {
        "policy_domain": row.policy_domain,
        "policy_type": row.policy_type,
        "mx_host": row.mx_host,
        "result_type": row.result_type,
        "successful_sessions": row.successful_sessions,
        "failed_sessions": row.failed_sessions,
        "organizations": list(row.organizations),
        "first_seen": format_time(row.first_seen),
        "last_seen": format_time(row.last_seen),
        "rollover_events": [event_json(event) for event in row.rollover_events],
    }


def _order(event: RolloverEvent) -> int:
    return 0 if isinstance(event, PhaseInterval) else 1
