"""The "current + next" scheme end to end: at renewal, zero wait and zero sender failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from rollover.sources import spki_der
from tests.certs import make_cert, pem
from tests.dane_sender import assert_clean
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.lab import Lab
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec


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
        next_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        renewed = make_cert(
            env.host,
            next_key,
            (env.pki.intermediate, env.pki.intermediate_key),  # type: ignore[arg-type]
            dns_names=(env.host,),
        )
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
