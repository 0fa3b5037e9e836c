"""``rollover start | advance | run | status | abort | rollback | history``."""

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rollover.cli import common

EventHandler = Callable[[str, "Rollover", str], None]

if TYPE_CHECKING:
    from rollover.config import Config, ServiceConfig
    from rollover.core.phases import Rollover
    from rollover.engine.build import SharedEdges
    from rollover.engine.machine import AdvanceResult, Engine
    from rollover.engine.staging import Staged
    from rollover.errors import RolloverError

NEEDS_A_PERSON = 10
HELD_BY_A_FAULT = 9
EVENT_TIMEOUT = 60.0  # seconds an on_event command may take before it is killed

ServiceArg = Annotated[str, typer.Argument(metavar="SERVICE", help="Configured service.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Say what it is waiting for.")]

NEXT_STEP = {
    "publishing": "publish the new associations beside the old ones",
    "propagating": "every authoritative server and resolver serves the new RRset",
    "aging": "caches may have dropped the old RRset (safety_factor x TTL)",
    "deploying": "install the new chain and key, reload the server",
    "cutting_over": "every address presents the new key",
    "retiring": "remove the old associations",
    "verifying": "the final RRset is served everywhere",
}


def register(app: typer.Typer) -> None:
    app.command("start")(start)
    app.command("advance")(advance)
    app.command("run")(run)
    app.command("status")(status)
    app.command("abort")(abort)
    app.command("rollback")(rollback)
    app.command("resume")(resume)
    app.command("history")(history)


def engine_for(
    cfg: "Config",
    name: str,
    state_dir: str | None,
    out: Callable[[str], None],
    shared: "SharedEdges | None" = None,
) -> "Engine":
    """The engine of a configured service, its events sent to the configured on_event."""
    from rollover.engine.build import build_engine

    return build_engine(
        cfg,
        name,
        state_dir=state_dir,
        out=out,
        on_event=_on_event(cfg, cfg.service(name), state_dir),
        checkpoint=common.checkpoint,
        shared=shared,
    )


def _on_event(cfg: "Config", service: "ServiceConfig", state_dir: str | None) -> EventHandler:
    """The configured on_event command, and the fresh next key after a rollover to it."""
    runner = _event_runner(cfg.on_event)

    def handle(event: str, rollover: "Rollover", message: str) -> None:
        if event == "done":
            from rollover.cli.next_cmd import rotate_after_done

            try:
                rotate_after_done(cfg, service, state_dir, rollover.staged_spki)
            except Exception as exc:  # noqa: BLE001 - the rollover itself is done; say why
                common.warn(f"{service.name}: a fresh next key could not be published: {exc}")
        if runner is not None:
            runner(event, rollover, message)

    return handle


def _event_runner(command: list[str] | str | None) -> EventHandler | None:
    """The configured ``on_event`` command, run with ROLLOVER_* variables; its failure is a
    warning, never a reason to stop the rollover."""
    if command is None:
        return None

    def run_event(event: str, rollover: "Rollover", message: str) -> None:
        from rollover.edges.commands import run_command
        from rollover.errors import CommandError

        env = {
            "ROLLOVER_SERVICE": rollover.service,
            "ROLLOVER_EVENT": event,
            "ROLLOVER_PHASE": rollover.phase.value,
            "ROLLOVER_MESSAGE": message,
            "ROLLOVER_OWNER": rollover.owner,
        }
        try:
            run_command(command, label="on_event command", timeout=EVENT_TIMEOUT, env=env)
        except CommandError as exc:
            common.warn(str(exc))

    return run_event


def _say(line: str) -> None:
    common.say(line)


