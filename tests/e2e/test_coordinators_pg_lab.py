"""Several coordinators over one PostgreSQL state store (tests/postgres.py: a real cluster).

Each "host" is its own processes with its own state directory and node name
(``ROLLOVER_NODE``), sharing only the configuration and the store, as two machines of a fleet
would. Counted at the primary (a proxy every provider talks through): every step exactly once,
whoever takes it; and the strict DANE sender, reading through TTL-honouring caches, never fails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dane_sender import StrictSender, assert_clean
from tests.dnsfaults import DnsFaults
from tests.lab import PRIMARY, Lab
from tests.postgres import PostgresCluster
from tests.rollover_env import REPO, ServiceEnv

pytestmark = pytest.mark.lab

LEASE = 20.0  # state.lease_seconds: a killed coordinator's rollovers wait this long


class Host:
    """One coordinator host: its configuration (the shared one, its own state directory)."""

    def __init__(self, name: str, config: Path) -> None:
        self.name = name
        self.config = config

    def command(self, *args: str, faketime: str | None = None) -> list[str]:
        argv = [sys.executable, "-m", "rollover", *args, "--config", str(self.config)]
        return ["faketime", "-f", faketime, *argv] if faketime else argv

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
        # A skewed wall clock on another machine leaves this machine's boot clock alone.
        env.update(ROLLOVER_NODE=self.name, FAKETIME_DONT_FAKE_MONOTONIC="1")
        return env

    def popen(self, *args: str, faketime: str | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args, faketime=faketime),
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(self, *args: str, faketime: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, faketime=faketime),
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


class Fleet:
    def __init__(
        self, lab: Lab, postgres: PostgresCluster, tmp_path: Path, services: int, ttl: int
    ) -> None:
        self.envs = [
            ServiceEnv(lab, tmp_path / f"s{i}", ttl=ttl, name=f"mx{i}") for i in range(services)
        ]
        self.counter = DnsFaults((PRIMARY, lab.port), lab.keyring).start()
        self.postgres = postgres
        self.senders: list[StrictSender] = []
        schema, dsn = postgres.fresh_schema()
        self.schema = schema
        dsn_file = tmp_path / "pg.dsn"
        dsn_file.write_text(dsn + "\n")
        dsn_file.chmod(0o600)
        services_doc = {}
        for env in self.envs:
            env.start_server()
            env.write_config()
            services_doc[env.name] = yaml.safe_load(env.config.read_text())["services"][env.name]
        doc: dict[str, Any] = yaml.safe_load(self.envs[0].config.read_text())
        doc["services"] = services_doc
        doc["providers"]["lab"]["port"] = self.counter.port
        doc["state"] = {"backend": "postgresql", "dsn_file": str(dsn_file), "lease_seconds": LEASE}
        self.hosts = []
        for name in ("a", "b"):
            doc["state_dir"] = str(tmp_path / f"host-{name}" / "state")
            config = tmp_path / f"host-{name}.yaml"
            config.write_text(yaml.safe_dump(doc))
            self.hosts.append(Host(name, config))
        for env in self.envs:
            env.config = self.hosts[0].config
        self.password = dsn.split("password=")[1].split()[0]

    def start(self, lab: Lab) -> None:
        """The schema migrated, every current key published, the sender watching two
        services, and every rollover started (from host a)."""
        a = self.hosts[0]
        migrated = a.run("state", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        for env in self.envs:
            published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain))
            assert published.returncode == 0, published.stderr
        time.sleep(2)
        for env in self.envs[:2]:
            sender = StrictSender(
                env.owner,
                env.host,
                [env.endpoint],
                authoritative=[lab.primary],
                resolvers=[lab.sender_resolver],
                caches=2,
                interval=0.3,
                ttl_hint=float(env.ttl),
            )
            self.senders.append(sender.start())
        for sender in self.senders:
            sender.wait_ready()
        self.before = len(self.counter.accepted_updates())
        for env in self.envs:
            started = env.start_rollover()
            assert started.returncode == 0, started.stderr

    def phases(self) -> dict[str, str | None]:
        status = self.hosts[1].run("status", "--json")
        assert status.returncode == 0, status.stderr
        return {d["service"]: d["phase"] for d in json.loads(status.stdout)}

    def history(self, env: ServiceEnv) -> list[dict[str, Any]]:
        result = self.hosts[1].run("history", env.name, "--json")
        assert result.returncode == 0, result.stderr
        entries: list[dict[str, Any]] = json.loads(result.stdout)
        return entries

    def assert_every_step_once(self) -> None:
        """At the primary: one publish and one retire per owner since the starts. In each
        history: each phase entered once, two provider changes."""
        updates = self.counter.accepted_updates()[self.before :]
        touched = Counter(owner for update in updates for owner in update.owners)
        assert touched == Counter({env.owner.lower(): 2 for env in self.envs}), touched
        for env in self.envs:
            history = self.history(env)
            # A change applied by a process killed before it recorded it is recorded by the
            # next one that sees it ("provider-change-seen"): once, either way.
            changes = [
                h for h in history if h["event"] in ("provider-change", "provider-change-seen")
            ]
            assert len(changes) == 2, (env.name, changes)
            entered = Counter(
                h["detail"]["to"]
                for h in history
                if h["event"] == "transition" and h["detail"]["from"] != h["detail"]["to"]
            )
            for phase in ("propagating", "aging", "deploying", "cutting_over", "retiring"):
                assert entered[phase] == 1, (env.name, entered)
            assert not [h for h in history if h["event"] == "lease-broken"], env.name

    def stop(self) -> None:
        for sender in self.senders:
            if sender.stopped_at is None:
                sender.stop()
        self.counter.stop()
        for env in self.envs:
            env.stop_server()


@pytest.fixture
def fleet_of(lab: Lab, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(services: int, ttl: int = 1) -> Fleet:
        postgres.start()  # running, whatever an earlier test left
        made.append(Fleet(lab, postgres, tmp_path, services, ttl))
        return made[-1]

    yield make
    for fleet in made:
        fleet.stop()


def until_done(fleet: Fleet, tick: Any, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        if all(p == "done" for p in fleet.phases().values()):
            return
        time.sleep(0.3)
    raise AssertionError(f"not all done: {fleet.phases()}")


def test_two_coordinators_at_once_take_every_step_exactly_once(fleet_of: Any, lab: Lab) -> None:
    fleet = fleet_of(6)
    fleet.start(lab)

    def tick() -> None:
        processes = [h.popen("advance", "--all") for h in fleet.hosts for _ in range(2)]
        results = [p.communicate(timeout=120) for p in processes]
        assert all(p.returncode == 0 for p in processes), results

    until_done(fleet, tick)
    for sender in fleet.senders:
        sender.stop()
        assert_clean(sender, min_checks=10)
    fleet.assert_every_step_once()


def test_a_killed_coordinator_is_taken_over_only_after_its_lease(fleet_of: Any, lab: Lab) -> None:
    """Host a is SIGKILLed at seeded random instants; host b, another node, cannot tell a
    dead process of a's from a live one: it takes a's rollovers only once the lease, judged by
    the database's clock, has run out. Nothing is done twice, nothing lost."""
    fleet = fleet_of(3, ttl=4)
    fleet.start(lab)
    a, b = fleet.hosts
    chance = random.Random(1802)
    kills = 0
    taken_over_after: list[float] = []

    def tick() -> None:
        nonlocal kills
        if len(taken_over_after) < 2 and kills < 12:
            process = a.popen("advance", "--all")
            # At a random instant while it holds a lease: mid-step, mid-change, mid-wait.
            began = time.monotonic()
            while process.poll() is None and not _held_by(fleet, "a:"):
                if time.monotonic() - began > 5:
                    break
                time.sleep(0.01)
            try:
                process.wait(chance.uniform(0.0, 0.05))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate(timeout=10)
                kills += 1
                killed_at = time.monotonic()
                held = _held_by(fleet, "a:")
                while held and time.monotonic() - killed_at < LEASE + 15:
                    result = b.run("advance", "--all")
                    assert result.returncode == 0, result.stderr
                    if not _held_by(fleet, "a:"):
                        taken_over_after.append(time.monotonic() - killed_at)
                        break
                    time.sleep(1)
                return
            _out, err = process.communicate()
            assert process.returncode == 0, err
        result = b.run("advance", "--all")
        assert result.returncode == 0, result.stderr

    until_done(fleet, tick, seconds=400)
    # Killed holding a lease at least twice (kills that landed between two services' leases
    # leave nothing to take over). A lease of a's was never taken before it could have run
    # out: it was written at most the wait before the kill earlier.
    assert taken_over_after, kills
    assert all(after >= LEASE - 1.5 for after in taken_over_after), taken_over_after
    for sender in fleet.senders:
        sender.stop()
        assert_clean(sender, min_checks=10)
    fleet.assert_every_step_once()


