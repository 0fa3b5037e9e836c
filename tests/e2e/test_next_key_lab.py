"""The "current + next" scheme end to end: at renewal, zero wait and zero sender failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rollover.core.material import spki_der
from tests.certs import make_cert, pem
from tests.dane_sender import assert_clean
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.lab import Lab
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


def _renewed(env: ServiceEnv, key_path: Path) -> x509.Certificate:
    """The certificate a renewal issues for the next key (in ``key_path``)."""
    next_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return make_cert(
        env.host,
        next_key,
        (env.pki.intermediate, env.pki.intermediate_key),  # type: ignore[arg-type]
        dns_names=(env.host,),
    )


def test_renewal_onto_the_next_key_deploys_at_once(lab: Lab, tmp_path: Path) -> None:
    env = ServiceEnv(lab, tmp_path)
    env.setup()
    try:
        doc = yaml.safe_load(env.config.read_text())
        doc["services"][env.name]["next_key"] = {"algorithm": "ec-p256"}
        env.config.write_text(yaml.safe_dump(doc))
        csr = tmp_path / "next.csr"
        made = env.rollover("next", env.name, "--csr", str(csr))
        assert made.returncode == 0, made.stderr
        key_path = env.directory / "state" / "next" / f"{env.name}.key"
        assert oct(key_path.stat().st_mode & 0o777) == "0o600"
        assert csr.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
        renewed = _renewed(env, key_path)
        assert str(rec("3 1 1", renewed)) in made.stdout  # the next key's association published
        # Idempotent: running it again publishes nothing new.
        again = env.rollover("next", env.name)
        assert "nothing to change" in again.stdout
        # Let the next key's association age past safety_factor x TTL, ahead of the renewal.
        time.sleep(2 * env.ttl + 2)
        live = tmp_path / "live"
        live.mkdir()
        (live / "fullchain.pem").write_bytes(pem(renewed, env.pki.intermediate))
        (live / "privkey.pem").write_bytes(key_path.read_bytes())
        sender = env.sender().start()
        try:
            wait_sender_ready(sender)
            started = time.monotonic()
            hook = env.rollover(
                "hook", "certbot", env={"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": env.host}
            )
            assert hook.returncode == 0, hook.stdout + hook.stderr
            status = json.loads(env.rollover("status", env.name, "--json").stdout)
            assert status["phase"] not in ("publishing", "propagating", "aging"), status
            run = env.rollover("run", env.name)
            assert run.returncode == 0, run.stdout + run.stderr
            elapsed = time.monotonic() - started
            time.sleep(1)
        finally:
            sender.stop()
        assert_clean(sender, 10)
        assert elapsed < 2 * env.ttl + 8  # no ageing wait at renewal
        assert spki_der(env.served_leaf()) == spki_der(renewed)
        # A fresh next key was generated and published; the old current one retired.
        fresh = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        fresh_cert = make_cert(env.host, fresh, (env.pki.intermediate, env.pki.intermediate_key))  # type: ignore[arg-type]
        response = lab.query(lab.primary, env.owner, "TLSA")
        served = {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}
        assert served == {str(rec("3 1 1", renewed)), str(rec("3 1 1", fresh_cert))}
        history = json.loads(env.rollover("history", env.name, "--json").stdout)
        assert next(h for h in history if h["event"] == "transition")["detail"]["to"] in (
            "cutting_over",
            "deploying",
        )
    finally:
        env.stop_server()


def _publish_next(env: ServiceEnv, tmp_path: Path) -> tuple[Path, Path]:
    """``rollover next``, then a renewed chain carrying the next key: (chain, key) files."""
    doc = yaml.safe_load(env.config.read_text())
    doc["services"][env.name]["next_key"] = {"algorithm": "ec-p256"}
    env.config.write_text(yaml.safe_dump(doc))
    made = env.rollover("next", env.name)
    assert made.returncode == 0, made.stderr
    key_path = env.directory / "state" / "next" / f"{env.name}.key"
    renewed = _renewed(env, key_path)
    chain = tmp_path / "renewed.pem"
    chain.write_bytes(pem(renewed, env.pki.intermediate))
    return chain, key_path


def test_a_next_key_record_deleted_and_re_added_unseen_is_aged_again(
    lab: Lab, tmp_path: Path
) -> None:
    """Issue 13 item 7: the next key's record deleted and put back by hand between two reads
    of the tool. No read can see it; the zone's IXFR history does, so the start does not skip
    the wait (a cache that fetched in the gap holds an RRset without the next key)."""
    env = ServiceEnv(lab, tmp_path)
    env.setup()
    try:
        chain, key = _publish_next(env, tmp_path)
        time.sleep(2 * env.ttl + 2)  # aged past safety_factor x TTL
        response = lab.query(lab.primary, env.owner, "TLSA")
        records = [str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset]
        current = str(rec("3 1 1", env.pki.leaf))
        lab.update(
            "example.test.", delete=((env.owner, "TLSA"),), add=((env.owner, 2, "TLSA", current),)
        )
        lab.update("example.test.", add=tuple((env.owner, 2, "TLSA", r) for r in records))
        # Let every server and cache settle, so only the fast path's own check can tell.
        lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))
        lab.flush_resolver()
        time.sleep(env.ttl + 1)
        started = env.rollover("start", env.name, "--cert", str(chain), "--key", str(key))
        assert started.returncode == 0, started.stdout + started.stderr
        assert "counts from now" in started.stdout, started.stdout
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] in ("publishing", "propagating", "aging"), status
        history = json.loads(env.rollover("history", env.name, "--json").stdout)
        first = next(h for h in history if h["event"] == "transition")["detail"]["to"]
        assert first not in ("deploying", "cutting_over"), history
        run = env.rollover("run", env.name)
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        env.stop_server()


def test_a_next_key_left_alone_still_skips_the_wait(lab: Lab, tmp_path: Path) -> None:
    """The other side of the history check: other changes in the zone (a record elsewhere,
    the signer's own re-signing) do not cost the fast path."""
    env = ServiceEnv(lab, tmp_path)
    env.setup()
    try:
        chain, key = _publish_next(env, tmp_path)
        lab.update("example.test.", add=((f"other.{env.host}.", 60, "TXT", '"unrelated"'),))
        time.sleep(2 * env.ttl + 2)
        started = env.rollover("start", env.name, "--cert", str(chain), "--key", str(key))
        assert started.returncode == 0, started.stdout + started.stderr
        assert "counts from now" not in started.stdout, started.stdout
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert status["phase"] not in ("publishing", "propagating", "aging"), status
    finally:
        env.stop_server()
