"""A pool of three servers behind one MX name, one shared key, rolled to done (real PostgreSQL,
BIND, unbound; every "host" its own processes and directories).

The coordinator (its own state directory, node ``coord``) publishes, waits and opens the gate;
each member's agent (its own directory, node ``a``/``b``/``c``, no DNS credentials: the TSIG
secret file named in its configuration does not exist on its "host") stages, deploys on its
own STARTTLS server at its own loopback address, and records it. The strict DANE sender
handshakes with every member address each round, through TTL-honouring caches: zero failures.
Member c's agent is stopped once the gate opens: the rollover holds in cut-over (nothing
retired, the old association kept), then completes when c's agent runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dane_sender import StrictSender, assert_clean
from tests.lab import Lab
from tests.postgres import PostgresCluster
from tests.rollover_env import REPO, ServiceEnv

pytestmark = pytest.mark.lab

MEMBERS = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}


class Member:
    def __init__(self, name: str, address: str, directory: Path, env: ServiceEnv) -> None:
        self.name = name
        self.address = address
        self.directory = directory
        for sub in ("deploy", "staging", "state"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.chain = directory / "deploy" / "fullchain.pem"
        self.key = directory / "deploy" / "privkey.pem"
        shutil.copy(env.deploy_chain, self.chain)
        shutil.copy(env.deploy_key, self.key)
        self.staged_chain = directory / "staging" / "fullchain.pem"
        self.staged_key = directory / "staging" / "privkey.pem"
        shutil.copy(env.staged_chain, self.staged_chain)
        shutil.copy(env.staged_key, self.staged_key)
        for key in (self.key, self.staged_key):
            key.chmod(0o600)
        ready = directory / "server.port"
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.smtpserver",
                "--pair",
                str(self.chain),
                str(self.key),
                "--hostname",
                env.host,
                "--address",
                address,
                "--ready-file",
                str(ready),
            ],
            cwd=REPO,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not ready.exists() or not ready.read_text().strip():
            assert time.monotonic() < deadline
            assert self.server.poll() is None
            time.sleep(0.05)
        self.port = int(ready.read_text())
        self.config = directory / "rollover.yaml"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def stop(self) -> None:
        if self.server.poll() is None:
            os.kill(self.server.pid, signal.SIGTERM)
            self.server.wait(10)


def run(config: Path, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
    env["ROLLOVER_NODE"] = node
    return subprocess.run(
        [sys.executable, "-m", "rollover", *args, "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def configure(
    lab: Lab,
    postgres: PostgresCluster,
    tmp_path: Path,
    env: ServiceEnv,
    members: dict[str, Member],
    pool: str,
) -> Path:
    """The coordinator's configuration (returned) and each member host's own (``m.config``:
    its own state_dir and staging, and a TSIG secret file that does not exist there)."""
    _schema, dsn = postgres.fresh_schema()
    dsn_file = tmp_path / "pg.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    service: dict[str, Any] = {
        "host": env.host,
        "provider": "lab",
        "records": ["3 1 1"],
        "ttl": env.ttl,
        "authoritative": [lab.primary, lab.secondary],
        "pool": pool,
        "members": [
            {
                "name": m.name,
                "connect": [m.endpoint],
                "deploy": {
                    "chain": str(m.chain),
                    "key": str(m.key),
                    "reload": ["kill", "-HUP", str(m.server.pid)],
                    "reload_timeout": 10,
                },
            }
            for m in members.values()
        ],
        "probe": {"starttls": "smtp", "timeout": 5},
    }
    doc: dict[str, Any] = {
        "providers": {
            "lab": {
                "type": "rfc2136",
                "server": "127.0.0.1",
                "port": lab.port,
                "timeout": 2,
                "retries": 2,
                "tsig": {"name": "lab-key", "secret_file": str(lab.secret_file)},
            }
        },
        "resolvers": [lab.resolver],
        "state_dir": str(tmp_path / "coordinator"),
        "state": {"backend": "postgresql", "dsn_file": str(dsn_file), "lease_seconds": 30},
        "safety_factor": 2,
        "services": {"mx1": service},
    }
    coordinator = tmp_path / "coordinator.yaml"
    coordinator.write_text(yaml.safe_dump(doc))
    for m in members.values():
        doc["state_dir"] = str(m.directory / "state")
        doc["providers"]["lab"]["tsig"]["secret_file"] = str(m.directory / "no-such.secret")
        service["staged"] = {"chain": str(m.staged_chain), "key": str(m.staged_key)}
        m.config.write_text(yaml.safe_dump(doc))
    return coordinator


def published_and_watched(
    lab: Lab, coordinator: Path, env: ServiceEnv, members: dict[str, Member]
) -> StrictSender:
    """The schema migrated, the current key published, and the strict sender (every member
    address each round, three TTL-honouring caches) watching, ready."""
    assert run(coordinator, "coord", "state", "migrate").returncode == 0
    published = run(coordinator, "coord", "publish", "mx1", "--cert", str(env.deploy_chain))
    assert published.returncode == 0, published.stderr
    time.sleep(2)
    sender = StrictSender(
        env.owner,
        env.host,
        [m.endpoint for m in members.values()],
        authoritative=[lab.primary],
        resolvers=[lab.sender_resolver],
        caches=3,
        interval=0.3,
        ttl_hint=float(env.ttl),
    ).start()
    sender.wait_ready()
    return sender


def test_a_shared_key_pool_of_three_rolls_to_done(
    lab: Lab, postgres: PostgresCluster, tmp_path: Path
) -> None:
    postgres.start()
    env = ServiceEnv(lab, tmp_path / "material", ttl=2, name="mx1")
    members = {n: Member(n, a, tmp_path / f"member-{n}", env) for n, a in MEMBERS.items()}
    coordinator = configure(lab, postgres, tmp_path, env, members, "shared-key")

    def agent(m: Member) -> subprocess.CompletedProcess[str]:
        result = run(m.config, m.name, "agent", "--member", m.name)
        assert result.returncode == 0, (m.name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def phase() -> str:
        status = run(coordinator, "coord", "status", "mx1", "--json")
        assert status.returncode == 0, status.stderr
        return str(json.loads(status.stdout)["phase"])

    sender = None
    try:
        sender = published_and_watched(lab, coordinator, env, members)
        refused = run(
            coordinator, "coord", "start", "mx1", "--cert", str(env.staged_chain), "--key", "x"
        )
        assert refused.returncode == 3, refused.stderr  # the key never comes to the coordinator
        started = run(coordinator, "coord", "start", "mx1", "--cert", str(env.staged_chain))
        assert started.returncode == 0, started.stderr
        # No agent has run: once aged, the gate stays shut (no member said it holds the key).
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, phase()
            advanced = run(coordinator, "coord", "advance", "--all")
            if advanced.returncode == 8:
                assert "have not staged the new key" in advanced.stderr, advanced.stderr
                assert "a, b, c" in advanced.stderr, advanced.stderr
                break
            assert advanced.returncode == 0, advanced.stderr
            time.sleep(0.5)
        assert phase() == "deploying"  # held there, the gate shut: nothing installed anywhere
        assert all(m.chain.read_bytes() == env.deploy_chain.read_bytes() for m in members.values())
        held_in_cutover = 0
        deadline = time.monotonic() + 240
        while phase() != "done":
            assert time.monotonic() < deadline, phase()
            now = phase()
            for m in members.values():
                if m.name == "c" and now == "cutting_over" and held_in_cutover < 4:
                    continue  # c's agent stopped: the rollover must wait for it
                agent(m)
            advanced = run(coordinator, "coord", "advance", "--all")
            assert advanced.returncode in (0, 9), advanced.stderr
            now = phase()
            if now == "cutting_over" and held_in_cutover < 4:
                held_in_cutover += 1
                status = json.loads(run(coordinator, "coord", "status", "mx1", "--json").stdout)
                states = {s["name"]: s["state"] for s in status["members"]}
                if held_in_cutover > 1:
                    assert states["c"] == "staged", states
                    assert status["phase"] == "cutting_over"
                    served = _served(lab, env.owner)
                    assert status["old"][0] in served, (status["old"], served)
                    # What the cut-over waits for, named by member (a and b are on the key).
                    told = run(coordinator, "coord", "advance", "mx1", "--verbose")
                    said = told.stdout + told.stderr
                    assert f"member c at {members['c'].endpoint}" in said, said
                    assert "member a at" not in said, said
            time.sleep(0.5)
        assert held_in_cutover == 4
        status = json.loads(run(coordinator, "coord", "status", "mx1", "--json").stdout)
        assert [s["name"] for s in status["members"]] == ["a", "b", "c"]
        for state in status["members"]:
            assert set(state) >= {"name", "state", "deployed_at", "presenting", "last_seen"}
            assert state["state"] == "deployed", state
            assert set(state["presenting"].values()) == {status["staged_spki"]}, state
        assert _served(lab, env.owner) == set(status["new"])
    finally:
        if sender is not None:
            sender.stop()
        for m in members.values():
            m.stop()
    assert sender is not None
    assert_clean(sender, min_checks=10)
    for m in members.values():  # each member's files are the staged chain and key now
        assert m.chain.read_bytes() == m.staged_chain.read_bytes()
        assert m.key.read_bytes() == m.staged_key.read_bytes()


def _served(lab: Lab, owner: str) -> set[str]:
    response = lab.query(lab.primary, owner, "TLSA")
    return {
        f"3 1 1 {r.cert.hex()}" for rrset in response.answer if rrset.rdtype == 52 for r in rrset
    }


def test_a_key_per_member_pool_rolls_one_member_at_a_time(
    lab: Lab, postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Two members, each its own key and its own association in the one RRset. Member a's
    rollover, then b's (b's start refused while a's runs: one at a time per owner name); the
    sender, on both addresses all along, never fails; at the end the RRset holds both new
    keys' associations and nothing else."""
    postgres.start()
    first = ServiceEnv(lab, tmp_path / "material-a", ttl=2, name="mx1")
    second = ServiceEnv(lab, tmp_path / "material-b", ttl=2, name="mx1", host=first.host)
    members = {
        "a": Member("a", MEMBERS["a"], tmp_path / "member-a", first),
        "b": Member("b", MEMBERS["b"], tmp_path / "member-b", second),
    }
    coordinator = configure(lab, postgres, tmp_path, first, members, "key-per-member")

    def status(name: str) -> dict[str, Any]:
        result = run(coordinator, "coord", "status", name, "--json")
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    refusals: list[str] = []

    def roll(name: str, member: Member, env: ServiceEnv) -> None:
        started = run(coordinator, "coord", "start", name, "--cert", str(env.staged_chain))
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 180
        while status(name)["phase"] != "done":
            assert time.monotonic() < deadline, status(name)
            for m in members.values():
                result = run(m.config, m.name, "agent", "--member", m.name)
                assert result.returncode == 0, (m.name, result.stdout, result.stderr)
            other = "mx1@b" if name == "mx1@a" else None
            if other is not None and status(name)["phase"] not in ("done", "publishing"):
                refused = run(
                    coordinator, "coord", "start", other, "--cert", str(second.staged_chain)
                )
                assert refused.returncode == 8, refused.stderr
                assert "roll one at a time" in refused.stderr
                refusals.append(refused.stderr)
            advanced = run(coordinator, "coord", "advance", "--all")
            assert advanced.returncode in (0, 9), advanced.stderr
            time.sleep(0.5)
        assert [s["state"] for s in status(name)["members"]] == ["deployed"]

    sender = None
    try:
        assert run(coordinator, "coord", "state", "migrate").returncode == 0
        for name, env in (("mx1@a", first), ("mx1@b", second)):
            published = run(coordinator, "coord", "publish", name, "--cert", str(env.deploy_chain))
            assert published.returncode == 0, published.stderr
        time.sleep(2)
        sender = StrictSender(
            first.owner,
            first.host,
            [m.endpoint for m in members.values()],
            authoritative=[lab.primary],
            resolvers=[lab.sender_resolver],
            caches=3,
            interval=0.3,
            ttl_hint=float(first.ttl),
        ).start()
        sender.wait_ready()
        roll("mx1@a", members["a"], first)
        assert refusals  # b was refused while a rolled
        roll("mx1@b", members["b"], second)
        final = {*status("mx1@a")["new"], *status("mx1@b")["new"]}
        assert _served(lab, first.owner) == final
        assert len(final) == 2
    finally:
        if sender is not None:
            sender.stop()
        for m in members.values():
            m.stop()
    assert sender is not None
    assert_clean(sender, min_checks=10)


