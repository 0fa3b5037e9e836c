"""The TLS-RPT part of `rollover metrics`: what senders reported (RFC 8460) in the last report
window, in Prometheus text format (gauges, as :mod:`rollover.render.metrics` writes them).

The last report window is the :data:`WINDOW` (a day: RFC 8460 section 4.1 reports cover whole
UTC days by default) ending at the newest ``end-datetime`` stored: the reports whose range ends
inside it. Its session counts stay as they are until a newer report arrives, and
``rollover_tlsrpt_newest_report_age_seconds`` says how old they are (a mailbox no longer read
shows as a growing age, not as zero failures). Pure rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rollover.core.tlsrpt_summary import summarize
from rollover.tlsrpt.report import Report

WINDOW = timedelta(days=1)
#: ``result_type`` of failures a policy's summary counts but no ``failure-details`` explains.
UNSPECIFIED = "unspecified"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def last_window(reports: Sequence[Report], window: timedelta = WINDOW) -> list[Report]:
    """The reports whose date range ends within ``window`` of the newest end."""
    if not reports:
        return []
    newest = max(report.end for report in reports)
    return [report for report in reports if report.end > newest - window]


def render_tlsrpt_metrics(
    reports: Sequence[Report], now: datetime, window: timedelta = WINDOW
) -> list[str]:
    """The lines (without the final newline) for ``reports``; only the last window of them is
    counted."""
    counted = last_window(reports, window)
    rows = summarize(counted, {})
    lines = [
        "# HELP rollover_tlsrpt_successful_sessions Successful TLS sessions senders reported "
        "(RFC 8460) in the last report window.",
        "# TYPE rollover_tlsrpt_successful_sessions gauge",
    ]
    for row in rows:
        if row.result_type is None:
            labels = _labels(row.policy_domain, row.policy_type, row.mx_host)
            lines.append(
                f"rollover_tlsrpt_successful_sessions{{{labels}}} {row.successful_sessions}"
            )
    lines += [
        "# HELP rollover_tlsrpt_failed_sessions Failed TLS sessions senders reported (RFC 8460) "
        "in the last report window, per result type.",
        "# TYPE rollover_tlsrpt_failed_sessions gauge",
    ]
    for row in rows:
        if row.result_type is None and not row.failed_sessions:
            continue
        labels = _labels(row.policy_domain, row.policy_type, row.mx_host)
        result_type = _label(row.result_type or UNSPECIFIED)
        lines.append(
            f'rollover_tlsrpt_failed_sessions{{{labels},result_type="{result_type}"}} '
            f"{row.failed_sessions}"
        )
    lines += [
        "# HELP rollover_tlsrpt_reports Reports in the last report window.",
        "# TYPE rollover_tlsrpt_reports gauge",
        f"rollover_tlsrpt_reports {len(counted)}",
        "# HELP rollover_tlsrpt_newest_report_age_seconds Seconds since the end of the newest "
        "report's date range.",
        "# TYPE rollover_tlsrpt_newest_report_age_seconds gauge",
    ]
    if counted:
        newest = max(report.end for report in counted)
        lines.append(
            f"rollover_tlsrpt_newest_report_age_seconds {(now - newest).total_seconds():.0f}"
        )
    return lines


def _labels(policy_domain: str, policy_type: str, mx_host: str | None) -> str:
    return (
        f'policy_domain="{_label(policy_domain)}",policy_type="{_label(policy_type)}",'
        f'mx_host="{_label(mx_host or "")}"'
    )
