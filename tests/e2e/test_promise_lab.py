"""The rollover promise against the lab, shape by shape, under the strict sender (OpenSSL's DANE
semantics, several TTL-honouring caches over the authoritative servers and a validating
resolver, every address, failures cross-checked with ``openssl s_client``): zero failures, and
checks kept succeeding all through."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollover.core.material import spki_der
from tests.certs import key_pem, make_cert, make_key, pem
from tests.dane_sender import StrictSender, assert_clean
from tests.e2e.test_rollover_lab import _staged, engine_for
from tests.lab import Lab
from tests.rollover_env import REPO, ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


def served(lab: Lab, owner: str) -> set[str]:
    response = lab.query(lab.primary, owner, "TLSA")
    return {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}


@contextmanager
def strict(env: ServiceEnv, lab: Lab, *endpoints: str, owner: str = "") -> Iterator[StrictSender]:
    sender = StrictSender(
        owner or env.owner,
        env.host,
        list(endpoints) or [env.endpoint],
        authoritative=[lab.primary, lab.secondary],
        resolvers=[lab.sender_resolver],
        ttl_hint=env.ttl,
    )
    sender.start()
    try:
        yield sender
    finally:
        sender.stop()


def settle(sender: StrictSender, seconds: float = 15) -> None:
    """Until every cache fetched and a few checks went through."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with sender.lock:
            if sender.checks + sender.opportunistic >= 8:
                return
        time.sleep(0.1)
    raise AssertionError(f"the sender never got going: {sender.summary()}")


def roll(env: ServiceEnv, *extra: str, env_vars: dict[str, str] | None = None) -> str:
    started = env.start_rollover(*extra, env=env_vars)
    assert started.returncode == 0, started.stdout + started.stderr
    run = env.rollover("run", env.name, env=env_vars, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    time.sleep(env.ttl + 1)  # caches that hold the transitional RRset see the new key too
    return started.stdout


def advance_until(engine: Any, phase: str, seconds: float = 60) -> Any:
    """Advance the in-process engine until its rollover reaches ``phase``; the rollover."""
    deadline = time.monotonic() + seconds
    while (rollover := (result := engine.advance()).rollover).phase != phase:
        assert time.monotonic() < deadline, (
            f"still {rollover.phase}, not {phase}: {result.message}; error {rollover.error}"
        )
        time.sleep(0.2)
    return rollover


def verify_now(env: ServiceEnv, lab: Lab) -> dict[str, Any]:
    lab.flush_resolver()
    result = env.rollover("verify", "--service", env.name, "--json")
    return dict(json.loads(result.stdout))


def test_first_publication(lab: Lab, tmp_path: Path) -> None:
    """Shape 1: an owner name with no TLSA yet: the current key is published beside the new."""
    env = ServiceEnv(lab, tmp_path)
    env.start_server()
    try:
        env.write_config()
        assert served(lab, env.owner) == set()
        with strict(env, lab) as sender:
            settle(sender)
            started = env.start_rollover()
            assert started.returncode == 0, started.stderr
            assert "no usable TLSA" in started.stdout
            assert str(rec("3 1 1", env.pki.leaf)) in served(lab, env.owner)
            report = verify_now(env, lab)
            assert report["status"] == "OK", report
            run = env.rollover("run", env.name, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
            time.sleep(env.ttl + 1)
        assert_clean(sender, 10)
        assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}
    finally:
        env.stop_server()


def test_adding_a_matching_type(env: ServiceEnv, lab: Lab) -> None:
    """Shape 2: 3 1 2 added for the current key too; no 3 1 1 is ever hidden."""
    env.write_config(records=["3 1 1", "3 1 2"])
    with strict(env, lab) as sender:
        settle(sender)
        started = env.start_rollover()
        assert started.returncode == 0, started.stderr
        assert "added for the current key too" in started.stdout
        assert str(rec("3 1 2", env.pki.leaf)) in served(lab, env.owner)
        assert verify_now(env, lab)["status"] == "OK"
        assert env.rollover("run", env.name, timeout=120).returncode == 0
        time.sleep(env.ttl + 1)
    assert_clean(sender, 10)
    assert served(lab, env.owner) == {
        str(rec("3 1 1", env.next_leaf)),
        str(rec("3 1 2", env.next_leaf)),
    }


def test_removing_a_matching_type(lab: Lab, tmp_path: Path) -> None:
    """Shape 3: the 3 1 2 stays for the new key until the deploy, then goes with the old."""
    env = ServiceEnv(lab, tmp_path, records=("3 1 1", "3 1 2"))
    env.setup()
    try:
        env.records = ("3 1 1",)
        env.write_config()
        with strict(env, lab) as sender:
            settle(sender)
            out = roll(env)
            assert "transitional 3 1 2" in out
        assert_clean(sender, 10)
        assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}
    finally:
        env.stop_server()