def test_a_pool_rollback_reaches_every_member_through_its_agent(
    lab: Lab, postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Both members of a shared-key pool stage the key; a deploys, b's agent is stopped, so
    the rollover holds in cut-over; `rollover rollback` ends it, a's agent puts its previous
    chain and key back, and every address presents the old key again, which the RRset still
    matches: the sender never fails."""
    postgres.start()
    env = ServiceEnv(lab, tmp_path / "material", ttl=2, name="mx1")
    members = {n: Member(n, MEMBERS[n], tmp_path / f"member-{n}", env) for n in ("a", "b")}
    coordinator = configure(lab, postgres, tmp_path, env, members, "shared-key")

    def status() -> dict[str, Any]:
        result = run(coordinator, "coord", "status", "mx1", "--json")
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def agent(m: Member) -> None:
        result = run(m.config, m.name, "agent", "--member", m.name)
        assert result.returncode == 0, (m.name, result.stdout, result.stderr)

    sender = None
    try:
        sender = published_and_watched(lab, coordinator, env, members)
        started = run(coordinator, "coord", "start", "mx1", "--cert", str(env.staged_chain))
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 120
        while status()["phase"] != "cutting_over":
            assert time.monotonic() < deadline, status()
            for m in members.values():
                agent(m)
            assert run(coordinator, "coord", "advance", "--all").returncode in (0, 8)
            time.sleep(0.5)
        agent(members["a"])  # a deploys; b's agent is stopped from here on
        assert members["a"].chain.read_bytes() == members["a"].staged_chain.read_bytes()
        assert run(coordinator, "coord", "advance", "--all").returncode in (0, 9)
        assert status()["phase"] == "cutting_over"
        rolled = run(coordinator, "coord", "rollback", "mx1")
        assert rolled.returncode in (0, 8), rolled.stderr
        after = status()
        assert after["phase"] == "aborted"
        assert after["rolled_back"] is True
        agent(members["a"])
        agent(members["b"])
        states = {s["name"]: s["state"] for s in status()["members"]}
        assert states == {"a": "rolled-back", "b": "staged"}, states
        for m in members.values():
            assert m.chain.read_bytes() == env.deploy_chain.read_bytes(), m.name
        assert after["old"][0] in _served(lab, env.owner)  # the old association stayed
        time.sleep(2)
    finally:
        if sender is not None:
            sender.stop()
        for m in members.values():
            m.stop()
    assert sender is not None
    assert_clean(sender, min_checks=10)
