"""The Quickstart demo: a real rollover, start to done, against a local DNSSEC lab.

Starts BIND 9 (signed zones, TSIG updates) and a validating unbound on loopback, a STARTTLS SMTP
server presenting the current key, publishes its TLSA record, then rolls over to a new key with
2-second TTLs while a DANE "sender" keeps checking every handshake. Stops everything at the end.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab import Lab  # noqa: E402
from tests.rollover_env import ServiceEnv  # noqa: E402


def show(env: ServiceEnv, *args: str) -> subprocess.CompletedProcess[str]:
    print(f"\n$ rollover {' '.join(args)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "rollover", *args, "--config", str(env.config)],
        cwd=REPO,
        text=True,
        check=False,
        timeout=120,
    )


def main() -> int:
    started = time.monotonic()
    print("starting the lab: BIND 9 (signed zones, TSIG updates) and validating unbound ...")
    lab = Lab.start_new(ttl=2, soa_minimum=2)
    directory = Path(tempfile.mkdtemp(prefix="rollover-demo-"))
    env = ServiceEnv(lab, directory, host="mx1.example.test", ttl=2)
    try:
        print(
            f"lab up in {lab.startup_seconds:.1f} s; primary {lab.primary}, resolver {lab.resolver}"
        )
        env.setup()
        print(f"SMTP server (STARTTLS) on {env.endpoint}, serving {env.deploy_chain}")
        print(f"configuration: {env.config}")
        sender = env.sender().start()
        while sender.checks < 2 and time.monotonic() - started < 20:
            time.sleep(0.2)
        show(env, "verify", "--service", env.name)
        result = show(
            env, "start", env.name, "--cert", str(env.staged_chain), "--key", str(env.staged_key)
        )
        if result.returncode != 0:
            return result.returncode
        result = show(env, "run", env.name)
        time.sleep(0.5)
        sender.stop()
        show(env, "verify", "--service", env.name)
        show(env, "history", env.name)
        print(
            f"\nDANE sender: {sender.checks} handshakes checked during the rollover, "
            f"{len(sender.failures)} failed"
        )
        for failure in sender.failures:
            print(f"  {failure}")
        print(f"demo finished in {time.monotonic() - started:.1f} s")
        return 0 if result.returncode == 0 and not sender.failures else 1
    finally:
        env.stop_server()
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