def test_a_hand_made_3_1_2_beside_the_tools_3_1_1(env: ServiceEnv, lab: Lab) -> None:
    """Shape 3 again: the operator's own 3 1 2 of the current key."""
    lab.update(
        "example.test.", add=((env.owner, env.ttl, "TLSA", str(rec("3 1 2", env.pki.leaf))),)
    )
    with strict(env, lab) as sender:
        settle(sender)
        roll(env)
    assert_clean(sender, 10)
    assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}


def test_dane_ee_to_dane_ta_and_back(env: ServiceEnv, lab: Lab, tmp_path: Path) -> None:
    """Shape 4 (RFC 7671 section 8.2): a transitional 3 1 1 of the new key, then the switch."""
    env.write_config(records=["2 0 1"])
    ta = str(rec("2 0 1", env.pki.intermediate))
    with strict(env, lab) as sender:
        settle(sender)
        started = env.start_rollover()
        assert started.returncode == 0, started.stderr
        assert "8.2" in started.stdout
        assert ta not in served(lab, env.owner)  # not before the deploy
        assert str(rec("3 1 1", env.next_leaf)) in served(lab, env.owner)
        assert env.rollover("run", env.name, timeout=120).returncode == 0
        time.sleep(env.ttl + 1)
        assert served(lab, env.owner) == {ta}
        # And back to DANE-EE, to a third key.
        third_key = make_key("p256", "promise-third")
        third = make_cert(
            env.host,
            third_key,
            (env.pki.intermediate, env.pki.intermediate_key),
            dns_names=(env.host,),
        )
        env.staged_chain.write_bytes(pem(third, env.pki.intermediate))
        env.staged_key.write_bytes(key_pem(third_key))
        env.write_config(records=["3 1 1"])
        roll(env)
    assert_clean(sender, 20)
    assert served(lab, env.owner) == {str(rec("3 1 1", third))}


def test_new_records_deleted_during_the_deploy_are_put_back(env: ServiceEnv, lab: Lab) -> None:
    """Shape 5: the retire step never removes the old when the new is gone; it republishes,
    says so at once (exit 9, rollover_held 1), and completes later."""

    class DeployedError(Exception):
        """Raised at the first cut-over probe: the advance stops right after the deploy."""

    def stop_after_the_deploy(point: str) -> None:
        if point == "during-cutover":
            raise DeployedError

    def advance_until_deployed() -> None:
        while True:
            engine.advance()
            assert time.monotonic() < deadline
            time.sleep(0.2)

    engine = engine_for(env)
    engine.checkpoint = stop_after_the_deploy
    engine.start(_staged(env))
    deadline = time.monotonic() + 60
    with pytest.raises(DeployedError):
        advance_until_deployed()
    new = str(rec("3 1 1", env.next_leaf))
    old = str(rec("3 1 1", env.pki.leaf))
    lab.update("example.test.", delete=((env.owner, "TLSA"),), add=((env.owner, 2, "TLSA", old),))
    held = env.rollover("advance", env.name)
    assert held.returncode == 9, held.stdout + held.stderr
    assert "not published" in held.stderr
    assert served(lab, env.owner) == {old, new}  # put back, the old kept
    metrics = env.rollover("metrics", "--no-verify")
    assert f'rollover_held{{service="{env.name}"}} 1' in metrics.stdout
    deadline = time.monotonic() + 60
    while (result := env.rollover("advance", env.name)).returncode != 0 or json.loads(
        env.rollover("status", env.name, "--json").stdout
    )["phase"] != "done":
        assert time.monotonic() < deadline, result.stdout + result.stderr
        assert served(lab, env.owner), "never an empty RRset"
        time.sleep(0.5)
    assert served(lab, env.owner) == {new}


