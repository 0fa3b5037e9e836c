"""``rollover tlsrpt ingest | summary``: RFC 8460 reports, kept in the state store and read
against the rollovers' history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.config import Config, ServiceConfig
    from rollover.core.tlsrpt_summary import SummaryRow
    from rollover.ports import ReportStore, StateStore
    from rollover.state.backends import StateBackend
    from rollover.tlsrpt.imap import ImapSettings
    from rollover.tlsrpt.report import Report
    from rollover.tlsrpt.sources import Limits

tlsrpt_app = typer.Typer(
    help="TLS-RPT (RFC 8460): what sending MTAs report about their TLS sessions to your MX hosts.",
    no_args_is_help=True,
)
EVENT = "tlsrpt-failure"

#: ``on_event`` for a new report with DANE failures: ``(mx_host, message, variables)``.
FailureHandler = Callable[[str, str, dict[str, str]], None]


def register(app: typer.Typer) -> None:
    app.add_typer(tlsrpt_app, name="tlsrpt")


@dataclass
class IngestCounts:
    read: int = 0
    new: int = 0
    duplicate: int = 0
    warnings: int = 0

    def line(self) -> str:
        return (
            f"tlsrpt: {self.read} read, {self.new} new, {self.duplicate} duplicate, "
            f"{self.warnings} warning{'' if self.warnings == 1 else 's'}"
        )


@tlsrpt_app.command("ingest")
def ingest(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SOURCE...",
            help="Report files (.json, .json.gz), mail messages (.eml), mboxes, Maildirs, or "
            "directories of them.",
            show_default=False,
        ),
    ] = None,
    imap: Annotated[
        bool, typer.Option("--imap", help="Also read the mailbox of the configuration's imap:.")
    ] = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Read RFC 8460 reports and keep them in the state store, once per report-id (ingesting
    again is safe). A report that does not read is a one-line warning naming the file or
    message, never a stop. Processed IMAP messages are flagged or moved, never deleted. A new
    report with tlsa-invalid, dnssec-invalid or dane-required failures is sent to on_event as
    the tlsrpt-failure event.

    Exit: 0 read (warnings allowed); 3 a SOURCE does not exist, or the mailbox cannot be
    used; 4 configuration error; 11 state store error.
    """
    from rollover.errors import InputError
    from rollover.state.backends import open_state
    from rollover.state.tlsrpt_store import report_store
    from rollover.tlsrpt.sources import Limits

    if not sources and not imap:
        raise InputError(
            "tlsrpt ingest: give a SOURCE (file, message, mailbox, directory) or --imap"
        )
    cfg = common.load_config(config)
    settings = imap_settings(cfg) if imap else None
    backend = open_state(cfg, common.state_dir(cfg, state_dir))
    try:
        counts = ingest_reports(
            report_store(backend),
            sources or [],
            settings,
            Limits(),
            common.warn,
            on_failure=failure_handler(cfg, backend.store),
        )
    finally:
        _close(backend)
    common.say(counts.line())


def _close(backend: StateBackend) -> None:
    """The state store's connection closed (both backends have ``close``; the Protocol
    does not say it)."""
    close = getattr(backend.store, "close", None)
    if callable(close):
        close()


def imap_settings(cfg: Config) -> ImapSettings:
    """The configuration's ``imap:`` section (``Config.imap``)."""
    from rollover.errors import ConfigError
    from rollover.tlsrpt.imap import ImapSettings

    settings = getattr(cfg, "imap", None)  # Config.imap: None when the section is absent
    if not isinstance(settings, ImapSettings):
        raise ConfigError(f"{cfg.source}: imap: not configured (--imap reads that mailbox)")
    return settings


def ingest_reports(
    store: ReportStore,
    sources: Sequence[str],
    imap: ImapSettings | None,
    limits: Limits,
    warn: Callable[[str], None],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_failure: FailureHandler | None = None,
) -> IngestCounts:
    """Every report of ``sources``, then of the ``imap`` folder, into ``store``. An IMAP message
    is marked processed once each report it carried is stored (or was already)."""
    from rollover.tlsrpt.imap import fetch_reports
    from rollover.tlsrpt.sources import read_reports

    counts = IngestCounts()

    def counted_warn(line: str) -> None:
        counts.warnings += 1
        warn(line)

    def keep(origin: str, report: Report) -> None:
        from rollover.tlsrpt.report import one_line

        counts.read += 1
        outcome = store.add(report, now())
        if outcome == "new":
            counts.new += 1
            if on_failure is not None:
                _announce(report, on_failure)
            return
        counts.duplicate += 1
        if outcome == "conflict":
            counted_warn(
                f"{origin}: report-id {one_line(report.report_id, 100)} is stored with other "
                "content; the first report kept"
            )

    for origin, report in read_reports(sources, limits, counted_warn):
        keep(origin, report)
    if imap is not None:
        for origin, report, mark in fetch_reports(imap, limits, counted_warn):
            keep(origin, report)
            mark()
    return counts


def _announce(report: Report, on_failure: FailureHandler) -> None:
    """One ``tlsrpt-failure`` per MX host of ``report`` with DANE failures."""
    from rollover.core.tlsrpt_summary import format_time, summarize

    by_host: dict[str, list[SummaryRow]] = {}
    for row in summarize([report], {}):
        if row.dane_failure:
            by_host.setdefault(row.mx_host or row.policy_domain, []).append(row)
    for host, rows in by_host.items():
        kinds = ", ".join(f"{r.failed_sessions} {r.result_type}" for r in rows)
        message = (
            f"{report.organization_name} reported {kinds} sessions to {host} from "
            f"{format_time(report.start)} to {format_time(report.end)} "
            f"(report {report.report_id})"
        )
        variables = {
            "ROLLOVER_TLSRPT_MX_HOST": host,
            "ROLLOVER_TLSRPT_POLICY_DOMAIN": rows[0].policy_domain,
            "ROLLOVER_TLSRPT_RESULT_TYPES": ",".join(sorted({str(r.result_type) for r in rows})),
            "ROLLOVER_TLSRPT_FAILED_SESSIONS": str(sum(r.failed_sessions for r in rows)),
            "ROLLOVER_TLSRPT_ORGANIZATION": report.organization_name,
            "ROLLOVER_TLSRPT_REPORT_ID": report.report_id,
            "ROLLOVER_TLSRPT_START": format_time(report.start),
            "ROLLOVER_TLSRPT_END": format_time(report.end),
        }
        on_failure(host, message, variables)


