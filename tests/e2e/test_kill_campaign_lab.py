"""SIGKILL at random instants, seeded and reproducible: 10 rollovers x 5 kills = 50 killed runs.

Every rollover must still reach done with its DANE sender at zero failures, the final RRset
exactly the new association, and the new association published once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dane_sender import assert_clean
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.lab import Lab
from tests.rollover_env import REPO, ServiceEnv
from tests.test_matching import rec

SEED = int(os.environ.get("ROLLOVER_KILL_SEED", "20261128"))
ROLLOVERS = 10
KILLS = 5


pytestmark = pytest.mark.lab


@pytest.mark.parametrize("index", range(ROLLOVERS))
def test_sigkill_at_random_instants(lab: Lab, tmp_path: Path, index: int) -> None:
    rng = random.Random(SEED * 100 + index)
    env = ServiceEnv(lab, tmp_path, ttl=1)
    env.setup()
    sender = env.sender().start()
    kills = []
    try:
        wait_sender_ready(sender)
        started = env.start_rollover()
        assert started.returncode == 0, started.stderr
        for _ in range(KILLS):
            process = subprocess.Popen(
                [sys.executable, "-m", "rollover", "run", env.name, "--config", str(env.config)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            delay = rng.uniform(0.05, 1.2)
            time.sleep(delay)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills.append(round(delay, 2))
            process.wait(10)
        final = env.rollover("run", env.name, timeout=120)
        assert final.returncode == 0, (kills, final.stdout, final.stderr)
        time.sleep(0.5)
    finally:
        sender.stop()
        env.stop_server()
    assert len(kills) >= 2, kills  # the campaign really killed running processes
    assert_clean(sender, 10)
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    assert status["phase"] == "done"
    response = lab.query(lab.primary, env.owner, "TLSA")
    served = {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}
    assert served == {str(rec("3 1 1", env.next_leaf))}, kills
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    publishes = [h for h in history if h["event"] == "provider-change" and "added" in h["detail"]]
    assert len(publishes) <= 1, kills
