"""Prometheus text-format metrics for node_exporter's textfile collector. Pure rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rollover.core.phases import FINAL, Phase, Rollover


@dataclass(frozen=True)
class ServiceMetrics:
    service: str
    rollover: Rollover | None
    verify_exit: int | None = None
    expiry_days: int | None = None
    signatures_seconds: float | None = None  # until the earliest TLSA or DNSKEY RRSIG expires


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(entries: Sequence[ServiceMetrics], now: datetime) -> str:
    lines = [
        "# HELP rollover_phase The rollover phase of the service (1 for the current one).",
        "# TYPE rollover_phase gauge",
    ]
    for e in entries:
        current = e.rollover.phase if e.rollover else None
        for phase in Phase:
            lines.append(
                f'rollover_phase{{service="{_label(e.service)}",phase="{phase.value}"}} '
                f"{1 if phase == current else 0}"
            )
    lines += [
        "# HELP rollover_seconds_until_next_step Seconds until the next step can happen.",
        "# TYPE rollover_seconds_until_next_step gauge",
    ]
    for e in entries:
        until = e.rollover.waiting_until if e.rollover else None
        seconds = max(0.0, (until - now).total_seconds()) if until else 0.0
        lines.append(
            f'rollover_seconds_until_next_step{{service="{_label(e.service)}"}} {seconds:.0f}'
        )
    lines += [
        "# HELP rollover_seconds_since_last_step Seconds since the last successful step.",
        "# TYPE rollover_seconds_since_last_step gauge",
    ]
    for e in entries:
        if e.rollover is not None:
            seconds = (now - e.rollover.since).total_seconds()
            lines.append(
                f'rollover_seconds_since_last_step{{service="{_label(e.service)}"}} {seconds:.0f}'
            )
    lines += [
        "# HELP rollover_held 1 while an active rollover is held by a fault or a failed step "
        "(see rollover status).",
        "# TYPE rollover_held gauge",
    ]
    for e in entries:
        if e.rollover is not None:
            held = e.rollover.phase not in FINAL and e.rollover.error is not None
            lines.append(f'rollover_held{{service="{_label(e.service)}"}} {int(held)}')
    lines += [
        "# HELP rollover_verify_status Last verify status (0 OK, 1 WARNING, 2 CRITICAL, "
        "3 UNKNOWN).",
        "# TYPE rollover_verify_status gauge",
    ]
    for e in entries:
        if e.verify_exit is not None:
            lines.append(f'rollover_verify_status{{service="{_label(e.service)}"}} {e.verify_exit}')
    lines += [
        "# HELP rollover_signatures_seconds_left Seconds until the earliest DNSSEC signature "
        "of the service's TLSA RRset or its zone's DNSKEY RRset expires (DANE lasts only as "
        "long as they do).",
        "# TYPE rollover_signatures_seconds_left gauge",
    ]
    for e in entries:
        if e.signatures_seconds is not None:
            lines.append(
                f'rollover_signatures_seconds_left{{service="{_label(e.service)}"}} '
                f"{e.signatures_seconds:.0f}"
            )
    lines += [
        "# HELP rollover_certificate_expiry_days Days until the served certificate expires.",
        "# TYPE rollover_certificate_expiry_days gauge",
    ]
    for e in entries:
        if e.expiry_days is not None:
            lines.append(
                f'rollover_certificate_expiry_days{{service="{_label(e.service)}"}} {e.expiry_days}'
            )
    lines += [
        "# HELP rollover_metrics_timestamp_seconds When these metrics were written.",
        "# TYPE rollover_metrics_timestamp_seconds gauge",
        f"rollover_metrics_timestamp_seconds {now.timestamp():.0f}",
    ]
    return "\n".join(lines) + "\n"
