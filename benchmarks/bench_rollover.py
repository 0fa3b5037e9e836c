"""How close a rollover comes to the theoretical minimum.

For TTLs T (default 5 and 10 s): the wall time from `rollover start` to `done`, divided by
propagation + safety_factor x T + deploy + probe, where propagation (start to "served
everywhere") and deploy + probe (ageing over to "presents the new key") are measured from the
rollover's own history. Target: at most 1.1.

Run: .venv/bin/python benchmarks/bench_rollover.py [--ttl 5 --ttl 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab import Lab  # noqa: E402
from tests.rollover_env import ServiceEnv  # noqa: E402


def at(entries: list[dict], to: str) -> datetime:  # type: ignore[type-arg]
    return next(
        datetime.fromisoformat(e["at"])
        for e in entries
        if e["event"] == "transition" and e["detail"].get("to") == to
    )


def one(ttl: int) -> tuple[float, float]:
    lab = Lab.start_new(ttl=ttl, soa_minimum=ttl)
    env = ServiceEnv(lab, Path(tempfile.mkdtemp(prefix="rollover-bench-")), ttl=ttl)
    try:
        env.setup()
        time.sleep(ttl + 1)  # the initial records are cached everywhere, as in production
        began = time.monotonic()
        start = env.rollover(
            "start", env.name, "--cert", str(env.staged_chain), "--key", str(env.staged_key)
        )
        assert start.returncode == 0, start.stderr
        run = env.rollover("run", env.name, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        total = time.monotonic() - began
        history = json.loads(env.rollover("history", env.name, "--json").stdout)
        started = datetime.fromisoformat(history[0]["at"])
        propagation = (at(history, "aging") - started).total_seconds()
        deploy_probe = (at(history, "retiring") - at(history, "deploying")).total_seconds()
        minimum = propagation + 2 * ttl + deploy_probe
        return total, minimum
    finally:
        env.stop_server()
        lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttl", type=int, action="append")
    ttls = parser.parse_args().ttl or [5, 10]
    for ttl in ttls:
        total, minimum = one(ttl)
        print(
            f"TTL {ttl:>3} s: start to done {total:6.2f} s, theoretical minimum "
            f"{minimum:6.2f} s, ratio {total / minimum:.3f} (target <= 1.1)"
        )


if __name__ == "__main__":
    main()