def _held_by(fleet: Fleet, prefix: str) -> bool:
    """Whether a live lease (by the database's clock) of a holder on node ``prefix`` exists."""
    rows = fleet.postgres.psql(
        "SELECT count(*) FROM rollovers WHERE active AND lease_holder LIKE "
        f"'{prefix}%' AND lease_until > clock_timestamp()",
        schema=fleet.schema,
    )
    return bool(rows[0][0])


def test_postgresql_restarted_mid_rollover_loses_no_step(fleet_of: Any, lab: Lab) -> None:
    fleet = fleet_of(2)
    fleet.start(lab)
    a, b = fleet.hosts
    for _ in range(3):
        assert a.run("advance", "--all").returncode == 0
    fleet.postgres.stop()
    try:
        for host in (a, b):
            down = host.run("advance", "--all")
            assert down.returncode == 11, (down.returncode, down.stderr)
            lines = [line for line in down.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, down.stderr
            assert "Traceback" not in down.stderr
            assert fleet.password not in down.stderr + down.stdout
            status = host.run("status", "--json")
            assert status.returncode == 11, status.stderr
    finally:
        fleet.postgres.start()

    def tick() -> None:
        for host in (b, a):
            result = host.run("advance", "--all")
            assert result.returncode == 0, result.stderr

    until_done(fleet, tick)
    for sender in fleet.senders:
        sender.stop()
        assert_clean(sender, min_checks=10)
    fleet.assert_every_step_once()


def test_a_coordinator_an_hour_ahead_takes_no_live_lease_and_ages_nothing_early(
    fleet_of: Any, lab: Lab
) -> None:
    """Host b's wall clock is an hour ahead (libfaketime). The lease host a holds is judged by
    the database's clock, so b leaves it alone; and once it is free, b still waits the TTLs out
    by the database's clock, not its own."""
    fleet = fleet_of(1, ttl=10)
    fleet.start(lab)
    a, b = fleet.hosts
    env = fleet.envs[0]
    deadline = time.monotonic() + 60  # resolvers may hold the old RRset its TTL
    while time.monotonic() < deadline:
        assert a.run("advance", "--all").returncode == 0
        if fleet.phases()[env.name] == "aging":
            break
        time.sleep(1)
    assert fleet.phases()[env.name] == "aging"
    # Host a holds the lease, as it would in the middle of an advance (for ten minutes).
    fleet.postgres.psql(
        "UPDATE rollovers SET lease_holder = 'a:1:held', lease_until = clock_timestamp() + "
        "interval '600 seconds' WHERE active",
        schema=fleet.schema,
    )
    before = fleet.history(env)
    skewed = b.run("advance", "--all", faketime="+1h")
    assert skewed.returncode == 0, skewed.stderr
    assert fleet.history(env) == before  # not a step, not a lease taken
    assert _held_by(fleet, "a:1:held")
    # The lease released: b may act, and finds the rollover still ageing (an hour ahead on its
    # own clock, the TTLs would all have run out).
    fleet.postgres.psql(
        "UPDATE rollovers SET lease_holder = NULL, lease_until = NULL WHERE active",
        schema=fleet.schema,
    )
    for _ in range(2):
        acted = b.run("advance", "--all", faketime="+1h")
        assert acted.returncode == 0, acted.stderr
    assert fleet.phases()[env.name] == "aging"
    status = json.loads(b.run("status", env.name, "--json", faketime="+1h").stdout)
    until = status["waiting_until"]
    assert until is not None
    from datetime import UTC, datetime

    left = (
        datetime.fromisoformat(until.replace("Z", "+00:00")) - datetime.now(UTC)
    ).total_seconds()
    assert 0 < left < 600, (until, left)  # by the real (database) clock, not an hour off
    for sender in fleet.senders:
        sender.stop()
        assert_clean(sender, min_checks=5)