def test_a_new_record_deleted_and_put_back_while_ageing_restarts_the_wait(
    env: ServiceEnv, lab: Lab
) -> None:
    """Issue 13 item 7 inside a rollover: the new record deleted and re-added by hand while
    it ages, between two reads of the tool. The zone's IXFR history shows it: the deploy
    waits a TTL again, and the sender (whose caches may have fetched in the gap) never fails."""
    new = str(rec("3 1 1", env.next_leaf))
    old = str(rec("3 1 1", env.pki.leaf))
    with strict(env, lab) as sender:
        settle(sender)
        engine = engine_for(env)
        engine.start(_staged(env))
        advance_until(engine, "aging")
        lab.update(
            "example.test.", delete=((env.owner, "TLSA"),), add=((env.owner, env.ttl, "TLSA", old),)
        )
        lab.update("example.test.", add=((env.owner, env.ttl, "TLSA", new),))
        messages = []
        deadline = time.monotonic() + 90
        while (result := engine.advance()).rollover.phase != "done":
            messages.append(result.message)
            assert time.monotonic() < deadline, messages
            time.sleep(0.2)
        time.sleep(env.ttl + 1)
    assert_clean(sender, 10)
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    back = [
        h["detail"]
        for h in history
        if h["event"] == "transition" and "until it ages again" in h["detail"]["message"]
    ]
    assert back, history
    assert back[0]["from"] == "deploying"
    assert served(lab, env.owner) == {new}


def test_a_foreign_malformed_record_neither_stalls_nor_is_fixed(env: ServiceEnv, lab: Lab) -> None:
    """Issue 14 class 1 in the engine: a hand-made 31-byte 3 1 1 at the owner name (which
    dnspython 2.9 refused to parse) is read, ignored as unusable, and left where it is."""
    from rollover.core.dnsparse import tolerate_malformed_tlsa

    tolerate_malformed_tlsa()
    short = "3 1 1 " + "ab" * 31
    lab.update("example.test.", add=((env.owner, env.ttl, "TLSA", short),))
    with strict(env, lab) as sender:
        settle(sender)
        roll(env)
    assert_clean(sender, 10)
    assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf)), short}
    verdict = verify_now(env, lab)
    assert verdict["status"] == "OK", verdict
    assert any("ab" * 31 in u for r in verdict["results"] for u in r["unusable_records"])


