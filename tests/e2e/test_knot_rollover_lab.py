"""A whole rollover through the RFC 2136 adapter against Knot DNS (tests/knot.py): Knot signs the
zone, a Knot secondary follows by NOTIFY/IXFR, and the strict DANE sender (tests/dane_sender.py),
reading through its own validating unbound whose trust anchor is Knot's key and through both
Knot servers, must never see a handshake fail. The second test proves that sender can fail here:
the same rollover with its waits cut to nothing breaks it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollover.core.material import spki_der
from tests.dane_sender import StrictSender, assert_clean
from tests.dnsfaults import DnsFaults
from tests.knot import ZONE, KnotLab, running_knot
from tests.lab import PRIMARY
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotLab]:
    with running_knot() as lab:
        yield lab


@pytest.fixture
def knot_env(knot: KnotLab, tmp_path: Path) -> Iterator[ServiceEnv]:
    """One service whose zone is at Knot: its STARTTLS server up, its current records published
    (through the adapter, against Knot) and visible. ServiceEnv takes the Knot lab where it takes
    tests/lab.py's Lab: it uses the same attributes."""
    service = ServiceEnv(knot, tmp_path)  # type: ignore[arg-type]
    service.setup()
    yield service
    service.stop_server()


def served(knot: KnotLab, server: str, owner: str) -> set[str]:
    response = knot.query(server, owner, "TLSA")
    return {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}


