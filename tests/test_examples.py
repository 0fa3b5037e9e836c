"""The example configurations validate, and the example files are well-formed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_rollover

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "name", ["postfix-certbot-rfc2136", "postfix-acmesh-route53", "exim-dehydrated-zonefile"]
)
def test_example_configuration_is_valid(name: str, tmp_path: Path) -> None:
    text = (EXAMPLES / name / "rollover.yaml").read_text()
    key_file = tmp_path / "rollover-key.key"
    key_file.write_text(
        'key "rollover-key" {\n\talgorithm hmac-sha256;\n\tsecret "'
        + base64.b64encode(b"s" * 32).decode()
        + '";\n};\n'
    )
    key_file.chmod(0o600)
    text = text.replace("/etc/rollover/rollover-key.key", str(key_file))
    path = tmp_path / "rollover.yaml"
    path.write_text(text)
    result = run_rollover("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings: deploy paths are not the ACME client's files
    doc = yaml.safe_load(text)
    assert all("deploy" in s for s in doc["services"].values())


def test_systemd_units_and_cron_use_advance_all() -> None:
    service = (EXAMPLES / "systemd" / "rollover-advance.service").read_text()
    assert "ExecStart=/usr/local/bin/rollover advance --all" in service
    assert "LimitNOFILE=65536" in service  # a fleet's tick, whatever the default limit
    assert "OnUnitActiveSec=1min" in (EXAMPLES / "systemd" / "rollover-advance.timer").read_text()
    cron = (EXAMPLES / "cron").read_text()
    assert "rollover advance --all" in cron
    assert "rollover metrics" in cron