def failure_handler(cfg: Config, store: StateStore) -> FailureHandler | None:
    """The configured ``on_event`` command for ``tlsrpt-failure``: once per service whose host
    is the MX host (``ROLLOVER_SERVICE`` empty when none is), with the ``ROLLOVER_*`` variables
    of every event and the ``ROLLOVER_TLSRPT_*`` ones. Its failure is a warning."""
    from rollover.core.tlsrpt_summary import normalize

    command = cfg.on_event
    if command is None:
        return None

    def handle(host: str, message: str, variables: dict[str, str]) -> None:
        from rollover.cli.rollover_cmd import EVENT_TIMEOUT
        from rollover.edges.commands import run_command
        from rollover.errors import CommandError

        services: list[ServiceConfig | None] = [
            s for s in cfg.services.values() if normalize(s.host) == normalize(host)
        ]
        for service in services or [None]:
            current = store.current(service.name) if service is not None else None
            env = {
                "ROLLOVER_SERVICE": service.name if service is not None else "",
                "ROLLOVER_EVENT": EVENT,
                "ROLLOVER_PHASE": current.phase.value if current is not None else "",
                "ROLLOVER_MESSAGE": message,
                "ROLLOVER_OWNER": service.owner if service is not None else "",
                **variables,
            }
            try:
                run_command(command, label="on_event command", timeout=EVENT_TIMEOUT, env=env)
            except CommandError as exc:
                common.warn(str(exc))

    return handle


@tlsrpt_app.command("summary")
def summary(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only reports whose date range ends after DATE (YYYY-MM-DD in UTC, or an "
            "RFC 3339 date-time).",
        ),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            metavar="D",
            help="Only policy domains D and under it (DANE policy domains are MX host names).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Per policy domain, policy type, MX host and result type: successful and failed sessions,
    the reporting organisations, the dates; beside each failure, the rollover events of that
    host (phases, deploys, DNS changes) whose time overlaps the reports' date ranges.

    Exit: 0 no failures; 1 failures of non-DANE types only; 2 any tlsa-invalid,
    dnssec-invalid or dane-required; 3 bad --since; 4 configuration error; 11 state store
    error.
    """
    import json
    import sys

    from rollover.core.tlsrpt_summary import exit_code, row_json
    from rollover.state.backends import open_state
    from rollover.state.tlsrpt_store import report_store

    start = parse_since(since)
    cfg = common.load_config(config)
    backend = open_state(cfg, common.state_dir(cfg, state_dir))
    try:
        reports = [stored.report for stored in report_store(backend).reports(since=start)]
        rows = correlate(cfg, backend.store, reports, domain)
    finally:
        _close(backend)
    if as_json:
        sys.stdout.write(json.dumps([row_json(row) for row in rows], indent=2) + "\n")
    else:
        for line in render_rows(rows):
            typer.echo(line)
    raise typer.Exit(exit_code(rows))


def correlate(
    cfg: Config, store: StateStore, reports: Iterable[Report], domain: str | None
) -> list[SummaryRow]:
    """The summary rows, with the history of the services whose host has failures."""
    from rollover.core.tlsrpt_summary import events_by_host, normalize, summarize

    reports = list(reports)
    failing = {
        normalize(row.mx_host)
        for row in summarize(reports, {}, domain=domain)
        if row.failed_sessions and row.mx_host is not None
    }
    services = [s for s in cfg.services.values() if normalize(s.host) in failing]
    events = events_by_host((s.name, s.host, store.history(s.name)) for s in services)
    return summarize(reports, events, domain=domain)


def parse_since(text: str | None) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an RFC 3339 date-time; an InputError otherwise."""
    from rollover.errors import InputError

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--since {text!r}: not a date (YYYY-MM-DD) or an RFC 3339 date-time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def render_rows(rows: Sequence[SummaryRow]) -> list[str]:
    """The text form: one line per row, each overlapping rollover event indented under it."""
    from rollover.core.tlsrpt_summary import PhaseInterval, format_time

    if not rows:
        return ["no TLS-RPT reports stored (for this selection)"]
    lines = []
    for row in rows:
        what = f" {row.result_type}" if row.result_type is not None else ""
        if row.result_type is None:
            counts = f"{row.successful_sessions} successful"
            if row.failed_sessions:
                counts += f", {row.failed_sessions} failed (no details given)"
        else:
            counts = f"{row.failed_sessions} failed"
        lines.append(
            f"{row.policy_domain} {row.policy_type} {row.mx_host or '-'}{what}: {counts}; "
            f"{format_time(row.first_seen)} to {format_time(row.last_seen)}; "
            f"reported by {', '.join(row.organizations)}"
        )
        for event in row.rollover_events:
            where = f"  rollover #{event.rollover} of {event.service}:"
            if isinstance(event, PhaseInterval):
                until = "now" if event.until is None else format_time(event.until)
                lines.append(f"{where} {event.phase} from {format_time(event.start)} to {until}")
            else:
                lines.append(f"{where} {event.event} at {format_time(event.at)}")
    return lines