def test_full_rollover_against_knot_with_a_continuous_sender(
    knot_env: ServiceEnv, knot: KnotLab
) -> None:
    env = knot_env
    serial_before = knot.serial(knot.primary, ZONE)
    sender = env.sender()
    assert isinstance(sender, StrictSender)
    sender.start()
    try:
        sender.wait_ready()
        started = env.start_rollover()
        assert started.returncode == 0, started.stdout + started.stderr
        run = env.rollover("run", env.name, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "done" in run.stdout
        time.sleep(1)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    # The sender authenticated the server under the old and under the new association.
    old, new = str(rec("3 1 1", env.pki.leaf)), str(rec("3 1 1", env.next_leaf))
    seen = {str(t) for rrset in sender.checks_by_rrset for t in rrset}
    assert {old, new} <= seen, sender.summary()
    # Only the new association is left, on the primary and (after IXFR) on the secondary.
    assert served(knot, knot.primary, env.owner) == {new}
    serial = knot.serial(knot.primary, ZONE)
    assert serial > serial_before
    knot.wait_secondary_serial(serial)
    assert served(knot, knot.secondary, env.owner) == {new}
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    assert status["phase"] == "done"
    assert status["new"] == [new]
    assert status["old"] == [old]
    assert status["error"] is None
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    phases = [h["detail"].get("to") for h in history if h["event"] == "transition"]
    for phase in ("propagating", "aging", "deploying", "cutting_over", "retiring", "done"):
        assert phase in phases
    # The DDNS updates of this rollover are in Knot's own log, applied and signed.
    log = knot.knot_log()
    assert "DDNS, finished" in log
    assert "DNSSEC, incrementally signed" in log
    assert not env.leaks(knot.tsig_secret)


def test_waits_cut_below_the_ttl_make_the_sender_fail_against_knot(
    knot_env: ServiceEnv, knot: KnotLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proof that this sender, against Knot, sees a broken rollover: deploy right after
    propagation, ignoring every TTL."""
    import rollover.core.phases
    from rollover import providers
    from rollover.config import load_config
    from rollover.engine.build import build_engine
    from rollover.engine.staging import load_staged

    env = knot_env
    monkeypatch.setattr(rollover.core.phases, "wait_seconds", lambda *_a: 0.0)
    env.ttl = 5
    env.write_config()
    assert env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
    engine = build_engine(load_config(str(env.config), providers.settings_parser), env.name)
    sender = env.sender()
    sender.interval = 0.1
    sender.start()
    try:
        sender.wait_ready()
        # The sender's cache takes a fresh copy of the old RRset, valid for the whole TTL.
        knot.unbound_control("flush_zone", ZONE, resolver="sender")
        seen = sender.checks
        deadline = time.monotonic() + 10
        while sender.checks < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.start(load_staged(str(env.staged_chain), str(env.staged_key), None))
        knot.flush_resolver()  # the tool's resolver sees the new RRset at once; the sender's not
        deadline = time.monotonic() + 60
        while engine.advance().rollover.phase != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        sender.stop()
    assert sender.failures, "with waits below the TTL a DANE sender must see failures"


def test_two_services_of_one_zone_roll_over_in_shared_updates(
    knot: KnotLab, tmp_path: Path
) -> None:
    """``advance --all`` against Knot: two services of example.test. started together; their
    publish goes out as one RFC 2136 UPDATE (apply_many: one receipt, one serial step, for
    both), and a strict sender per service sees no failure throughout."""
    import yaml

    from rollover import providers
    from rollover.config import load_config
    from rollover.engine.build import build_engine
    from rollover.engine.staging import load_staged

    envs = [ServiceEnv(knot, tmp_path / f"s{i}", name=f"mx{i}") for i in range(2)]  # type: ignore[arg-type]
    senders: list[StrictSender] = []
    # The tool's UPDATEs go through a counting proxy; everything else asks Knot directly.
    proxy = DnsFaults((PRIMARY, knot.port), knot.keyring).start()
    try:
        services = {}
        for env in envs:
            env.start_server()
            env.write_config()
            services[env.name] = yaml.safe_load(env.config.read_text())["services"][env.name]
        doc = yaml.safe_load(envs[0].config.read_text())
        doc["services"] = services
        doc["state_dir"] = str(tmp_path / "state")
        doc["providers"]["lab"]["port"] = proxy.port
        config = tmp_path / "rollover.yaml"
        config.write_text(yaml.safe_dump(doc))
        for env in envs:
            env.config = config
            published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain))
            assert published.returncode == 0, published.stderr
        senders = [env.sender().start() for env in envs]
        for sender in senders:
            sender.wait_ready()
        before = len(proxy.accepted_updates())
        cfg = load_config(str(config), providers.settings_parser)
        for env in envs:
            build_engine(cfg, env.name).start(
                load_staged(str(env.staged_chain), str(env.staged_key), None)
            )
        deadline = time.monotonic() + 150
        batches = 0
        while time.monotonic() < deadline:
            tick = envs[0].rollover("advance", "--all")
            assert tick.returncode == 0, tick.stdout + tick.stderr
            batches += tick.stdout.count("one change batch for 2 services")
            phases = {
                json.loads(env.rollover("status", env.name, "--json").stdout)["phase"]
                for env in envs
            }
            if phases == {"done"}:
                break
            time.sleep(0.5)
        assert phases == {"done"}, envs[0].transcript[-4:]
        time.sleep(1)
        updates = proxy.accepted_updates()[before:]
    finally:
        for sender in senders:
            sender.stop()
        for env in envs:
            env.stop_server()
        proxy.stop()
    for sender in senders:
        assert_clean(sender, 10)
    # What Knot accepted from the tool: the publish of both services as one UPDATE; then the
    # retire of each, in one UPDATE as well when both came due in the same tick (their ageing
    # deadlines can fall a tick apart, and then each goes alone: still through apply_many).
    owners = sorted(env.owner.lower() for env in envs)
    assert batches >= 1
    assert sorted(updates[0].owners) == owners, updates
    retires = [sorted(u.owners) for u in updates[1:]]
    assert retires in ([owners], [[owners[0]], [owners[1]]], [[owners[1]], [owners[0]]]), updates
    # Each batched change has one receipt ("serial>N") shared by both services.
    shared = []
    for env in envs:
        history = json.loads(env.rollover("history", env.name, "--json").stdout)
        shared.append(
            {h["detail"]["change_id"] for h in history if h["event"] == "provider-change"}
        )
    assert shared[0] & shared[1], shared
    for env in envs:
        assert served(knot, knot.primary, env.owner) == {str(rec("3 1 1", env.next_leaf))}
