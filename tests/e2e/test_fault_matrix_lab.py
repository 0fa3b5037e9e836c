"""Faults during a rollover, with the continuous sender: the invariants hold, the sender sees no
failure, the fault is reported in one line, and a later advance completes once it is gone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from rollover.core.material import spki_der
from rollover.errors import DeployError
from tests.dane_sender import assert_clean
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.fakedns import FakeDns
from tests.lab import PRIMARY, Lab
from tests.rollover_env import ServiceEnv

pytestmark = pytest.mark.lab


def advance_until(env: ServiceEnv, phase: str, seconds: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        env.rollover("advance", env.name)
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        if status["phase"] == phase:
            return status  # type: ignore[no-any-return]
        time.sleep(0.3)
    pytest.fail(f"never reached {phase}")


def finish(env: ServiceEnv) -> None:
    result = env.rollover("run", env.name)
    assert result.returncode == 0, result.stdout + result.stderr


def start(env: ServiceEnv) -> None:
    started = env.start_rollover()
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize("how", ["paused", "restarted"])
def test_primary_stops_answering_mid_rollover(env: ServiceEnv, lab: Lab, how: str) -> None:
    """The primary stops answering (SIGSTOP) or is stopped by its PID and started again from
    its files and journal, mid-rollover."""
    sender = env.sender().start()
    try:
        wait_sender_ready(sender)
        start(env)
        primary = lab.daemons["primary"]
        if how == "paused":
            primary.pause()
        else:
            lab.stop_server("primary")
        try:
            stuck = env.rollover("advance", env.name)
        finally:
            if how == "paused":
                primary.resume()
            else:
                lab.restart_server("primary")
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] in ("propagating", "aging")
        assert stuck.returncode in (5, 7, 9), stuck.stdout + stuck.stderr
        assert len(stuck.stderr.strip().splitlines()) == 1, stuck.stderr
        assert "Traceback" not in stuck.stderr
        served = lab.query(lab.primary, env.owner, "TLSA")
        assert len([r for rrset in served.answer if rrset.rdtype == 52 for r in rrset]) == 2
        finish(env)
        time.sleep(0.5)
    finally:
        sender.stop()
    assert_clean(sender, 10)


def test_reload_failing_then_fixed(env: ServiceEnv) -> None:
    sender = env.sender().start()
    try:
        wait_sender_ready(sender)
        env.write_config(
            deploy={
                "chain": str(env.deploy_chain),
                "key": str(env.deploy_key),
                "reload": "echo 'postfix: fatal: bad config' >&2; exit 1",
                "shell": True,
            }
        )
        start(env)
        advance_until(env, "deploying")
        failed = env.rollover("advance", env.name)
        assert failed.returncode == DeployError.exit_code == 12
        assert "reload command exited 1: postfix: fatal: bad config" in failed.stderr
        assert "Traceback" not in failed.stderr
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] == "deploying"
        assert "reload" in status["error"]
        # The files are installed, the server still presents the old key: still safe, since
        # the new association is published and aged. Fix the reload, advance again.
        env.write_config()
        finish(env)
        time.sleep(0.5)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)


def test_reload_hanging_is_killed_after_its_timeout(env: ServiceEnv) -> None:
    env.write_config(
        deploy={
            "chain": str(env.deploy_chain),
            "key": str(env.deploy_key),
            "reload": ["sleep", "30"],
            "reload_timeout": 1,
        }
    )
    start(env)
    advance_until(env, "deploying")
    began = time.monotonic()
    hung = env.rollover("advance", env.name)
    assert time.monotonic() - began < 15
    assert hung.returncode == DeployError.exit_code
    assert "killed after 1 s" in hung.stderr
    env.write_config()
    finish(env)


def test_server_down_during_the_probe(env: ServiceEnv) -> None:
    """The probe cannot reach the server for a while after the deploy: the rollover waits in
    cutting_over with both records published, then completes."""
    from rollover.core.presented import LiveChains
    from tests.e2e.test_rollover_lab import _staged, engine_for

    engine = engine_for(env)
    real_live = engine.live
    down = {"left": 3}

    def flaky_live() -> LiveChains:
        current = engine.store.current(env.name)
        if current is not None and current.phase == "cutting_over" and down["left"] > 0:
            down["left"] -= 1
            return LiveChains(error="127.0.0.1: connection refused")
        return real_live()

    engine.live = flaky_live
    engine.start(_staged(env))
    seen_waiting = False
    deadline = time.monotonic() + 60
    while (phase := engine.advance().rollover.phase) != "done":
        assert time.monotonic() < deadline
        if phase == "cutting_over":
            seen_waiting = True
            response = env.lab.query(env.lab.primary, env.owner, "TLSA")
            assert len([r for rrset in response.answer if rrset.rdtype == 52 for r in rrset]) == 2
        time.sleep(0.2)
    assert seen_waiting
    assert down["left"] == 0
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)


def test_someone_edits_the_rrset_mid_rollover(env: ServiceEnv, lab: Lab) -> None:
    """A foreign record appears between our read and our change: CAS, then it is kept."""
    from tests.test_matching import rec

    start(env)
    foreign = "3 1 1 " + "f0" * 32
    lab.update("example.test.", add=((env.owner, 2, "TLSA", foreign),))
    finish(env)
    response = lab.query(lab.primary, env.owner, "TLSA")
    served = {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}
    assert served == {str(rec("3 1 1", env.next_leaf)), foreign}  # never touched


def test_secondary_stops_transferring_mid_rollover(env: ServiceEnv, lab: Lab) -> None:
    """The clock does not start while one authoritative server lags; it does once it catches up."""
    sender = env.sender().start()
    lab.pause_secondary_transfers()
    try:
        wait_sender_ready(sender)
        start(env)
        for _ in range(4):
            env.rollover("advance", env.name)
            time.sleep(0.5)
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] == "propagating"  # the secondary does not serve the new RRset
        assert status["propagated_at"] is None
    finally:
        lab.resume_secondary_transfers()
    try:
        finish(env)
        time.sleep(0.5)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)


@contextmanager
def tool_resolver_bogus(lab: Lab) -> Iterator[None]:
    """The tool's validating resolver (not the sender's) reaches example.test. through a man in
    the middle that spoils every signature: it answers SERVFAIL (bogus) until this ends."""
    proxy = FakeDns("tamper", upstream=(PRIMARY, lab.port)).start()
    try:
        lab.unbound_control("stub_add", "example.test.", f"{PRIMARY}@{proxy.port}")
        lab.unbound_control("flush_zone", "example.test.")
        lab.unbound_control("flush_infra", "all")
        yield
    finally:
        lab.unbound_control("stub_add", "example.test.", f"{PRIMARY}@{lab.port}")  # as before
        lab.flush_resolver()
        proxy.stop()


@pytest.mark.parametrize("when", ["propagating", "deploying"])
def test_validating_resolver_bogus_for_a_while(env: ServiceEnv, lab: Lab, when: str) -> None:
    """While the tool's resolver finds the RRset bogus, the clock does not start (or the deploy
    is held); each advance says why in one line; once it validates again the rollover ends."""
    sender = env.sender().start()
    try:
        wait_sender_ready(sender)
        start(env)
        if when == "deploying":
            aging = advance_until(env, "aging")
            assert aging["propagated_at"] is not None
        with tool_resolver_bogus(lab):
            if when == "deploying":
                time.sleep(max(0.0, _seconds_until(aging["waiting_until"])) + 0.2)
            for _ in range(3):
                held = env.rollover("advance", env.name)
                time.sleep(0.4)
            status = json.loads(env.rollover("status", env.name, "--json").stdout)
            assert status["phase"] == when
            if when == "propagating":
                assert status["propagated_at"] is None
            assert spki_der(env.served_leaf()) == spki_der(env.pki.leaf)
            assert held.returncode == 9, held.stdout + held.stderr
            said = held.stderr.strip().splitlines()
            assert len(said) == 1, held.stderr
            assert "bogus: SERVFAIL" in said[0]
            assert lab.resolver in said[0]
            assert status["error"].startswith(f"resolver {lab.resolver}: bogus: SERVFAIL")
            history = json.loads(env.rollover("history", env.name, "--json").stdout)
            assert len([h for h in history if h["event"] == "fault"]) == 1  # one episode
        finish(env)
        time.sleep(0.5)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)


def _seconds_until(stamp: str | None) -> float:
    if stamp is None:
        return 0.0
    return (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()
