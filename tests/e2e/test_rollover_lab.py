"""The rollover end to end: the lab's DNS, a STARTTLS server process, and a DANE sender that must
never see a handshake fail."""

from __future__ import annotations

import json
import time

import pytest

from rollover.core.material import spki_der
from tests.dane_sender import assert_clean
from tests.lab import Lab
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


def wait_sender_ready(sender, seconds: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while sender.checks < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sender.checks >= 2, "the sender never saw the initial records"


def test_full_rollover_with_a_continuous_sender(env: ServiceEnv, lab: Lab) -> None:
    sender = env.sender().start()
    try:
        wait_sender_ready(sender)
        started = env.start_rollover()
        assert started.returncode == 0, started.stderr
        run = env.rollover("run", env.name, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "done" in run.stdout
        time.sleep(1)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert sender.checks > 10
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    # Only the new association is left, on every server.
    response = lab.query(lab.primary, env.owner, "TLSA")
    served = {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}
    assert served == {str(rec("3 1 1", env.next_leaf))}
    lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    assert status["phase"] == "done"
    assert status["service"] == env.name
    assert status["new"] == [str(rec("3 1 1", env.next_leaf))]
    assert status["old"] == [str(rec("3 1 1", env.pki.leaf))]
    assert status["error"] is None
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    phases = [h["detail"].get("to") for h in history if h["event"] == "transition"]
    for phase in (
        "propagating",
        "aging",
        "deploying",
        "cutting_over",
        "retiring",
        "verifying",
        "done",
    ):
        assert phase in phases
    assert oct((env.directory / "state" / "state.db").stat().st_mode & 0o777) == "0o600"
    assert oct(env.deploy_key.stat().st_mode & 0o777) == "0o600"


def test_waits_shortened_below_the_ttl_make_the_sender_fail(
    env: ServiceEnv, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proof that the sender can see failures: deploy right after propagation, ignoring TTLs."""
    import rollover.core.phases

    monkeypatch.setattr(rollover.core.phases, "wait_seconds", lambda *_a: 0.0)
    env.ttl = 5
    env.write_config()
    assert env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
    engine = engine_for(env)
    sender = env.sender()
    sender.interval = 0.1
    sender.start()
    try:
        wait_sender_ready(sender)
        # The sender's cache takes a fresh copy of the old RRset, valid for the whole TTL.
        lab.unbound_control("flush_zone", "example.test.", resolver="sender")
        seen = sender.checks
        deadline = time.monotonic() + 10
        while sender.checks < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.start(_staged(env))
        lab.flush_resolver()  # the tool's resolver sees the new RRset at once; the sender's not
        deadline = time.monotonic() + 60
        while engine.advance().rollover.phase != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        sender.stop()
    assert sender.failures, "with waits below the TTL a DANE sender must see failures"


def _staged(env: ServiceEnv):  # type: ignore[no-untyped-def]
    from rollover.engine.staging import load_staged

    return load_staged(str(env.staged_chain), str(env.staged_key), None)


def engine_for(env: ServiceEnv):  # type: ignore[no-untyped-def]
    from rollover import providers
    from rollover.config import load_config
    from rollover.engine.build import build_engine

    config = load_config(str(env.config), providers.settings_parser)
    return build_engine(config, env.name)
