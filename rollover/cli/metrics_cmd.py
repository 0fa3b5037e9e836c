"""``rollover metrics``: Prometheus text-format metrics for the textfile collector."""

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.config import Config, ServiceConfig
    from rollover.core.observation import Observation
    from rollover.state.backends import StateBackend


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)


def metrics(
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here atomically (e.g. "
            "/var/lib/node_exporter/textfile/rollover.prom); default stdout.",
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Probe each service for the verify status and the served certificate's expiry.",
        ),
    ] = True,
    concurrency: common.ConcurrencyOption = None,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Per service: the phase, seconds until the next step can happen, seconds since the last
    step, the verify status (Nagios code) and days until the served certificate expires."""
    from datetime import UTC, datetime

    from rollover.edges.files import write_atomic
    from rollover.render.metrics import ServiceMetrics, render_metrics
    from rollover.state.backends import open_state

    cfg = common.load_config(config)
    now = datetime.now(UTC)
    names = sorted(cfg.services)
    verdicts: dict[str, Verdict] = dict.fromkeys(names, (None, None, None))
    if verify:
        verdicts.update(_verdicts(cfg, names, now, concurrency or cfg.concurrency))
    backend = open_state(cfg, common.state_dir(cfg, state_dir))  # opened after any fork
    store = backend.store
    latest = store.latest()
    entries = [ServiceMetrics(name, latest.get(name), *verdicts[name]) for name in names]
    text = render_metrics(entries, now) + _tlsrpt_metrics(backend, now)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text.encode(), mode=0o644, keep_mode=True)


SERVICES_PER_PROCESS = 250  # below this many services a process of its own costs more than it saves


# verify status, days until the served certificate expires, seconds until the signatures do
Verdict = tuple[int | None, int | None, float | None]


def _verdicts(
    cfg: "Config", names: list[str], now: "datetime", concurrency: int
) -> dict[str, Verdict]:
    """Each service verified, several at once on threads (the probes wait on the network)
    and, for a large fleet, in one process per core: parsing the DNS answers and checking the
    chains is Python's work, which threads cannot spread."""
    import os

    from rollover.workflows.fleet import in_parallel, in_processes

    def judge_all(chunk: list[str]) -> dict[str, Verdict]:
        found: dict[str, Verdict] = {}

        def judge(name: str) -> None:
            found[name] = _verify(cfg, cfg.services[name], now)

        in_parallel(chunk, judge, concurrency)
        return found

    processes = min(os.cpu_count() or 1, max(1, len(names) // SERVICES_PER_PROCESS))
    return in_processes(names, judge_all, processes)


def _verify(cfg: "Config", service: "ServiceConfig", now: "datetime") -> Verdict:
    from rollover.core.verdicts import worst
    from rollover.edges.observer import DnsObserver
    from rollover.edges.probe import TlsProbe, default_starttls
    from rollover.workflows.verification import Verifier, check_pinning

    resolvers = list(service.resolvers or cfg.resolvers)
    verifier = Verifier(
        DnsObserver(
            resolvers=resolvers,
            authoritative=list(service.authoritative),
            timeout=2.0,
            serials=False,  # a sender's verdict reads no serial: one query fewer per server
        ),
        TlsProbe(timeout=service.probe.timeout),
        resolvers,
        timeout=2.0,
    )
    reports = verifier.verify_host(
        service.host,
        port=service.port,
        starttls=service.probe.starttls or default_starttls(service.port),
        connect=list(service.probe.connect),
        reference_names=[service.host],
        now=now,
        warn_days=14,
    )
    reports = check_pinning(service, reports)
    days = [c.days_left for r in reports for c in r.chains if c.days_left is not None]
    return (
        worst([r.exit for r in reports] or [3]),
        min(days) if days else None,
        _signatures_left(verifier.observed, resolvers, now),
    )


_DNSKEY_EXPIRY: dict[str, datetime | None] = {}  # zone -> earliest DNSKEY RRSIG expiration


def _signatures_left(
    observation: "Observation | None", resolvers: list[str], now: "datetime"
) -> float | None:
    """Seconds until the earliest of the TLSA RRset's signatures (as its authoritative
    servers serve them) and its zone's DNSKEY RRset's (asked once per zone and process)
    expires; None when there is nothing signed to tell."""
    if observation is None or observation.zone is None:
        return None
    expirations = [
        a.rrsig_expiration for a in observation.authoritative if a.rrsig_expiration is not None
    ]
    if resolvers:
        zone = observation.zone
        if zone not in _DNSKEY_EXPIRY:
            from rollover.edges.posture_dns import signed_rrset

            view, _, _ = signed_rrset(resolvers[0], zone, "DNSKEY", 2.0)
            _DNSKEY_EXPIRY[zone] = min((r.expiration for r in view.signatures), default=None)
        dnskey = _DNSKEY_EXPIRY[zone]
        if dnskey is not None:
            expirations.append(dnskey)
    if not expirations:
        return None
    return (min(expirations) - now).total_seconds()


def _tlsrpt_metrics(backend: "StateBackend", now: "datetime") -> str:
    """What senders reported (RFC 8460) in the last report window, and its age."""
    from rollover.render.tlsrpt_metrics import WINDOW, render_tlsrpt_metrics
    from rollover.state.tlsrpt_store import report_store

    reports = report_store(backend)
    newest = reports.newest_end()
    window = [] if newest is None else [s.report for s in reports.reports(since=newest - WINDOW)]
    lines = render_tlsrpt_metrics(window, now)
    return "\n".join(lines) + "\n" if lines else ""
