"""The fleet figures that do not need the network: what N services cost a process in state,
configuration and descriptors (issue 16's targets beside each measurement).

For each N (default 100, 1,000 and 5,000): a configuration of N services over 20 zones and a
state directory with an active rollover per service, then, each in a fresh process:

- ``rollover status --json`` and ``rollover metrics --no-verify`` (wall time; targets 0.5 s);
- ``rollover advance --all`` under ``ulimit -n 1024`` against a provider that refuses at once
  (every service reaches its provider, none crashes; wall and CPU time, peak memory);
- ``rollover start --all`` under ``ulimit -n 1024`` over the same services with a staged key
  each and no rollover yet (each start reaches the DNS and fails on its own, none crashes);
- the configuration parsed with libyaml's safe loader and with the pure-Python one;
- one ownership claim (a row of the state database) at N owner names.

The whole fleet rollover (publication to retirement against BIND, with the sender) is
benchmarks/bench_fleet_rollover.py.

Run: .venv/bin/python benchmarks/bench_fleet.py [--n 100 --n 1000 --n 5000]
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollover.core.association import owner_name, parse_association  # noqa: E402
from rollover.core.phases import Phase, Rollover  # noqa: E402
from rollover.state.ownership import OwnershipStore  # noqa: E402
from rollover.state.store import SqliteStateStore  # noqa: E402
from tests.test_config import SECRET  # noqa: E402

ZONES = 20


def fleet(directory: Path, n: int, port: int) -> Path:
    secret = directory / "k.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    providers = {
        f"z{z}": {
            "type": "rfc2136",
            "server": "127.0.0.1",
            "port": port,
            "zone": f"zone{z}.test",
            "timeout": 0.2,
            "retries": 1,
            "tsig": {"name": "k", "secret_file": str(secret)},
        }
        for z in range(ZONES)
    }
    services = {
        f"mx{i}": {"host": f"mx{i}.zone{i % ZONES}.test", "provider": f"z{i % ZONES}"}
        for i in range(n)
    }
    state = directory / "state"
    config = directory / "rollover.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": providers,
                "resolvers": [f"127.0.0.1:{port}"],
                "state_dir": str(state),
                "services": services,
            }
        )
    )
    store = SqliteStateStore(str(state))
    now = datetime.now(UTC)
    new = frozenset({parse_association("3 1 1 " + "ab" * 32)})
    old = frozenset({parse_association("3 1 1 " + "cd" * 32)})
    for name, entry in services.items():
        rollover = Rollover(
            name, owner_name(entry["host"], 25), Phase.PUBLISHING, old, new, "/x", "/y",
            "0" * 64, now, now,
        )  # fmt: skip
        store.create(rollover)
    store.close()
    return config


def servfail_udp(port: int) -> None:
    """Answer every UDP query on ``port`` with SERVFAIL at once (TCP there stays closed): a
    start's first look at DNS fails in a millisecond instead of a timeout."""
    import threading

    import dns.message
    import dns.rcode

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))

    def serve() -> None:
        while True:
            wire, peer = sock.recvfrom(65535)
            try:
                response = dns.message.make_response(dns.message.from_wire(wire))
            except Exception:  # noqa: BLE001 - a benchmark's stand-in server ignores garbage
                continue
            response.set_rcode(dns.rcode.SERVFAIL)
            sock.sendto(response.to_wire(), peer)

    threading.Thread(target=serve, daemon=True).start()


def staged_fleet(directory: Path, config: Path) -> Path:
    """The same services, each with a staged chain and key (one pair for all) and no
    rollover yet: what ``start --all`` takes."""
    from tests.certs import key_pem, make_pki, pem

    pki = make_pki("p256", tag="staged")
    chain, key = directory / "staged.pem", directory / "staged.key"
    chain.write_bytes(pem(pki.leaf, pki.intermediate))
    key.write_bytes(key_pem(pki.leaf_key))
    key.chmod(0o600)
    doc = yaml.safe_load(config.read_text())
    doc["state_dir"] = str(directory / "state-start")
    for entry in doc["services"].values():
        entry["staged"] = {"chain": str(chain), "key": str(key)}
    staged = directory / "staged.yaml"
    staged.write_text(yaml.safe_dump(doc))
    return staged


def timed(args: list[str], *, limit: int | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one fresh process."""

    def low() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "rollover", *args],
        capture_output=True,
        text=True,
        preexec_fn=low,
        check=False,
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024, result.stderr


def parse_seconds(config: Path, loader: type) -> float:
    text = config.read_text()
    began = time.perf_counter()
    yaml.load(text, Loader=loader)
    return time.perf_counter() - began


def claim_seconds(directory: Path, n: int) -> float:
    store = OwnershipStore(str(directory / "ownership"))
    now = datetime.now(UTC)
    for i in range(n):
        store.claim(f"_25._tcp.mx{i}.test.", frozenset({parse_association("3 1 1 " + "ee" * 32)}), "s", now)  # fmt: skip
    began = time.perf_counter()
    store.claim("_25._tcp.last.test.", frozenset({parse_association("3 1 1 " + "ff" * 32)}), "s", now)  # fmt: skip
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, action="append")
    sizes = parser.parse_args().n or [100, 1000, 5000]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    servfail_udp(closed)
    print(
        "| N | status --json | metrics --no-verify | advance --all, ulimit -n 1024 | start --all, ulimit -n 1024 | YAML: libyaml / pure | one claim |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        directory = Path(tempfile.mkdtemp(prefix=f"rollover-fleet-{n}-"))
        config = fleet(directory, n, closed)
        c = ["--config", str(config)]
        tick = timed(["advance", "--all", *c], limit=1024)  # first: the peak RSS is its own
        status = timed(["status", "--json", *c])
        metrics = timed(["metrics", "--no-verify", *c])
        crashed = "Traceback" in tick[3] or "Too many open files" in tick[3]
        reached = sum(1 for line in tick[3].splitlines() if ": warning: mx" in line)
        start = timed(
            ["start", "--all", "--config", str(staged_fleet(directory, config))], limit=1024
        )
        start_crashed = "Traceback" in start[3] or "Too many open files" in start[3]
        started = sum(1 for line in start[3].splitlines() if ": warning: mx" in line)
        fast = parse_seconds(config, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        pure = parse_seconds(config, yaml.SafeLoader)
        claim = claim_seconds(directory, n)
        print(
            f"| {n:,} | {status[0]:.2f} s (target 0.5 s) | {metrics[0]:.2f} s (target 0.5 s) "
            f"| {'CRASHED' if crashed else 'no crash'}, {reached:,} of {n:,} services reached, "
            f"{tick[0]:.1f} s wall, {tick[1]:.1f} s CPU, {tick[2]:.0f} MiB peak "
            f"| {'CRASHED' if start_crashed else 'no crash'}, {started:,} of {n:,} reached, "
            f"{start[0]:.1f} s wall, {start[1]:.1f} s CPU, {start[2]:.0f} MiB "
            f"| {fast:.2f} s / {pure:.2f} s | {claim * 1000:.1f} ms |"
        )


if __name__ == "__main__":
    main()
