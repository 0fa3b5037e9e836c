"""Secrets never appear in output, logs, state, history or metrics; key files are 0600."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from tests.lab import Lab
from tests.rollover_env import ServiceEnv

pytestmark = pytest.mark.lab


def test_no_secret_anywhere(lab: Lab, tmp_path: Path) -> None:
    env = ServiceEnv(lab, tmp_path)
    env.setup()
    try:
        doc = yaml.safe_load(env.config.read_text())
        doc["services"][env.name]["next_key"] = {"algorithm": "ec-p256"}
        env.config.write_text(yaml.safe_dump(doc))
        outputs = []
        for args in (
            ["config", "check"],
            ["next", env.name],
            ["start", env.name, "--cert", str(env.staged_chain), "--key", str(env.staged_key)],
            ["--log-format", "json", "run", env.name],
            ["status", env.name, "--json"],
            ["history", env.name, "--json"],
            ["history", env.name],
            ["metrics"],
            ["verify", "--service", env.name, "--json"],
            ["dns", "--owner", env.owner, "-a", lab.primary, "-r", lab.resolver, "--json"],
            [
                "publish",
                env.name,
                "--key",
                str(env.directory / "state" / "next" / f"{env.name}.key"),
                "--dry-run",
            ],
        ):
            result = env.rollover(*args)
            outputs.append(result.stdout + result.stderr)
        secret_text = lab.tsig_secret
        secrets = [secret_text.encode(), base64.b64decode(secret_text)]
        for key_file in (
            env.deploy_key,
            env.staged_key,
            env.directory / "state" / "next" / f"{env.name}.key",
        ):
            body = b"".join(
                line for line in key_file.read_bytes().splitlines() if not line.startswith(b"-----")
            )
            secrets.append(body)
            secrets.append(base64.b64decode(body))
            secrets.extend(
                line
                for line in key_file.read_bytes().splitlines()
                if not line.startswith(b"-----") and len(line) > 20
            )
        haystacks = [o.encode() for o in outputs]
        state = env.directory / "state"
        for path in state.rglob("*"):
            if path.is_file() and not path.name.endswith((".key", ".pem")):
                haystacks.append(path.read_bytes())
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0 or (
                    path.suffix == ".pem" and "key" not in path.name and "priv" not in path.name
                ), path
        for hay in haystacks:
            for secret in secrets:
                assert secret not in hay
        # Every file holding a private key under the state directory is 0600.
        for path in (
            list(state.rglob("*.key"))
            + list(state.rglob("privkey.pem"))
            + list(state.rglob("key.pem"))
        ):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        env.stop_server()
