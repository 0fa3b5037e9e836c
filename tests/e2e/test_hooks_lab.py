"""ACME hooks driven the way each client calls them, against the lab, from staging to done."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from rollover.core.material import spki_der
from tests.certs import key_pem, make_cert, pem
from tests.rollover_env import ServiceEnv

pytestmark = pytest.mark.lab


def lineage(env: ServiceEnv, *, same_key: bool) -> Path:
    """A certbot-style live directory holding a renewed certificate."""
    live = env.directory / "letsencrypt" / "live" / env.host
    live.mkdir(parents=True)
    if same_key:  # certbot --reuse-key: a new certificate for the same key
        key = env.pki.leaf_key
        leaf = make_cert(
            env.host, key, (env.pki.intermediate, env.pki.intermediate_key), dns_names=(env.host,)
        )
    else:
        key, leaf = env.next_key, env.next_leaf
    (live / "fullchain.pem").write_bytes(pem(leaf, env.pki.intermediate))
    (live / "privkey.pem").write_bytes(key_pem(key))
    return live


def finish(env: ServiceEnv) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = env.rollover("advance", "--all")
        assert result.returncode == 0, result.stderr
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        if status["phase"] == "done":
            return
        time.sleep(0.5)
    pytest.fail("the rollover did not finish")


@pytest.mark.parametrize("client", ["certbot", "acme.sh", "dehydrated", "lego"])
def test_hook_starts_a_rollover_and_returns(env: ServiceEnv, client: str) -> None:
    live = lineage(env, same_key=False)
    chain, key = str(live / "fullchain.pem"), str(live / "privkey.pem")
    args: list[str] = []
    hook_env = {
        "certbot": {"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": f"{env.host} other.test"},
        "acme.sh": {
            "CERT_FULLCHAIN_PATH": chain,
            "CERT_KEY_PATH": key,
            "Le_Domain": env.host,
            "CERT_PATH": chain,
            "CA_CERT_PATH": chain,
        },
        "dehydrated": {},
        "lego": {"LEGO_CERT_PATH": chain, "LEGO_CERT_KEY_PATH": key, "LEGO_CERT_DOMAIN": env.host},
    }[client]
    if client == "dehydrated":
        args = ["deploy_cert", env.host, key, chain, chain, chain, "1700000000"]
    started = time.monotonic()
    result = env.rollover("hook", client, *args, env=hook_env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rollover started" in result.stdout
    assert elapsed < 2 * 2 * env.ttl + 10  # it did not sit out the ageing wait
    status = json.loads(env.rollover("status", env.name, "--json").stdout)
    assert status["phase"] in ("propagating", "aging")
    staged = list((env.directory / "state" / "staged" / env.name).glob("*/privkey.pem"))
    assert staged
    assert oct(staged[0].stat().st_mode & 0o777) == "0o600"
    finish(env)
    assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)


def test_reused_key_deploys_at_once(env: ServiceEnv) -> None:
    live = lineage(env, same_key=True)
    result = env.rollover(
        "hook", "certbot", env={"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": env.host}
    )
    assert result.returncode == 0, result.stderr
    assert "without a rollover" in result.stdout
    assert json.loads(env.rollover("status", env.name, "--json").stdout)["phase"] is None
    assert env.deploy_chain.read_bytes() == (live / "fullchain.pem").read_bytes()


def test_other_dehydrated_handlers_are_ignored_quietly(env: ServiceEnv) -> None:
    result = env.rollover("hook", "dehydrated", "deploy_challenge", "x", "y", "z")
    assert result.returncode == 0
    assert result.stdout == result.stderr == ""


def test_no_matching_service(env: ServiceEnv) -> None:
    live = lineage(env, same_key=False)
    result = env.rollover(
        "hook",
        "certbot",
        env={"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": "unrelated.example"},
    )
    assert result.returncode == 4
    assert "no service takes renewals" in result.stderr


def test_explicit_lineage_mapping(env: ServiceEnv) -> None:
    live = lineage(env, same_key=False)
    doc = yaml.safe_load(env.config.read_text())
    doc["services"][env.name]["acme"] = {"lineage": str(live)}
    env.config.write_text(yaml.safe_dump(doc))
    result = env.rollover(
        "hook",
        "certbot",
        env={"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": "cert-name-differs.example"},
    )
    assert result.returncode == 0, result.stderr


def test_config_check_warns_about_acme_live_paths(env: ServiceEnv) -> None:
    doc = yaml.safe_load(env.config.read_text())
    doc["services"][env.name]["deploy"]["chain"] = "/etc/letsencrypt/live/mx1/fullchain.pem"
    env.config.write_text(yaml.safe_dump(doc))
    result = env.rollover("config", "check")
    assert result.returncode == 0
    assert "ACME client's own file" in result.stderr
