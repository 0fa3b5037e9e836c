"""Eight `advance --all` processes at once over twenty services: every step exactly once, and
exactly one publish and one retire per service reach the primary (counted by a proxy in front
of it that every process's provider talks through); and one process's tick sends one UPDATE
per zone for every service whose publish or retire falls in it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from rollover.state.store import SqliteStateStore
from tests.crashing_cli import KILLED
from tests.dane_sender import assert_clean
from tests.dnsfaults import DnsFaults
from tests.lab import PRIMARY, Lab
from tests.rollover_env import REPO, ServiceEnv

SERVICES = 20
PROCESSES = 8


pytestmark = pytest.mark.lab


def one_fleet(envs: list[ServiceEnv], counter: DnsFaults, tmp_path: Path) -> Path:
    """One configuration for every service (their servers started), its provider talking to
    the primary through ``counter``, one state directory."""
    services = {}
    for env in envs:
        env.start_server()
        env.write_config()
        services[env.name] = yaml.safe_load(env.config.read_text())["services"][env.name]
    doc = yaml.safe_load(envs[0].config.read_text())
    doc["services"] = services
    doc["providers"]["lab"]["port"] = counter.port
    doc["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "rollover.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def test_eight_advances_over_twenty_services(lab: Lab, tmp_path: Path) -> None:
    envs = [ServiceEnv(lab, tmp_path / f"s{i}", ttl=1, name=f"mx{i}") for i in range(SERVICES)]
    counter = DnsFaults((PRIMARY, lab.port), lab.keyring).start()
    try:
        config = one_fleet(envs, counter, tmp_path)
        base = [sys.executable, "-m", "rollover"]
        for env in envs:
            env.config = config
            assert (
                env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
            )
        time.sleep(2)
        published_before = len(counter.accepted_updates())
        assert published_before == SERVICES
        for env in envs:
            started = env.start_rollover()
            assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            processes = [
                subprocess.Popen(
                    [*base, "advance", "--all", "--config", str(config)],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(PROCESSES)
            ]
            results = [p.communicate(timeout=120) for p in processes]
            assert all(p.returncode == 0 for p in processes), results
            # One status process for the fleet, as an operator's dashboard asks.
            status = subprocess.run(
                [*base, "status", "--json", "--config", str(config)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            phases = [d["phase"] for d in json.loads(status.stdout)]
            assert len(phases) == SERVICES
            if all(phase == "done" for phase in phases):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all done: {phases}")
        # Counted at the server: one publish and one retire per service, nothing more, in
        # UPDATEs that each carry one zone's changes of a tick (so no more than two per service).
        updates = counter.accepted_updates()[published_before:]
        touched = Counter(owner for update in updates for owner in update.owners)
        assert touched == Counter({env.owner.lower(): 2 for env in envs}), touched
        assert len(updates) <= 2 * SERVICES
        store = SqliteStateStore(str(tmp_path / "state"))
        for env in envs:
            history = store.history(env.name)
            changes = [h for h in history if h["event"] == "provider-change"]
            assert len(changes) == 2, (env.name, changes)  # publish once, retire once
            transitions = Counter(
                h["detail"]["to"]
                for h in history
                if h["event"] == "transition" and h["detail"]["from"] != h["detail"]["to"]
            )
            for phase in (
                "propagating",
                "aging",
                "deploying",
                "cutting_over",
                "retiring",
                "verifying",
                "done",
            ):
                assert transitions[phase] == 1, (
                    env.name,
                    transitions,
                    [h["detail"].get("message") for h in history if h["event"] == "transition"],
                )
        store.close()
    finally:
        counter.stop()
        for env in envs:
            env.stop_server()


@pytest.mark.parametrize("mode", ["batched", "refused", "killed"])
def test_one_update_per_zone_and_tick(lab: Lab, tmp_path: Path, mode: str) -> None:
    """Five services started together: each tick of a single ``advance --all`` sends their
    retires (and any publish) as one UPDATE for the zone, and the sender sees no failure. A
    batch the server refuses leaves each service to go on its own in that tick; a process
    killed right after a batched change (before any of its records) is picked up by the next
    tick, every change on record exactly once."""
    refused = mode == "refused"
    count = 5
    envs = [ServiceEnv(lab, tmp_path / f"s{i}", ttl=1, name=f"mx{i}") for i in range(count)]
    counter = DnsFaults((PRIMARY, lab.port), lab.keyring).start()
    sender = None
    try:
        config = one_fleet(envs, counter, tmp_path)
        for env in envs:
            env.config = config
            assert (
                env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
            )
        time.sleep(2)
        sender = envs[0].sender().start()
        for env in envs:
            started = env.start_rollover()
            assert started.returncode == 0, started.stderr
        before = len(counter.accepted_updates())
        if refused:
            counter.inject("UPDATE", "REFUSED")
        said = ""
        killed = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            crash = "after-retire" if mode == "killed" and not killed else None
            tick = envs[0].rollover("advance", "--all", crash_at=crash)
            said += tick.stderr
            if crash is not None and tick.returncode == KILLED:
                killed += 1
                continue
            assert tick.returncode == 0, tick.stdout + tick.stderr
            phases = {
                json.loads(e.rollover("status", e.name, "--json").stdout)["phase"] for e in envs
            }
            if phases == {"done"}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all done: {phases}")
        retires = counter.accepted_updates()[before:]
        touched = Counter(owner for update in retires for owner in update.owners)
        assert touched == Counter({env.owner.lower(): 1 for env in envs}), touched
        if refused:
            assert "going service by service" in said
            assert counter.pending() == 0
        else:
            assert len(retires) < count, [u.owners for u in retires]  # batched
        if mode == "killed":
            assert killed == 1
            for env in envs:
                history = json.loads(env.rollover("history", env.name, "--json").stdout)
                removals = [
                    h
                    for h in history
                    if h["event"] in ("provider-change", "provider-change-seen")
                    and h["detail"].get("removed")
                ]
                assert len(removals) == 1, (env.name, removals)  # on record exactly once
    finally:
        if sender is not None:
            sender.stop()
        counter.stop()
        for env in envs:
            env.stop_server()
    assert_clean(sender, 10)


def test_start_all_publishes_one_update_per_zone(lab: Lab, tmp_path: Path) -> None:
    """``start --all`` starts every service whose staged key is new (not the one whose staged
    key is the deployed one, not the one with nothing staged), publishes them in one UPDATE
    for the zone, and ``advance --all`` takes them to done with the sender clean; a second
    ``start --all`` then has nothing to start."""
    count = 5
    envs = [ServiceEnv(lab, tmp_path / f"s{i}", ttl=1, name=f"mx{i}") for i in range(count)]
    counter = DnsFaults((PRIMARY, lab.port), lab.keyring).start()
    sender = None
    try:
        config = one_fleet(envs, counter, tmp_path)
        doc = yaml.safe_load(config.read_text())
        for env in envs[:3]:  # new keys staged
            doc["services"][env.name]["staged"] = {
                "chain": str(env.staged_chain),
                "key": str(env.staged_key),
            }
        # mx3: its staged key is the deployed one (nothing to roll); mx4: nothing staged.
        doc["services"]["mx3"]["staged"] = {
            "chain": str(envs[3].deploy_chain),
            "key": str(envs[3].deploy_key),
        }
        config.write_text(yaml.safe_dump(doc))
        for env in envs:
            env.config = config
            assert (
                env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
            )
        time.sleep(2)
        sender = envs[0].sender().start()
        before = len(counter.accepted_updates())
        started = envs[0].rollover("start", "--all")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "one change batch for 3 services in example.test." in started.stdout
        publishes = counter.accepted_updates()[before:]
        assert len(publishes) == 1, [u.owners for u in publishes]
        assert set(publishes[0].owners) == {e.owner.lower() for e in envs[:3]}
        for env in envs[3:]:
            assert json.loads(env.rollover("status", env.name, "--json").stdout)["phase"] is None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            tick = envs[0].rollover("advance", "--all")
            assert tick.returncode == 0, tick.stdout + tick.stderr
            phases = {
                json.loads(e.rollover("status", e.name, "--json").stdout)["phase"] for e in envs[:3]
            }
            if phases == {"done"}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all done: {phases}")
        again = envs[0].rollover("start", "--all")
        assert again.returncode == 0, again.stderr
        assert "nothing to start: no service has a new staged key" in again.stdout
    finally:
        if sender is not None:
            sender.stop()
        counter.stop()
        for env in envs:
            env.stop_server()
    assert_clean(sender, 10)
