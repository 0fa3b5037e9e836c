"""Crash at every step and resume; two advances at once; abort, rollback, a failed cut-over."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollover.core.material import spki_der
from tests.crashing_cli import KILLED
from tests.dane_sender import assert_clean
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.lab import Lab
from tests.rollover_env import REPO, ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


def tlsa_at_primary(lab: Lab, owner: str) -> set[str]:
    response = lab.query(lab.primary, owner, "TLSA")
    return {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}


@pytest.mark.parametrize(
    "point", ["after-publish", "after-install", "after-reload", "during-cutover", "after-retire"]
)
def test_crash_at_every_step_then_resume(env: ServiceEnv, lab: Lab, point: str) -> None:
    sender = env.sender().start()
    try:
        wait_sender_ready(sender)
        started = env.start_rollover(crash_at=point)
        if point != "after-publish":
            assert started.returncode == 0, started.stderr
            crashed = env.rollover("run", env.name, crash_at=point)
        else:
            crashed = started
        assert crashed.returncode == KILLED, crashed.stdout + crashed.stderr  # killed at the point
        resumed = env.rollover("run", env.name)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        time.sleep(1)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    assert tlsa_at_primary(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    publishes = [h for h in history if h["event"] == "provider-change" and "added" in h["detail"]]
    assert len(publishes) <= 1  # never published twice
    removals = [h for h in history if "removed" in h["detail"]]
    assert len(removals) == 1, removals  # the removal is on record once, even if killed after it


def test_two_advances_at_once_one_acts(env: ServiceEnv, lab: Lab) -> None:
    started = env.start_rollover("--dry-run")
    assert started.returncode == 0
    # Create the rollover without its first advance, then race two advances at it.
    from tests.e2e.test_rollover_lab import _staged, engine_for

    engine = engine_for(env)
    engine.store.create(engine.plan(_staged(env), allow_insecure=False))
    cmd = [sys.executable, "-m", "rollover", "advance", env.name, "-v", "--config", str(env.config)]
    processes = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    publishes = [h for h in history if h["event"] == "provider-change"]
    assert len(publishes) == 1, publishes
    transitions = [
        h for h in history if h["event"] == "transition" and h["detail"]["to"] == "propagating"
    ]
    assert len(transitions) == 1
    assert tlsa_at_primary(lab, env.owner) == {
        str(rec("3 1 1", env.pki.leaf)),
        str(rec("3 1 1", env.next_leaf)),
    }


def test_a_held_lease_blocks_a_second_process(env: ServiceEnv) -> None:
    from tests.e2e.test_rollover_lab import _staged, engine_for

    engine = engine_for(env)
    rollover = engine.store.create(engine.plan(_staged(env), allow_insecure=False))
    assert engine.store.acquire(rollover, engine.holder, time.time(), 60)  # alive: this process
    blocked = env.rollover("advance", env.name, "-v")
    assert blocked.returncode == 0
    assert engine.store.current(env.name).phase == "publishing"  # type: ignore[union-attr]
    engine.store.release(rollover, engine.holder)
    assert env.rollover("advance", env.name).returncode == 0
    assert engine.store.current(env.name).phase != "publishing"  # type: ignore[union-attr]


def test_abort_before_deploy_withdraws_the_new(env: ServiceEnv, lab: Lab) -> None:
    started = env.start_rollover()
    assert started.returncode == 0, started.stderr
    assert str(rec("3 1 1", env.next_leaf)) in tlsa_at_primary(lab, env.owner)
    aborted = env.rollover("abort", env.name)
    assert aborted.returncode == 0, aborted.stderr
    assert tlsa_at_primary(lab, env.owner) == {str(rec("3 1 1", env.pki.leaf))}
    assert json.loads(env.rollover("status", env.name, "--json").stdout)["phase"] == "aborted"
    assert spki_der(env.served_leaf()) == spki_der(env.pki.leaf)


def test_failed_cutover_keeps_both_and_rollback_restores(env: ServiceEnv, lab: Lab) -> None:
    """The server keeps the old key after the reload: fail, both records stay; rollback."""
    from datetime import timedelta

    from tests.e2e.test_rollover_lab import _staged, engine_for

    env.write_config(
        deploy={"chain": str(env.deploy_chain), "key": str(env.deploy_key), "reload": ["true"]}
    )  # a reload that does not reload
    engine = engine_for(env)
    engine.cutover_timeout = timedelta(seconds=2)
    engine.start(_staged(env))
    deadline = time.monotonic() + 60
    while (phase := engine.advance().rollover.phase) not in ("failed", "done"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert phase == "failed"
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    assert status["error"]
    assert "presents EC-P256 key" in status["error"]
    assert "not the new key" in status["error"]
    assert env.endpoint in status["error"]
    assert tlsa_at_primary(lab, env.owner) == {
        str(rec("3 1 1", env.pki.leaf)),
        str(rec("3 1 1", env.next_leaf)),
    }
    assert env.rollover("advance", env.name).returncode == 10  # needs a person
    assert env.rollover("abort", env.name).returncode == 8  # too late for abort
    env.write_config()  # the real reload again
    rolled = env.rollover("rollback", env.name)
    assert rolled.returncode == 0, rolled.stderr
    assert spki_der(env.served_leaf()) == spki_der(env.pki.leaf)
    assert tlsa_at_primary(lab, env.owner) == {str(rec("3 1 1", env.pki.leaf))}


def test_start_refuses_an_unsound_starting_point(env: ServiceEnv, lab: Lab) -> None:
    # Key and certificate that do not belong together.
    bad = env.rollover(
        "start", env.name, "--cert", str(env.staged_chain), "--key", str(env.deploy_key)
    )
    assert bad.returncode == 3
    assert "does not belong" in bad.stderr
    # The published records do not match what the server presents.
    lab.update(
        "example.test.",
        delete=((env.owner, "TLSA"),),
        add=((env.owner, 2, "TLSA", str(rec("3 1 1", env.next_leaf))),),
    )
    unsound = env.start_rollover()
    assert unsound.returncode == 8
    assert "already fails a chain the server presents" in unsound.stderr


def test_start_refuses_an_insecure_zone(lab: Lab, tmp_path: Path) -> None:
    env = ServiceEnv(lab, tmp_path, host="mx.insecure.example.test")
    env.start_server()
    try:
        env.write_config()
        result = env.start_rollover()
        assert result.returncode == 8
        assert "not DNSSEC-secure" in result.stderr
        assert "--allow-insecure" in result.stderr
    finally:
        env.stop_server()
