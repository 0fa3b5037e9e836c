"""The whole fleet rollover, as an operator of a large MX fleet runs it (issue 16's targets
printed beside each measurement).

For each N (default 10, 100 and 1,000): N services over 20 DNSSEC-signed zones of a real BIND 9
(RFC 2136 with TSIG), a validating unbound, one STARTTLS server that
presents every host's own key by SNI (reloaded by SIGHUP, like Postfix), each service's current
association published and the next chain and key staged (``services.NAME.staged``), TTL 2 s. Then:

1. one ``rollover start mx0`` (the cost of a single start in a fleet of N);
2. ``rollover start --all`` (every other service, one process, publications batched per zone);
3. ``rollover advance --all`` every second, under ``ulimit -n 1024``, until every rollover is
   done (each tick's wall time, CPU and peak memory);
4. ``status --json``, ``metrics --no-verify`` and ``metrics`` at the end.

Meanwhile a strict DANE sender (tests/dane_sender.py: OpenSSL's DANE semantics, TTL-honouring
caches over the primary and a second validating unbound) checks a sample of the services
continuously; it must record zero failures. The UPDATEs the primary applied are counted from
its log (one ``updating zone`` group per message).

Run: .venv/bin/python benchmarks/bench_fleet_rollover.py [--n 10 --n 100 --n 1000] [--sample 6]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollover.core.association import owner_name, parse_association  # noqa: E402
from rollover.core.phases import FINAL  # noqa: E402
from rollover.state.ownership import OwnershipStore  # noqa: E402
from rollover.state.store import SqliteStateStore  # noqa: E402
from tests.certs import key_pem, make_cert, make_key, pem  # noqa: E402
from tests.dane_sender import StrictSender  # noqa: E402
from tests.lab import PRIMARY, TSIG_NAME, Lab  # noqa: E402

ZONES = 20
TTL = 2


@dataclass
class Run:
    """One process: wall and CPU seconds, peak resident memory in MiB, exit code, stderr."""

    wall: float
    cpu: float
    rss: float
    code: int
    err: str


def timed(args: list[str], config: Path, *, limit: int | None = 1024) -> Run:
    argv = [sys.executable, "-m", "rollover", *args, "--config", str(config)]
    profile = os.environ.get("BENCH_PROFILE")  # a directory: py-spy's raw stacks per process
    if limit is not None:  # prlimit (util-linux), not preexec_fn: the sender's threads run
        argv = ["prlimit", f"--nofile={limit}:{limit}", "--", *argv]
    if profile:
        out_file = Path(profile) / f"{args[0]}-{time.monotonic_ns()}.txt"
        argv = [
            "py-spy",
            "record",
            "-r",
            os.environ.get("BENCH_PROFILE_RATE", "250"),
            *([] if os.environ.get("BENCH_PROFILE_CPU") else ["--idle"]),
            "--subprocesses",
            "-f",
            "raw",
            "-o",
            str(out_file),
            "--",
            *argv,
        ]
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        began = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return Run(
        wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode, text
    )


@dataclass
class Fleet:
    n: int
    directory: Path
    names: list[str] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # name -> "3 1 1 <hex>"
    records: dict[str, str] = field(default_factory=dict)  # zone -> zone-file lines

    def build(self) -> None:
        """Keys, certificates, the deployed and staged files, the zone records."""
        root_key = make_key("p256")
        root = make_cert("Fleet Bench Root", root_key, ca=True)
        for i in range(self.n):
            name, zone = f"mx{i}", f"f{i % ZONES}.test"
            host = f"{name}.{zone}"
            self.names.append(name)
            self.hosts[name] = host
            for folder, kind in (
                (self.directory / "sni" / host, "now"),
                (self.staged(name), "next"),
            ):
                key = make_key("p256", kind + name)
                cert = make_cert(host, key, (root, root_key), dns_names=(host,))
                folder.mkdir(parents=True)
                (folder / "fullchain.pem").write_bytes(pem(cert))
                (folder / "privkey.pem").write_bytes(key_pem(key))
                (folder / "privkey.pem").chmod(0o600)
                if kind == "now":
                    spki = cert.public_key().public_bytes(
                        serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                    self.current[name] = "3 1 1 " + hashlib.sha256(spki).hexdigest()
            self.records[f"{zone}."] = (
                self.records.get(f"{zone}.", "")
                + f"_25._tcp.{name} {TTL} IN TLSA {self.current[name]}\n"
            )

    def staged(self, name: str) -> Path:
        return self.directory / "staged" / name

    def configure(self, lab: Lab, primary_port: int, server_pid: int, server_port: int) -> Path:
        services: dict[str, Any] = {}
        for name in self.names:
            sni = self.directory / "sni" / self.hosts[name]
            services[name] = {
                "host": self.hosts[name],
                "provider": "lab",
                "records": ["3 1 1"],
                "ttl": TTL,
                "authoritative": [lab.primary],
                "deploy": {
                    "chain": str(sni / "fullchain.pem"),
                    "key": str(sni / "privkey.pem"),
                    "reload": ["kill", "-HUP", str(server_pid)],
                    "reload_timeout": 10,
                },
                "probe": {
                    "connect": [f"{PRIMARY}:{server_port}"],
                    "starttls": "smtp",
                    "timeout": 5,
                },
                "staged": {
                    "chain": str(self.staged(name) / "fullchain.pem"),
                    "key": str(self.staged(name) / "privkey.pem"),
                },
            }
        config = self.directory / "rollover.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "providers": {
                        "lab": {
                            "type": "rfc2136",
                            "server": PRIMARY,
                            "port": primary_port,
                            "timeout": 5,
                            "retries": 2,
                            "tsig": {"name": TSIG_NAME, "secret_file": str(lab.secret_file)},
                        }
                    },
                    "resolvers": [lab.resolver],
                    "state_dir": str(self.directory / "state"),
                    "safety_factor": 2,
                    "services": services,
                }
            )
        )
        return config

    def seed_ownership(self) -> None:
        """What ``rollover publish`` of each current key would have recorded (the records are
        in the zone files BIND loaded)."""
        store = OwnershipStore(str(self.directory / "state"))
        now = datetime.now(UTC)
        for name in self.names:
            owner = owner_name(self.hosts[name], 25)
            records = frozenset({parse_association(self.current[name])})
            store.claim(owner, records, name, now)
            store.note_served(owner, {TTL}, now)
            store.confirm(owner, records, now)
            store.seen(owner, records, now, (None, None), TTL)

    def phases(self) -> dict[str, str | None]:
        store = SqliteStateStore(str(self.directory / "state"))
        try:
            found = {}
            for name in self.names:
                rollover = store.current(name)
                found[name] = None if rollover is None else str(rollover.phase)
            return found
        finally:
            store.close()


def applied_updates(lab: Lab, since: int) -> tuple[int, int]:
    """UPDATE messages the primary applied after byte ``since`` of its log (the lines of one
    message share its time stamp and client), and how many of them changed one owner name
    only (a service that went on its own: a fallback, or the only one of its zone then)."""
    log = lab.directory / "primary" / "named.log"
    with open(log, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    groups: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        if ": updating zone '" in line:
            stamp, _, rest = line.partition(" update: client ")
            owner = rest.rsplit(" at '", 1)[-1].split("'", 1)[0]
            groups.setdefault((stamp, rest.split(":", 1)[0]), set()).add(owner)
    return len(groups), sum(1 for owners in groups.values() if len(owners) == 1)


def log_size(lab: Lab) -> int:
    return (lab.directory / "primary" / "named.log").stat().st_size


def start_sni_server(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = directory / "server.port"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.smtpserver",
            "--sni-dir",
            str(directory / "sni"),
            "--hostname",
            "fleet.test",
            "--ready-file",
            str(ready),
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not ready.exists() or not ready.read_text().strip():
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the SNI STARTTLS server did not start")
        time.sleep(0.05)
    return server, int(ready.read_text())


def reads_only(n: int, repeat: int) -> None:
    """Only the read commands over a fleet at rest (no rollover), ``repeat`` times each: for
    profiling ``status`` and ``metrics`` (with BENCH_PROFILE) without the whole rollover."""
    directory = Path(tempfile.mkdtemp(prefix=f"rollover-fleetread-{n}-"))
    fleet = Fleet(n, directory)
    fleet.build()
    zones = tuple(f"f{z}.test." for z in range(min(ZONES, n)))
    lab = Lab(fleet_zones=zones, extra_records=fleet.records, with_secondary=False)
    server = None
    try:
        lab.start()
        server, server_port = start_sni_server(directory)
        config = fleet.configure(lab, lab.port, server.pid, server_port)
        fleet.seed_ownership()
        runs = [["status", "--json"], ["metrics", "--no-verify"], ["metrics"]] * repeat
        for args in [*runs, ["start", fleet.names[0]]]:
            run = timed(args, config)
            print(
                f"N={n:,} {' '.join(args)}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, "
                f"exit {run.code}",
                flush=True,
            )
        if os.environ.get("BENCH_KEEP"):
            shutil.copy(config, os.environ["BENCH_KEEP"])
    finally:
        if server is not None and server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(10)
        lab.stop()
        shutil.rmtree(directory, ignore_errors=True)


def one_size(n: int, sample: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"rollover-fleetroll-{n}-"))
    fleet = Fleet(n, directory)
    began = time.monotonic()
    fleet.build()
    zones = tuple(f"f{z}.test." for z in range(min(ZONES, n)))
    lab = Lab(fleet_zones=zones, extra_records=fleet.records, with_secondary=False)
    server = None
    senders: list[StrictSender] = []
    try:
        lab.start()
        server, server_port = start_sni_server(directory)
        config = fleet.configure(lab, lab.port, server.pid, server_port)
        fleet.seed_ownership()
        setup = time.monotonic() - began
        step = max(1, n // sample)
        for index in range(0, n, step)[:sample]:
            name = fleet.names[index]
            sender = StrictSender(
                owner_name(fleet.hosts[name], 25),
                fleet.hosts[name],
                [f"{PRIMARY}:{server_port}"],
                authoritative=[lab.primary],
                resolvers=[lab.sender_resolver],
                caches=2,
                interval=0.5,
                ttl_hint=float(TTL),
                seed=index,
            )
            senders.append(sender.start())
        for sender in senders:
            sender.wait_ready()
        # Every command after the first reads the parsed configuration back from its cache
        # (rollover.config.DocumentCache); the first one after an edit pays the YAML parse.
        cold = timed(["status", "--json"], config)
        single = timed(["start", fleet.names[0]], config)
        if single.code != 0:
            raise RuntimeError(f"rollover start {fleet.names[0]}: {single.err.strip()}")
        updates_before = log_size(lab)
        batch = timed(["start", "--all"], config)
        if batch.code != 0:
            raise RuntimeError(f"rollover start --all: {batch.err.strip()[-2000:]}")
        ticks: list[Run] = []
        deadline = time.monotonic() + 900
        while True:
            phases = fleet.phases()
            if all(p in FINAL for p in phases.values()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all done: {sorted(set(phases.values()), key=str)}")
            tick_began = time.monotonic()
            tick = timed(["advance", "--all"], config)
            ticks.append(tick)
            if tick.code not in (0,):
                print(f"  tick {len(ticks)}: exit {tick.code}: {tick.err.strip()[-600:]}")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick_began)))
        failed = [name for name, p in fleet.phases().items() if p != "done"]
        updates = applied_updates(lab, updates_before)
        status = timed(["status", "--json"], config)
        metrics_fast = timed(["metrics", "--no-verify"], config)
        metrics_full = timed(["metrics"], config)
        for sender in senders:
            sender.stop()
        return {
            "n": n,
            "setup": setup,
            "single": single,
            "cold": cold,
            "batch": batch,
            "ticks": ticks,
            "failed": failed,
            "updates": updates,
            "zones": len(zones),
            "status": status,
            "metrics_fast": metrics_fast,
            "metrics_full": metrics_full,
            "checks": sum(s.checks for s in senders),
            "failures": sum(len(s.failures) for s in senders),
            "first_failures": [f for s in senders for f in s.failures][:3],
            "max_gap": max((gap(s) for s in senders), default=0.0),
        }
    finally:
        for sender in senders:
            if sender.stopped_at is None:
                sender.stop()
        if server is not None and server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(10)
        lab.stop()
        shutil.rmtree(directory, ignore_errors=True)


def gap(sender: StrictSender) -> float:
    """The longest stretch without a successful check."""
    times = sorted(sender.success_times)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def report(results: list[dict[str, Any]]) -> None:
    base = results[0]["single"].cpu
    print()
    print(
        "| N | start --all (CPU / wall) | ticks | heaviest tick (wall) | fleet CPU "
        "(start --all + ticks) | peak memory | UPDATEs (at most 4 x zones) | one start "
        "(CPU, x smallest N) | status --json / metrics --no-verify / metrics | sender |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ticks: list[Run] = r["ticks"]
        heavy = max((t.wall for t in ticks), default=0.0)
        cpu = r["batch"].cpu + sum(t.cpu for t in ticks)
        rss = max([r["batch"].rss, *(t.rss for t in ticks)])
        print(
            f"| {r['n']:,} | {r['batch'].cpu:.1f} s / {r['batch'].wall:.1f} s | {len(ticks)} "
            f"| {heavy:.1f} s (target 15 s) | {cpu:.1f} s (target 60 s at 1,000) "
            f"| {rss:.0f} MiB (target 200) | {r['updates'][0]} for {r['zones']} zones, "
            f"{r['updates'][1]} of one owner (limit {4 * r['zones']} + fallbacks) "
            f"| {r['single'].cpu:.2f} s, "
            f"{r['single'].cpu / base:.2f}x (target 2x; the first command after an edit "
            f"{r['cold'].cpu:.2f} s) "
            f"| {r['status'].wall:.2f} / {r['metrics_fast'].wall:.2f} / "
            f"{r['metrics_full'].wall:.2f} s, its CPU {r['metrics_full'].cpu:.2f} s "
            "(targets 0.5 / 0.5 / 5) "
            f"| {r['checks']} checks, {r['failures']} failures, longest gap "
            f"{r['max_gap']:.1f} s |"
        )
        if r["failed"]:
            print(f"  not done: {r['failed'][:10]}")
        for failure in r["first_failures"]:
            print(f"  sender failure: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, action="append")
    parser.add_argument("--sample", type=int, default=6, help="services the sender checks")
    parser.add_argument(
        "--reads-only", type=int, metavar="REPEAT", help="only status and metrics, REPEAT times"
    )
    args = parser.parse_args()
    if args.reads_only:
        for n in args.n or [1000]:
            reads_only(n, args.reads_only)
        return
    results = []
    for n in args.n or [10, 100, 1000]:
        result = one_size(n, args.sample)
        results.append(result)
        print(
            f"N={n:,}: setup {result['setup']:.0f} s, {len(result['ticks'])} ticks, "
            f"{result['updates'][0]} UPDATEs, {result['failures']} sender failures; start --all "
            f"{result['batch'].wall:.1f} s wall / {result['batch'].cpu:.1f} s CPU; ticks (wall / "
            "CPU): " + ", ".join(f"{t.wall:.1f}/{t.cpu:.1f}" for t in result["ticks"]),
            flush=True,
        )
    report(results)


if __name__ == "__main__":
    main()
