"""Trust-anchor pinning and JSON logs, against the lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.certs import make_cert, make_key, pem
from tests.lab import Lab
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


def test_pinned_trust_anchors_published_and_checked(lab: Lab, tmp_path: Path) -> None:
    env = ServiceEnv(lab, tmp_path, records=("3 1 1", "2 0 1"))
    env.start_server()
    try:
        backup_key = make_key("p256", "backup-intermediate")
        backup = make_cert(
            "Backup Intermediate", backup_key, (env.pki.root, env.pki.root_key), ca=True
        )
        current_file, backup_file = tmp_path / "current-ca.pem", tmp_path / "backup-ca.pem"
        current_file.write_bytes(pem(env.pki.intermediate))
        backup_file.write_bytes(pem(backup))
        env.write_config(trust_anchors=[str(current_file), str(backup_file)])
        published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain))
        assert published.returncode == 0, published.stderr
        response = lab.query(lab.primary, env.owner, "TLSA")
        served = {str(r) for rrset in response.answer if rrset.rdtype == 52 for r in rrset}
        assert served == {
            str(rec("3 1 1", env.pki.leaf)),
            str(rec("2 0 1", env.pki.intermediate)),
            str(rec("2 0 1", backup)),
        }
        ok = env.rollover("verify", "--service", env.name, "--json")
        assert ok.returncode == 0, ok.stdout
        env.write_config(trust_anchors=[str(backup_file)])
        warned = env.rollover("verify", "--service", env.name, "--json")
        assert warned.returncode == 1
        reasons = json.loads(warned.stdout)["results"][0]["reasons"]
        assert any("not among the pinned trust_anchors" in r for r in reasons)
        # metrics judges the service as verify --service does: pinning included
        metrics = env.rollover("metrics")
        assert metrics.returncode == 0, metrics.stderr
        verify_status = [
            line
            for line in metrics.stdout.splitlines()
            if line.startswith("rollover_verify_status{")
        ]
        assert verify_status == [f'rollover_verify_status{{service="{env.name}"}} 1']
        # status says so too, offline, from the deployed chain
        assert env.start_rollover().returncode == 0
        status = json.loads(env.rollover("status", env.name, "--json").stdout)
        assert any("not among the pinned" in w for w in status["warnings"])
        # JSON logs: one object per line
        logs = env.rollover("--log-format", "json", "advance", env.name, "-v")
        lines = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
        assert lines
        assert all({"time", "level", "message"} <= set(x) for x in lines)
        assert env.rollover("abort", env.name).returncode == 0
    finally:
        env.stop_server()
