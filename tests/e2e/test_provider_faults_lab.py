"""Every RFC 2136 step failing during a rollover, with the continuous sender: the provider talks
to the lab's primary through a proxy (tests/dnsfaults.py) that answers REFUSED, NOTAUTH or
SERVFAIL, stays silent, resets the connection, or loses the reply to an applied update."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from rollover.core.material import spki_der
from tests.dane_sender import assert_clean
from tests.dnsfaults import DnsFaults
from tests.e2e.test_rollover_faults import tlsa_at_primary
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.lab import PRIMARY, Lab
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

# What each failed command must say (one line), by fault.
SAYS = {
    "REFUSED": "refused",
    "NOTAUTH": "NOTAUTH",
    "SERVFAIL": "SERVFAIL",
    "timeout": "timed out",
    "reset": "connection failed",
}


pytestmark = pytest.mark.lab


def through(env: ServiceEnv, proxy: DnsFaults) -> None:
    """The provider's server is the proxy; everything else (observation) is direct."""
    doc = yaml.safe_load(env.config.read_text())
    doc["providers"]["lab"].update(server=PRIMARY, port=proxy.port, timeout=1, retries=2)
    env.config.write_text(yaml.safe_dump(doc))


def test_every_provider_step_failing_during_a_rollover(env: ServiceEnv, lab: Lab) -> None:
    proxy = DnsFaults((PRIMARY, lab.port), lab.keyring, hold=3).start()
    sender = env.sender().start()
    failed: list[tuple[str, str]] = []
    try:
        through(env, proxy)
        wait_sender_ready(sender)
        old = str(rec("3 1 1", env.pki.leaf))
        assert tlsa_at_primary(lab, env.owner) == {old}
        # The publish: each fault fails one command in one line and changes nothing.
        faults = ["REFUSED", "NOTAUTH", "SERVFAIL", "timeout", "reset"]
        times = {"timeout": 2, "reset": 2}  # as many as the provider's retries
        proxy.inject("UPDATE", faults[0], times.get(faults[0], 1))
        started = env.start_rollover()
        failed.append((faults[0], started.stderr))
        assert started.returncode == 5, started.stdout + started.stderr
        for fault in faults[1:]:
            proxy.inject("UPDATE", fault, times.get(fault, 1))
            result = env.rollover("advance", env.name)
            assert result.returncode == 5, (fault, result.stdout + result.stderr)
            failed.append((fault, result.stderr))
        assert proxy.pending() == 0
        assert proxy.accepted_updates() == []  # nothing reached the primary
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] == "publishing"
        # A read answered SERVFAIL, then the reply to the publish lost after the primary
        # applied it: the retry's prerequisite fails, the read-back recognises it as applied.
        proxy.inject("QUERY", "SERVFAIL")
        result = env.rollover("advance", env.name)
        assert result.returncode == 5, result.stdout + result.stderr
        assert "answered SERVFAIL" in result.stderr
        proxy.inject("UPDATE", "drop-after")
        published = env.rollover("advance", env.name)
        assert published.returncode in (0, 9), published.stdout + published.stderr
        assert proxy.pending() == 0
        assert len(proxy.accepted_updates()) == 1  # published exactly once
        # The retire (the only update after the publish): the same faults, one advance each.
        deadline = time.monotonic() + 60
        for fault in faults:
            proxy.inject("UPDATE", fault, times.get(fault, 1))
            while (result := env.rollover("advance", env.name)).returncode != 5:
                assert result.returncode in (0, 9), result.stdout + result.stderr
                assert time.monotonic() < deadline
                time.sleep(0.3)
            failed.append((fault, result.stderr))
            assert proxy.pending() == 0
            assert old in tlsa_at_primary(lab, env.owner)  # kept while the retire fails
        assert len(proxy.accepted_updates()) == 1
        proxy.inject("UPDATE", "drop-after")
        finished = env.rollover("run", env.name)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        time.sleep(0.5)
    finally:
        sender.stop()
        proxy.stop()
    assert_clean(sender, 10)
    assert env.leaks(lab.tsig_secret, lab.tsig_secret.rstrip("=")) == []
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    assert tlsa_at_primary(lab, env.owner) == {str(rec("3 1 1", env.next_leaf))}
    assert len(proxy.accepted_updates()) == 2  # one publish, one retire: no duplicate change
    for fault, stderr in failed:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (fault, stderr)
        assert SAYS[fault] in lines[0], (fault, lines[0])
        assert "Traceback" not in stderr
    assert len(failed) == 2 * len(SAYS), failed
    history = json.loads(env.rollover("history", env.name, "--json").stdout)
    assert len([h for h in history if "removed" in h["detail"]]) == 1
