"""The TLS-RPT summary (rollover.core.tlsrpt_summary): rows, MX host attribution, the history's
phase intervals and point events, their overlap with report date ranges, the exit code, and the
JSON keys. Table-driven; pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollover.core.tlsrpt_summary import (
    PhaseInterval,
    PointEvent,
    SummaryRow,
    events_by_host,
    exit_code,
    history_events,
    in_domain,
    row_json,
    summarize,
)
from rollover.tlsrpt.report import Report, report_from_json

DAY = datetime(2026, 11, 29, tzinfo=UTC)


def t(hours: float, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hours)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def failure(result_type: str, count: int, mx: str | None = "mx1.example.test") -> dict[str, Any]:
    entry: dict[str, Any] = {"result-type": result_type, "failed-session-count": count}
    if mx is not None:
        entry["receiving-mx-hostname"] = mx
    return entry


def policy(
    domain: str = "mx1.example.test",
    kind: str = "tlsa",
    *,
    mx: object = "mx1.example.test",
    ok: int = 100,
    failed: int | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    described: dict[str, Any] = {"policy-type": kind, "policy-domain": domain}
    if mx is not None:
        described["mx-host"] = mx
    entry: dict[str, Any] = {
        "policy": described,
        "summary": {
            "total-successful-session-count": ok,
            "total-failure-session-count": (
                failed
                if failed is not None
                else sum(d["failed-session-count"] for d in details or [])
            ),
        },
    }
    if details is not None:
        entry["failure-details"] = details
    return entry


def report(
    report_id: str = "r1",
    *policies: dict[str, Any],
    org: str = "Sender A",
    start: datetime = DAY,
    end: datetime | None = None,
) -> Report:
    return report_from_json(
        {
            "organization-name": org,
            "date-range": {
                "start-datetime": iso(start),
                "end-datetime": iso(end or start + timedelta(days=1, seconds=-1)),
            },
            "contact-info": "tlsrpt@sender.example",
            "report-id": report_id,
            "policies": list(policies) or [policy()],
        }
    )


def keyed(rows: list[SummaryRow]) -> dict[tuple[object, ...], tuple[int, int]]:
    return {
        (r.policy_domain, r.policy_type, r.mx_host, r.result_type): (
            r.successful_sessions,
            r.failed_sessions,
        )
        for r in rows
    }


# -- rows ------------------------------------------------------------------------------------
ROW_CASES = [
    pytest.param(
        [report("r1", policy(ok=640))],
        {("mx1.example.test", "tlsa", "mx1.example.test", None): (640, 0)},
        0,
        id="successes-only",
    ),
    pytest.param(
        [report("r1", policy(ok=640, details=[failure("tlsa-invalid", 14)]))],
        {
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (640, 0),
            ("mx1.example.test", "tlsa", "mx1.example.test", "tlsa-invalid"): (0, 14),
        },
        2,
        id="dane-failure",
    ),
    pytest.param(
        [
            report(
                "r1",
                policy(
                    "example.test",
                    "sts",
                    mx=["*.example.test"],
                    ok=50,
                    details=[failure("certificate-expired", 3, "mx2.example.test")],
                ),
            )
        ],
        {
            ("example.test", "sts", None, None): (50, 0),
            ("example.test", "sts", "mx2.example.test", "certificate-expired"): (0, 3),
        },
        1,
        id="sts-patterns-no-host-non-dane-failure",
    ),
    pytest.param(
        [report("r1", policy("example.test", "sts", mx=["mx.example.test"], ok=9, failed=4))],
        {("example.test", "sts", "mx.example.test", None): (9, 4)},
        1,
        id="failures-without-details-on-the-successes-row",
    ),
    pytest.param(
        [
            report(
                "r1",
                policy(mx=None, ok=5, failed=7, details=[failure("dnssec-invalid", 2, None)]),
            )
        ],
        {
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (5, 5),
            ("mx1.example.test", "tlsa", "mx1.example.test", "dnssec-invalid"): (0, 2),
        },
        2,
        id="tlsa-without-mx-host-is-the-policy-domain",
    ),
    pytest.param(
        [
            report("r1", policy(ok=10, details=[failure("tlsa-invalid", 1)]), org="B"),
            report("r2", policy(ok=20, details=[failure("tlsa-invalid", 2)]), org="A"),
            report(
                "r3",
                policy(ok=30, details=[failure("dane-required", 3, "MX1.Example.Test.")]),
                org="A",
            ),
        ],
        {
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (60, 0),
            ("mx1.example.test", "tlsa", "mx1.example.test", "tlsa-invalid"): (0, 3),
            ("mx1.example.test", "tlsa", "mx1.example.test", "dane-required"): (0, 3),
        },
        2,
        id="summed-over-reports",
    ),
    pytest.param(
        [
            report(
                "r1",
                policy(
                    ok=1,
                    details=[failure("starttls-not-supported", 2), failure("x-vendor-thing", 1)],
                ),
            )
        ],
        {
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (1, 0),
            ("mx1.example.test", "tlsa", "mx1.example.test", "starttls-not-supported"): (0, 2),
            ("mx1.example.test", "tlsa", "mx1.example.test", "x-vendor-thing"): (0, 1),
        },
        1,
        id="unregistered-type-is-not-dane",
    ),
    pytest.param(
        [report("r1", policy(ok=1, details=[failure("tlsa-invalid", 0)]))],
        {
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (1, 0),
            ("mx1.example.test", "tlsa", "mx1.example.test", "tlsa-invalid"): (0, 0),
        },
        0,
        id="zero-count-detail-is-no-failure",
    ),
    pytest.param(
        [
            report(
                "r1",
                policy("mx1.example.test", ok=3),
                policy("mx2.example.test", mx="mx2.example.test", ok=4),
                policy("example.test", "no-policy-found", mx=None, ok=5),
            )
        ],
        {
            ("example.test", "no-policy-found", None, None): (5, 0),
            ("mx1.example.test", "tlsa", "mx1.example.test", None): (3, 0),
            ("mx2.example.test", "tlsa", "mx2.example.test", None): (4, 0),
        },
        0,
        id="one-row-per-policy",
    ),
]


@pytest.mark.parametrize(("reports", "expected", "code"), ROW_CASES)
def test_rows_and_exit_code(
    reports: list[Report], expected: dict[tuple[object, ...], tuple[int, int]], code: int
) -> None:
    rows = summarize(reports, {})
    assert keyed(rows) == expected
    assert len(rows) == len(expected)
    assert exit_code(rows) == code


def test_rows_are_ordered_and_carry_organizations_and_dates() -> None:
    rows = summarize(
        [
            report("r2", policy(details=[failure("tlsa-invalid", 1)]), org="Zeta", start=t(24)),
            report("r1", policy(), org="Alpha"),
            report("r3", policy("a.example.test", mx="a.example.test"), org="Alpha"),
        ],
        {},
    )
    assert [(r.policy_domain, r.result_type) for r in rows] == [
        ("a.example.test", None),
        ("mx1.example.test", None),
        ("mx1.example.test", "tlsa-invalid"),
    ]
    successes, failures = rows[1], rows[2]
    assert successes.organizations == ("Alpha", "Zeta")
    assert (successes.first_seen, successes.last_seen) == (DAY, t(48) - timedelta(seconds=1))
    assert failures.organizations == ("Zeta",)
    assert failures.first_seen == t(24)


@pytest.mark.parametrize(
    ("domain", "kept"),
    [
        ("example.test", {"example.test", "mx1.example.test"}),
        ("EXAMPLE.TEST.", {"example.test", "mx1.example.test"}),
        ("mx1.example.test", {"mx1.example.test"}),
        ("other.test", set()),
        ("ample.test", set()),  # a suffix of the name, not a parent domain
    ],
)
def test_domain_filter(domain: str, kept: set[str]) -> None:
    reports = [
        report(
            "r1",
            policy("mx1.example.test"),
            policy("example.test", "sts", mx=["*.example.test"]),
            policy("example.org", "sts", mx=["mx.example.org"]),
        )
    ]
    assert {r.policy_domain for r in summarize(reports, {}, domain=domain)} == kept
    assert in_domain("mx1.example.test", "example.test")
    assert not in_domain("example.test", "mx1.example.test")


@pytest.mark.parametrize(
    ("failed", "code"),
    [
        ([], 0),
        ([(None, 0)], 0),
        ([(None, 3)], 1),
        ([("certificate-host-mismatch", 1)], 1),
        ([("sts-policy-invalid", 1), ("tlsa-invalid", 0)], 1),
        ([("certificate-expired", 5), ("dnssec-invalid", 1)], 2),
        ([("dane-required", 1)], 2),
        ([("tlsa-invalid", 1)], 2),
    ],
)
def test_exit_code_table(failed: list[tuple[str | None, int]], code: int) -> None:
    rows = [
        SummaryRow("d.test", "tlsa", "d.test", kind, 0, count, ("A",), DAY, DAY)
        for kind, count in failed
    ]
    assert exit_code(rows) == code


# -- history --------------------------------------------------------------------------------
def entry(rollover: int, at: datetime, event: str, phase: str, **detail: Any) -> dict[str, Any]:
    return {
        "rollover": rollover,
        "at": at.isoformat(),
        "event": event,
        "phase": phase,
        "detail": detail,
    }


def transition(rollover: int, at: datetime, old: str, new: str) -> dict[str, Any]:
    return entry(rollover, at, "transition", new, **{"from": old, "to": new})


FULL = [
    entry(7, t(1), "start", "publishing"),
    entry(7, t(1.01), "provider-change", "publishing", added=["3 1 1 aa"]),
    transition(7, t(1.02), "publishing", "propagating"),
    transition(7, t(1.5), "propagating", "aging"),
    transition(7, t(2), "aging", "deploying"),
    entry(7, t(2.01), "deploy", "deploying"),
    transition(7, t(2.02), "deploying", "cutting_over"),
    entry(7, t(2.03), "error", "cutting_over", error="probe timed out"),
    transition(7, t(2.5), "cutting_over", "cutting_over"),  # an action within a phase
    transition(7, t(3), "cutting_over", "retiring"),
    entry(7, t(3.01), "provider-change", "retiring", removed=["3 1 1 bb"]),
    transition(7, t(3.02), "retiring", "verifying"),
    transition(7, t(4), "verifying", "done"),
]


def intervals(events: list[Any]) -> list[tuple[object, ...]]:
    return [
        (e.rollover, e.phase, e.start, e.until)
        if isinstance(e, PhaseInterval)
        else (e.rollover, e.event, e.at)
        for e in events
    ]


HISTORY_CASES = [
    pytest.param(
        FULL,
        [
            (7, "publishing", t(1), t(1.02)),
            (7, "provider-change", t(1.01)),
            (7, "propagating", t(1.02), t(1.5)),
            (7, "aging", t(1.5), t(2)),
            (7, "deploying", t(2), t(2.02)),
            (7, "deploy", t(2.01)),
            (7, "cutting_over", t(2.02), t(3)),
            (7, "retiring", t(3), t(3.02)),
            (7, "provider-change", t(3.01)),
            (7, "verifying", t(3.02), t(4)),
        ],
        id="a-whole-rollover",
    ),
    pytest.param(
        FULL[:6],
        [
            (7, "publishing", t(1), t(1.02)),
            (7, "provider-change", t(1.01)),
            (7, "propagating", t(1.02), t(1.5)),
            (7, "aging", t(1.5), t(2)),
            (7, "deploying", t(2), None),
            (7, "deploy", t(2.01)),
        ],
        id="in-progress-is-open-ended",
    ),
    pytest.param(
        [
            entry(3, t(1), "start", "publishing"),
            transition(3, t(2), "publishing", "propagating"),
            entry(3, t(3), "aborted", "aborted", message="aborted before deploy"),
            entry(4, t(5), "start", "publishing"),
        ],
        [
            (3, "publishing", t(1), t(2)),
            (3, "propagating", t(2), t(3)),
            (4, "publishing", t(5), None),
        ],
        id="aborted-then-a-new-rollover",
    ),
    pytest.param(
        [
            entry(5, t(1), "start", "publishing"),
            transition(5, t(2), "publishing", "cutting_over"),
            transition(5, t(3), "cutting_over", "failed"),
            entry(5, t(6), "resumed", "cutting_over", message="resumed by a person"),
            entry(5, t(6.5), "provider-change-seen", "cutting_over"),
            transition(5, t(7), "cutting_over", "retiring"),
        ],
        [
            (5, "publishing", t(1), t(2)),
            (5, "cutting_over", t(2), t(3)),
            (5, "cutting_over", t(6), t(7)),
            (5, "provider-change-seen", t(6.5)),
            (5, "retiring", t(7), None),
        ],
        id="failed-and-resumed",
    ),
]


@pytest.mark.parametrize(("history", "expected"), HISTORY_CASES)
def test_history_events(history: list[dict[str, Any]], expected: list[tuple[object, ...]]) -> None:
    events = history_events("mx1", history)
    assert intervals(events) == expected
    assert {e.service for e in events} <= {"mx1"}


# -- correlation -----------------------------------------------------------------------------
MX1_EVENTS = events_by_host([("mx1", "MX1.example.test.", FULL)])


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(
            DAY,
            t(24) - timedelta(seconds=1),
            [
                (7, "publishing"),
                (7, "provider-change"),
                (7, "propagating"),
                (7, "aging"),
                (7, "deploying"),
                (7, "deploy"),
                (7, "cutting_over"),
                (7, "retiring"),
                (7, "provider-change"),
                (7, "verifying"),
            ],
            id="whole-day",
        ),
        pytest.param(t(2.01), t(2.01), [(7, "deploying"), (7, "deploy")], id="the-deploy-moment"),
        pytest.param(
            t(1.6),
            t(2.015),
            [(7, "aging"), (7, "deploying"), (7, "deploy")],
            id="aging-into-deploy",
        ),
        pytest.param(t(3.5), t(4), [(7, "verifying")], id="up-to-the-end"),
        pytest.param(t(4), t(5), [], id="from-the-instant-it-ended"),
        pytest.param(t(4.5), t(6), [], id="after-the-rollover"),
        pytest.param(t(-24), t(0.5), [], id="the-day-before"),
    ],
)
def test_failures_beside_overlapping_events(
    start: datetime, end: datetime, expected: list[tuple[object, ...]]
) -> None:
    reports = [report("r1", policy(details=[failure("tlsa-invalid", 14)]), start=start, end=end)]
    rows = summarize(reports, MX1_EVENTS)
    failing = [r for r in rows if r.result_type == "tlsa-invalid"]
    assert [
        (e.rollover, getattr(e, "phase", None) or getattr(e, "event", None))
        for e in failing[0].rollover_events
    ] == expected
    successes = [r for r in rows if r.result_type is None]
    assert successes[0].rollover_events == ()  # no failures: nothing to explain


def test_events_only_of_the_failing_host_and_of_failing_reports() -> None:
    events = events_by_host(
        [
            ("mx1", "mx1.example.test", FULL),
            ("mx2", "mx2.example.test", [entry(9, t(2), "start", "publishing")]),
        ]
    )
    reports = [
        # day 1: mx1 fails only in the hour of the deploy; day 2 fine; mx2 fine both days
        report("a", policy(details=[failure("tlsa-invalid", 2)]), start=t(2), end=t(2.5)),
        report("b", policy(details=[failure("tlsa-invalid", 0)]), start=t(2.6), end=t(5)),
        report("c", policy("mx2.example.test", mx="mx2.example.test")),
    ]
    rows = {(r.mx_host, r.result_type): r for r in summarize(reports, events)}
    failing = rows[("mx1.example.test", "tlsa-invalid")]
    assert {e.service for e in failing.rollover_events} == {"mx1"}
    # the retire at t(3) lies only inside report b, which saw no failure
    assert [getattr(e, "phase", getattr(e, "event", "")) for e in failing.rollover_events] == [
        "deploying",
        "deploy",
        "cutting_over",
    ]
    assert rows[("mx2.example.test", None)].rollover_events == ()


def test_json_keys_are_the_contract() -> None:
    rows = summarize(
        [
            report(
                "r1", policy(ok=640, details=[failure("tlsa-invalid", 14)]), start=t(2), end=t(2.02)
            )
        ],
        MX1_EVENTS,
    )
    documents = [row_json(r) for r in rows]
    keys = {
        "policy_domain",
        "policy_type",
        "mx_host",
        "result_type",
        "successful_sessions",
        "failed_sessions",
        "organizations",
        "first_seen",
        "last_seen",
        "rollover_events",
    }
    assert all(set(d) == keys for d in documents)
    assert documents[0]["result_type"] is None
    assert documents[1]["first_seen"] == "2026-11-29T02:00:00Z"
    events = documents[1]["rollover_events"]
    assert isinstance(events, list)
    assert events[0] == {
        "service": "mx1",
        "rollover": 7,
        "phase": "deploying",
        "from": "2026-11-29T02:00:00Z",
        "until": "2026-11-29T02:01:12Z",
    }
    assert {
        "service": "mx1",
        "rollover": 7,
        "event": "deploy",
        "at": "2026-11-29T02:00:36Z",
    } in events
    assert isinstance(PointEvent("s", 1, "deploy", DAY).at, datetime)