def start(
    service: Annotated[str | None, typer.Argument(metavar="[SERVICE]")] = None,
    cert: Annotated[
        str | None, typer.Option("--cert", help="The new full chain (leaf first).")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="The new private key.")] = None,
    all_services: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every service whose configured staged chain and key hold a new key; their "
            "publications go out as one change per zone.",
        ),
    ] = False,
    allow_insecure: Annotated[
        bool,
        typer.Option("--allow-insecure", help="Roll over even if the zone is not DNSSEC-secure."),
    ] = False,
    allow_expiring: Annotated[
        bool,
        typer.Option(
            "--allow-expiring-signatures",
            help="Start even if the TLSA RRset's signatures expire before the planned end.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    concurrency: common.ConcurrencyOption = None,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
    passphrase_file: common.PassphraseFileOption = None,
    passphrase_env: common.PassphraseEnvOption = common.DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Plan a rollover to a staged chain and key, and publish the new associations.

    Refuses when the key does not belong to the chain, when the zone is not DNSSEC-secure (unless
    --allow-insecure), or when the published records do not match the key the server presents
    now. Then `rollover advance` (from a timer) or `rollover run` carries it on. Without --cert
    and --key, the service's `staged: {chain, key}` is used. With --all, every service whose
    staged key is new (not the deployed one) and that has no rollover in progress starts, and
    the publications of one zone go out as one provider change; exit 0, or the worst error's
    code (each service's error on its own line).

    \b
    Example:
      rollover start mx1 --cert /srv/staging/mx1-fullchain.pem --key /srv/staging/mx1.key
      rollover start --all
    """
    from rollover.engine.staging import passphrase_source
    from rollover.errors import InputError

    cfg = common.load_config(config)
    secret = common.passphrase(passphrase_file, passphrase_env)
    source = passphrase_source(passphrase_file, passphrase_env)
    if all_services:
        if service is not None or cert is not None or key is not None:
            raise InputError("--all takes no SERVICE, --cert or --key (it reads each staged:)")
        raise typer.Exit(
            _start_all(
                cfg,
                state_dir,
                secret,
                source,
                allow_insecure=allow_insecure,
                allow_expiring=allow_expiring,
                dry_run=dry_run,
                concurrency=concurrency or cfg.concurrency,
            )
        )
    if service is None:
        raise InputError("give a SERVICE or --all")
    chain_path, key_path = _staged_paths(cfg.service(service), cert, key)
    engine = engine_for(cfg, service, state_dir, _say)
    staged = _load(cfg.service(service), chain_path, key_path, secret)
    if dry_run:
        _say_plan(
            engine.plan(
                staged,
                allow_insecure=allow_insecure,
                passphrase_source=source,
                allow_expiring=allow_expiring,
            )
        )
        _say_ttl(engine)
        return
    rollover = engine.start(
        staged,
        allow_insecure=allow_insecure,
        passphrase_source=source,
        allow_expiring=allow_expiring,
    )
    _say(f"{service}: rollover {rollover.id} started")
    result = engine.advance()
    _report(result.rollover, verbose=True)


def _load(service: "ServiceConfig", chain: str, key: str, secret: bytes | None) -> "Staged":
    """The staged material; for a pool the chain alone (the key stays on each member)."""
    from rollover.engine.staging import load_staged, load_staged_chain

    if service.members:
        return load_staged_chain(chain)
    return load_staged(chain, key, secret)


def _staged_paths(service: "ServiceConfig", cert: str | None, key: str | None) -> tuple[str, str]:
    from rollover.errors import InputError

    if service.members:
        if key is not None:
            raise InputError(
                f"{service.name} is a pool: give --cert alone (each member's agent holds its "
                "key; it never leaves that host)"
            )
        chain = cert or (service.staged[0] if service.staged else None)
        if chain is None:
            raise InputError(f"give --cert (or configure services.{service.name}.staged)")
        return chain, ""
    if cert is not None and key is not None:
        return cert, key
    if cert is None and key is None and service.staged is not None:
        return service.staged
    raise InputError(
        f"give --cert and --key (or configure services.{service.name}.staged: {{chain, key}})"
    )


def _say_ttl(engine: "Engine") -> None:
    """The TTL the provider will publish when it is not the configured one (deSEC raises a TTL
    to the domain's minimum_ttl): the waits count the published one."""
    published = engine.published_ttl(engine.service.owner)
    if published != engine.service.ttl:
        _say(
            f"  TTL {engine.service.ttl} raised to {published} by {engine.provider.name} "
            f"(its minimum TTL): the waits count {published} s"
        )


def _say_plan(plan: "Rollover") -> None:
    _say(f"{plan.owner}: plan for {plan.service}")
    for label, records in (
        ("old", plan.old),
        ("bridge", plan.bridge),
        ("new", plan.new),
        ("final", plan.kept),
    ):
        for association in sorted(records):
            _say(f"  {label:<6} {association}")
    _say(f"  cache horizon before: {plan.horizon_before} s; safety factor {plan.safety_factor:g}")


def _start_all(
    cfg: "Config",
    state_dir: str | None,
    secret: bytes | None,
    source: str | None,
    *,
    allow_insecure: bool,
    allow_expiring: bool = False,
    dry_run: bool,
    concurrency: int,
) -> int:
    """``start --all``: plan and start every service with new staged material (several at
    once), then one batched tick publishes them, one provider change per zone. Returns the
    exit code."""
    from rollover.core.phases import FINAL
    from rollover.engine.build import SharedEdges
    from rollover.engine.staging import Staged
    from rollover.errors import RolloverError
    from rollover.workflows.fleet import in_parallel

    shared = SharedEdges(cfg, state_dir)
    store = shared.store()
    ready: dict[str, tuple[Engine, Staged]] = {}
    errors: dict[str, RolloverError] = {}
    candidates = 0
    latest = store.latest()
    for name in sorted(cfg.services):
        service = cfg.services[name]
        if service.staged is None or not all(map(_exists, service.staged)) or service.members:
            continue  # a pool starts by name: rollover start SERVICE --cert CHAIN
        active = latest.get(name)
        if active is not None and active.phase not in FINAL:
            continue  # carried on by advance
        candidates += 1
        try:
            staged = _load(service, *service.staged, secret)
            if _deployed_spki(service) != staged.spki_sha256:  # else nothing to roll
                ready[name] = (engine_for(cfg, name, state_dir, _say, shared), staged)
        except RolloverError as exc:
            errors[name] = exc
    started: dict[str, Engine] = {}
    plans: dict[str, Rollover] = {}

    def begin(name: str) -> None:
        engine, staged = ready[name]
        try:
            if dry_run:
                plans[name] = engine.plan(
                    staged,
                    allow_insecure=allow_insecure,
                    passphrase_source=source,
                    allow_expiring=allow_expiring,
                )
                return
            rollover = engine.start(
                staged,
                allow_insecure=allow_insecure,
                passphrase_source=source,
                allow_expiring=allow_expiring,
            )
        except RolloverError as exc:
            errors[name] = exc
            return
        started[name] = engine
        _say(f"{name}: rollover {rollover.id} started")

    in_parallel(ready, begin, concurrency)
    for name in sorted(plans):
        _say_plan(plans[name])
        _say_ttl(ready[name][0])
    worst = 0
    for name in sorted(errors):
        common.warn(f"{name}: {errors[name]}")
        worst = max(worst, errors[name].exit_code)
    if not started:
        if not dry_run and not worst:
            _say(
                "nothing to start: no service has a new staged key"
                if candidates
                else "nothing to start: no service has staged material (services.NAME.staged)"
            )
        return worst
    ordered = {name: started[name] for name in sorted(started)}
    tick = batched_tick(ordered, batched=True, single=False, concurrency=concurrency)
    return max(worst, report_outcomes(tick, verbose=True))


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def _deployed_spki(service: "ServiceConfig") -> str | None:
    """SHA-256 of the deployed key's SPKI, or None (no deploy configured, nothing there)."""
    import hashlib

    from rollover.core.material import parse_material
    from rollover.edges.files import read_source
    from rollover.errors import RolloverError

    if service.deploy is None or not _exists(service.deploy.key):
        return None
    try:
        spki = parse_material(service.deploy.key, read_source(service.deploy.key)).key_spki
    except RolloverError:
        return None
    return None if spki is None else hashlib.sha256(spki).hexdigest()


def advance(
    service: Annotated[str | None, typer.Argument(metavar="[SERVICE]")] = None,
    all_services: Annotated[
        bool, typer.Option("--all", help="Every service with a rollover.")
    ] = False,
    verbose: Verbose = False,
    concurrency: common.ConcurrencyOption = None,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Take every step whose guard holds now, then say what it waits for (with -v).

    Meant for cron or a systemd timer: quiet unless something happened. Exit 0 when it made
    progress or waits normally; 9 when a fault held it at this advance and the one before
    (a server or resolver that cannot be asked or does not validate, the service unreachable
    after the deploy: one line on stderr);
    10 when a rollover failed and needs a person; the error's own code when a step failed (it
    is retried at the next advance).

    With --all: services several at once (concurrency:, default 16), their provider changes
    one per zone, the one longest in its phase first; none is begun once the tick has run
    tick_seconds (default 10): those left are the first of the next tick.
    """
    from rollover.engine.build import SharedEdges
    from rollover.errors import InputError, RolloverError

    cfg = common.load_config(config)
    shared = SharedEdges(cfg, state_dir)
    if all_services:
        names = shared.store().services()
    elif service is not None:
        names = [service]
    else:
        raise InputError("give a SERVICE or --all")
    worst = 0
    engines = {}
    for name in names:
        try:
            engines[name] = engine_for(cfg, name, state_dir, _say, shared)
        except RolloverError as exc:
            if len(names) == 1:
                raise
            common.warn(f"{name}: {exc}")
            worst = max(worst, exc.exit_code)
    results = batched_tick(
        engines,
        batched=len(engines) > 1,
        single=len(names) == 1,
        concurrency=concurrency or cfg.concurrency,
        seconds=(cfg.tick_seconds or None) if all_services else None,
    )
    raise typer.Exit(max(worst, report_outcomes(results, verbose=verbose)))


def report_outcomes(results: "dict[str, AdvanceResult | RolloverError]", *, verbose: bool) -> int:
    """Say what each service's advance came to; the exit code of the worst."""
    from rollover.errors import RolloverError

    worst = 0
    for name, outcome in results.items():
        if isinstance(outcome, RolloverError):
            common.warn(f"{name}: {outcome}")
            worst = max(worst, outcome.exit_code)
        elif outcome.rollover.phase == "failed":
            common.warn(f"{name}: rollover failed: {outcome.rollover.error}")
            worst = max(worst, NEEDS_A_PERSON)
        elif outcome.fault is not None:
            common.warn(f"{name}: {outcome.rollover.phase}: held: {outcome.fault}")
            worst = max(worst, HELD_BY_A_FAULT)
        elif verbose:
            _report(outcome.rollover, verbose=True)
            if not outcome.progressed and outcome.message:
                _say(f"  waiting: {outcome.message}")
    return worst


def batched_tick(
    engines: "dict[str, Engine]",
    *,
    batched: bool,
    single: bool,
    concurrency: int,
    seconds: float | None = None,
) -> "dict[str, AdvanceResult | RolloverError]":
    """:func:`rollover.workflows.fleet.batched_tick`, saying what it does on the terminal."""
    from rollover.workflows.fleet import batched_tick as tick

    return tick(
        engines,
        batched=batched,
        single=single,
        concurrency=concurrency,
        out=_say,
        warn=common.warn,
        seconds=seconds,
    )


def run(
    service: ServiceArg,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Advance in a loop until done or failed, sleeping exactly until the next guard can hold,
    with a live progress line on a terminal (plain lines otherwise)."""
    from rollover.core.phases import FINAL

    cfg = common.load_config(config)
    tty = sys.stdout.isatty()
    last = [""]

    def out(line: str) -> None:
        if tty:
            sys.stdout.write("\r\033[K")
        _say(line)

    engine = engine_for(cfg, service, state_dir, out)
    clock = engine.clock  # the store's clock, as waiting_until is
    while True:
        result = engine.advance()
        rollover = result.rollover
        if rollover.phase in FINAL:
            if tty:
                sys.stdout.write("\r\033[K")
            _report(rollover, verbose=True)
            raise typer.Exit(0 if rollover.phase != "failed" else NEEDS_A_PERSON)
        now = clock.now()
        until = rollover.waiting_until
        delay = 1.0 if until is None else max(0.05, (until - now).total_seconds())
        delay = min(delay, 30.0)
        text = f"{service}: {rollover.phase}: {result.message}"
        if until is not None and delay >= 1:
            text += f" ({int(delay)} s)"
        if tty:
            sys.stdout.write("\r\033[K" + text[:120])
            sys.stdout.flush()
        elif text.split(" (")[0] != last[0]:
            _say(text)
            last[0] = text.split(" (")[0]
        clock.sleep(delay)


def status(
    service: Annotated[str | None, typer.Argument(metavar="[SERVICE]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Phase, since when, the next step and the earliest time it can happen, the associations
    old and new, the last error."""
    import json

    from rollover.state.backends import open_state
    from rollover.state.store import rollover_json

    cfg = common.load_config(config)
    store = open_state(cfg, common.state_dir(cfg, state_dir)).store
    names = [service] if service else sorted(cfg.services)
    latest = {service: store.current(service)} if service else store.latest()
    documents: list[dict[str, Any]] = []
    for name in names:
        rollover = latest.get(name)
        if rollover is None:
            documents.append(
                {
                    "service": name,
                    "phase": None,
                    "waiting_until": None,
                    "old": [],
                    "new": [],
                    "error": None,
                }
            )
            continue
        document = rollover_json(rollover)
        document["next_step"] = NEXT_STEP.get(rollover.phase.value)
        document["warnings"] = _status_warnings(cfg.services.get(name))
        for line in document["warnings"]:
            if not as_json:
                common.warn(f"{name}: {line}")
        pool = cfg.services[name].members if name in cfg.services else ()
        if pool:
            from rollover.core.members import member_states

            states = member_states(
                [m.name for m in pool], store.history(name), rollover.id, rollover.staged_spki
            )
            document["members"] = [s.as_json() for s in states]
        documents.append(document)
        if not as_json:
            _report(rollover, verbose=True)
            for member in document.get("members", []):
                on = ", ".join(
                    f"{a} {'new key' if v == rollover.staged_spki else (v or '?')[:16]}"
                    for a, v in member["presenting"].items()
                )
                _say(
                    f"  member {member['name']}: {member['state']}"
                    f"{' since ' + member['deployed_at'] if member['deployed_at'] else ''}"
                    f"{'; ' + on if on else ''}"
                    f"{'; last seen ' + member['last_seen'] if member['last_seen'] else ''}"
                    f"{'; ' + member['fault'] if member['fault'] else ''}"
                )
    if as_json:
        if service:
            sys.stdout.write(json.dumps(documents[0], indent=2, default=str) + "\n")
        else:
            # One service a line: still one JSON array, and json's C encoder (indent would
            # take the pure-Python one: half a second at thousands of services).
            lines = ",\n".join(json.dumps(d, default=str) for d in documents)
            sys.stdout.write(f"[\n{lines}\n]\n" if documents else "[]\n")
    elif not any(d["phase"] for d in documents):
        _say("no rollovers")


def abort(
    service: ServiceArg,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Before the deploy step: withdraw the new associations and end the rollover."""
    cfg = common.load_config(config)
    engine_for(cfg, service, state_dir, _say).abort()


def rollback(
    service: ServiceArg,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """After the deploy step, while the old associations are still published: redeploy the
    previous chain and key, reload, and withdraw the new associations."""
    cfg = common.load_config(config)
    engine_for(cfg, service, state_dir, _say).rollback()


def resume(
    service: ServiceArg,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Take a failed rollover back to the phase it failed in, once the cause is fixed (the
    server reloaded, an address caught up); the next advance re-checks every guard."""
    cfg = common.load_config(config)
    engine_for(cfg, service, state_dir, _say).resume()


def history(
    service: ServiceArg,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Every transition, provider change and error, oldest first."""
    import json

    from rollover.state.backends import open_state

    cfg = common.load_config(config)
    entries = open_state(cfg, common.state_dir(cfg, state_dir)).store.history(service)
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=2) + "\n")
        return
    for entry in entries:
        detail = entry["detail"]
        text = (
            detail.get("message")
            or detail.get("error")
            or ", ".join(f"{k}={v}" for k, v in detail.items())
        )
        _say(
            f"{entry['at'][:19]}  #{entry['rollover']}  {entry['event']:<16} "
            f"{entry['phase']:<13} {text}"
        )


def _report(rollover: "Rollover", *, verbose: bool) -> None:
    del verbose
    line = f"{rollover.service}: {rollover.phase} since {rollover.since:%Y-%m-%d %H:%M:%S}"
    if rollover.waiting_until is not None:
        line += (
            f"; next: {NEXT_STEP.get(rollover.phase.value, '')}, not before "
            f"{rollover.waiting_until:%H:%M:%S}"
        )
    if rollover.error:
        line += f"; error: {rollover.error}"
    _say(line)


def _status_warnings(service: "ServiceConfig | None") -> list[str]:
    """Offline checks for status: the deployed chain's issuer against the pinned anchors."""
    if service is None or service.deploy is None or not service.trust_anchors:
        return []
    from rollover.core.chain import build_chain
    from rollover.core.material import parse_material
    from rollover.edges.files import read_source
    from rollover.engine.associations import anchor_warning
    from rollover.errors import RolloverError

    try:
        material = parse_material(service.deploy.chain, read_source(service.deploy.chain))
        chain = build_chain(service.deploy.chain, material.certificates)
    except RolloverError as exc:
        return [f"cannot read the deployed chain: {exc}"]
    issuer_index = chain.issuer_index()
    issuer = None if issuer_index is None else chain.certificates[issuer_index]
    warning = anchor_warning(service, issuer)
    return [warning] if warning else []