def test_abort_racing_an_advance_never_empties_the_rrset(env: ServiceEnv, lab: Lab) -> None:
    """Shape 5: abort fired at the ageing deadline, beside the advance that deploys."""
    old, new = str(rec("3 1 1", env.pki.leaf)), str(rec("3 1 1", env.next_leaf))
    engine = engine_for(env)
    rollover = engine.start(_staged(env))
    rollover = advance_until(engine, "aging")
    assert rollover.waiting_until is not None
    from datetime import UTC, datetime

    time.sleep(max(0.0, (rollover.waiting_until - datetime.now(UTC)).total_seconds()))
    command = [sys.executable, "-m", "rollover"]
    tail = ["--config", str(env.config)]
    advance = subprocess.Popen([*command, "advance", env.name, *tail], cwd=REPO, text=True)
    abort = subprocess.run(
        [*command, "abort", env.name, *tail],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    advance.wait(60)
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    records = served(lab, env.owner)
    assert records, "never an empty RRset"
    presented = spki_der(env.served_leaf())
    if status["phase"] == "aborted":
        assert presented == spki_der(env.pki.leaf)
        assert old in records
    else:
        assert abort.returncode != 0, abort.stdout + abort.stderr
        assert "nothing was changed" in abort.stderr or "already be deployed" in abort.stderr
        assert new in records
        finished = env.rollover("run", env.name, timeout=120)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert served(lab, env.owner) == {new}
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    removals = [h for h in history if h["event"] == "provider-change" and "removed" in h["detail"]]
    assert len(removals) == 1  # the one removal, whichever won, is on record


def test_a_wall_clock_stepped_forward_does_not_shorten_the_ageing(
    env: ServiceEnv, lab: Lab
) -> None:
    """Shape 6: an NTP step of +100 s during the ageing: no early deploy."""
    from datetime import timedelta

    from rollover.edges.clock import SystemClock

    class Stepped(SystemClock):
        step = timedelta(0)

        def now(self):  # type: ignore[no-untyped-def]
            return super().now() + self.step

    engine = engine_for(env)
    clock = Stepped()
    engine.clock = clock
    with strict(env, lab) as sender:
        settle(sender)
        engine.start(_staged(env))
        advance_until(engine, "aging")
        clock.step = timedelta(seconds=100)
        result = engine.advance()
        assert result.rollover.phase == "aging", result.message
        assert "stepped forward" in result.message
        advance_until(engine, "done")
        time.sleep(env.ttl + 1)
    assert_clean(sender, 10)


def test_an_encrypted_staged_key(env: ServiceEnv, lab: Lab) -> None:
    """Shape 8: the deploy reads the passphrase from the source recorded at start."""
    from cryptography.hazmat.primitives import serialization

    env.staged_key.write_bytes(key_pem(env.next_key, passphrase=b"correct horse"))
    secret = {"ROLLOVER_PASSPHRASE": "correct horse"}
    refused = env.start_rollover()
    assert refused.returncode == 3, refused.stderr
    with strict(env, lab) as sender:
        settle(sender)
        started = env.start_rollover(env=secret)
        assert started.returncode == 0, started.stderr
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["passphrase_source"] == "env:ROLLOVER_PASSPHRASE"
        missing = env.rollover("run", env.name, timeout=120)  # without the variable
        assert missing.returncode == 3, missing.stdout + missing.stderr
        assert "$ROLLOVER_PASSPHRASE" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
        done = env.rollover("run", env.name, env=secret, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(env.ttl + 1)
    assert_clean(sender, 10)
    deployed = serialization.load_pem_private_key(env.deploy_key.read_bytes(), None)
    assert deployed.public_key() == env.next_key.public_key()
    assert oct(env.deploy_key.stat().st_mode & 0o777) == "0o600"
    assert env.leaks("correct horse") == []


def test_a_starting_point_that_already_fails_is_refused(env: ServiceEnv, lab: Lab) -> None:
    """Shape 9: a 3 1 2 of another key hides the matching 3 1 1 from digest-agile senders."""
    other = make_cert(env.host, make_key("p256", "promise-other"), dns_names=(env.host,))
    lab.update("example.test.", add=((env.owner, env.ttl, "TLSA", str(rec("3 1 2", other))),))
    refused = env.start_rollover()
    assert refused.returncode == 8, refused.stderr
    assert "already fails" in refused.stderr
    assert verify_now(env, lab)["status"] == "CRITICAL"


def test_several_addresses_one_not_updated(
    env: ServiceEnv, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shape 10: a second address keeps the old key: the cut-over waits, names it, is held,
    fails with both records kept; fixed and resumed, it completes."""
    from datetime import timedelta

    import rollover.engine.machine
    from tests.smtpserver import SmtpServer

    stale_chain, stale_key = tmp_path / "stale-chain.pem", tmp_path / "stale-key.pem"
    stale_chain.write_bytes(env.deploy_chain.read_bytes())
    stale_key.write_bytes(env.deploy_key.read_bytes())
    lagging = SmtpServer([(stale_chain, stale_key)], hostname=env.host).start()
    try:
        env.write_config(
            probe={"connect": [env.endpoint, lagging.endpoint], "starttls": "smtp", "timeout": 5}
        )
        monkeypatch.setattr(rollover.engine.machine, "CUTOVER_HELD_AFTER", timedelta(seconds=1))
        engine = engine_for(env)
        engine.cutover_timeout = timedelta(seconds=4)
        with strict(env, lab, env.endpoint, lagging.endpoint) as sender:
            settle(sender)
            engine.start(_staged(env))
            deadline = time.monotonic() + 60
            held = False
            while (r := engine.advance().rollover).phase != "failed":
                assert time.monotonic() < deadline
                if r.phase == "cutting_over" and r.error:
                    held = True
                    assert lagging.endpoint in r.error
                    assert env.endpoint not in r.error.split(", not")[0]
                    assert "EC-P256" in r.error
                time.sleep(0.3)
            assert held, "rollover_held stays 0 during the wait"
            assert {str(rec("3 1 1", env.pki.leaf)), str(rec("3 1 1", env.next_leaf))} <= served(
                lab, env.owner
            )
            lagging.load([(env.deploy_chain, env.deploy_key)])  # a person fixes it
            resumed = env.rollover("resume", env.name)
            assert resumed.returncode == 0, resumed.stderr
            finished = env.rollover("run", env.name, timeout=120)
            assert finished.returncode == 0, finished.stdout + finished.stderr
            time.sleep(env.ttl + 1)
        assert_clean(sender, 10)
        assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}
    finally:
        lagging.stop()


def test_a_new_start_after_a_failed_rollover_retires_the_unserved(
    env: ServiceEnv, lab: Lab
) -> None:
    """Shape 10: the new key went live by hand after a failed cut-over; a new start with the
    same certificate retires the old association instead of reporting done beside it."""
    from datetime import timedelta

    env.write_config(
        deploy={"chain": str(env.deploy_chain), "key": str(env.deploy_key), "reload": ["true"]}
    )
    engine = engine_for(env)
    engine.cutover_timeout = timedelta(seconds=2)
    engine.start(_staged(env))
    advance_until(engine, "failed")
    assert env.server is not None
    env.server.send_signal(1)  # the operator reloads the server by hand
    time.sleep(0.5)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    env.write_config()
    roll(env)
    assert served(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}


def test_a_shared_rrset_through_a_cname(lab: Lab, tmp_path: Path) -> None:
    """Shape 11: _25._tcp.mxA and _25._tcp.mxB are CNAMEs to one RRset; mxA rolls, mxB (its
    own key) keeps matching all through."""
    a = ServiceEnv(lab, tmp_path / "a", name="mxa")
    b = ServiceEnv(lab, tmp_path / "b", name="mxb")
    target = f"_dane-{a.host.split('.')[0]}.example.test."
    try:
        for env in (a, b):
            env.start_server()
            env.write_config(tlsa_owner=target)
        lab.update(
            "example.test.",
            add=(
                (a.owner, 2, "CNAME", target),
                (b.owner, 2, "CNAME", target),
                (target, 2, "TLSA", str(rec("3 1 1", a.pki.leaf))),
                (target, 2, "TLSA", str(rec("3 1 1", b.pki.leaf))),
            ),
        )
        doc = yaml.safe_load(a.config.read_text())
        doc["services"].update(yaml.safe_load(b.config.read_text())["services"])
        a.config.write_text(yaml.safe_dump(doc))
        with (
            strict(a, lab, owner=target) as sender_a,
            strict(b, lab, owner=target) as sender_b,
        ):
            settle(sender_a)
            settle(sender_b)
            roll(a)
        assert_clean(sender_a, 10)
        assert_clean(sender_b, 10)
        assert served(lab, target) == {
            str(rec("3 1 1", a.next_leaf)),
            str(rec("3 1 1", b.pki.leaf)),
        }
    finally:
        a.stop_server()
        b.stop_server()


def _naive_plan(before, old_chains, new_chain, new_configured, ctx, **_kw):  # type: ignore[no-untyped-def]
    """What the planner did before the rule: the new key's records beside the old, nothing
    more, the old retired."""
    from rollover.core.promise import RolloverPlan, authenticates

    old = frozenset(
        r for r in before if any(authenticates(frozenset({r}), c, ctx) is None for c in old_chains)
    )
    return RolloverPlan(before, new_configured, frozenset(), new_configured, old)


@pytest.mark.parametrize("shape", ["first publication", "adding 3 1 2", "removing 3 1 2"])
def test_with_the_fix_undone_the_sender_catches_it(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """The same shapes with the planner and the engine's rule checks undone: the strict sender
    records failures, and OpenSSL confirms them."""
    import rollover.engine.actions
    import rollover.engine.machine

    monkeypatch.setattr(rollover.engine.machine, "plan_rollover", _naive_plan)
    monkeypatch.setattr(rollover.engine.actions, "violations", lambda *_a, **_k: [])
    records = ("3 1 1", "3 1 2") if shape == "removing 3 1 2" else ("3 1 1",)
    env = ServiceEnv(lab, tmp_path, records=records)
    env.start_server()
    try:
        env.write_config()
        if shape != "first publication":
            assert (
                env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
            )
        env.records = {"adding 3 1 2": ("3 1 1", "3 1 2"), "removing 3 1 2": ("3 1 1",)}.get(
            shape, records
        )
        env.write_config()
        engine = engine_for(env)
        with strict(env, lab) as sender:
            settle(sender)
            engine.start(_staged(env))
            advance_until(engine, "done")
            time.sleep(env.ttl + 1)
        assert sender.failures, f"{shape}: the sender saw no failure: {sender.summary()}"
        # The cross-check runs just after the failed handshake: a deploy in between can make
        # OpenSSL verify what the sender saw fail a moment before.
        assert sender.openssl_confirmed > 10 * sender.openssl_disagreed, sender.summary()
    finally:
        env.stop_server()
