"""A whole rollover through the PowerDNS API adapter, with the strict DANE sender running all the
way: a real pdns_server (live-signed ``pdns.test.``), two validating unbounds with the zone's DS
as their trust anchor, the STARTTLS test server, and the command line in subprocesses."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollover import providers
from rollover.core.material import spki_der
from tests.dane_sender import StrictSender, assert_clean
from tests.pdns import SIGNED, PdnsLab, pdns_resolving
from tests.rollover_env import ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab
__all__ = ["pdns_resolving"]

# Until providers/__init__.py lists ``powerdns`` in BUILTIN, the subprocess registers it first.
_LAUNCH = (
    "import sys, rollover.providers as p; "
    "p.BUILTIN.setdefault('powerdns', 'rollover.providers.powerdns'); "
    "from rollover.cli import main; sys.argv[0] = 'rollover'; main()"
)


class PdnsServiceEnv(ServiceEnv):
    """tests/rollover_env.py's service, published through ``type: powerdns``."""

    pdns: PdnsLab

    def write_config(self, **service_extra: Any) -> Path:
        assert self.server is not None
        service: dict[str, Any] = {
            "host": self.host,
            "provider": "pdns",
            "records": list(self.records),
            "ttl": self.ttl,
            "authoritative": [self.pdns.primary],
            "deploy": {
                "chain": str(self.deploy_chain),
                "key": str(self.deploy_key),
                "reload": ["kill", "-HUP", str(self.server.pid)],
                "reload_timeout": 10,
            },
            "probe": {"connect": [self.endpoint], "starttls": "smtp", "timeout": 5},
        }
        service.update(service_extra)
        doc = {
            "providers": {
                "pdns": {
                    "type": "powerdns",
                    "api_url": self.pdns.api_url,
                    "api_key_file": str(self.pdns.api_key_file),
                    "timeout": 5,
                    "retries": 2,
                }
            },
            "resolvers": [self.pdns.resolver],
            "state_dir": str(self.directory / "state"),
            "safety_factor": 2,
            "services": {self.name: service},
        }
        self.config = self.directory / "rollover.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        return self.config

    def rollover(self, *args: str, **kwargs: Any) -> Any:
        if "powerdns" in providers.BUILTIN or kwargs.get("crash_at"):
            return super().rollover(*args, **kwargs)
        import os
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
        env.update(kwargs.get("env") or {})
        result = subprocess.run(
            [sys.executable, "-c", _LAUNCH, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=kwargs.get("timeout", 120),
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.transcript.append(result.stdout + result.stderr)
        return result


@pytest.fixture
def service(pdns_resolving: PdnsLab, tmp_path: Path) -> Any:
    env = PdnsServiceEnv(
        pdns_resolving,  # type: ignore[arg-type]
        tmp_path,
        host=f"mx-{secrets.token_hex(4)}.{SIGNED.rstrip('.')}",
    )
    env.pdns = pdns_resolving
    env.setup()
    yield env
    env.stop_server()


def test_full_rollover_through_the_powerdns_api(service: PdnsServiceEnv) -> None:
    pdns = service.pdns
    assert pdns.served(service.owner) == {str(rec("3 1 1", service.pki.leaf))}
    sender = StrictSender(
        service.owner,
        service.host,
        [service.endpoint],
        authoritative=[pdns.primary],
        resolvers=[pdns.sender_resolver],
        ttl_hint=float(service.ttl),
    ).start()
    try:
        sender.wait_ready()
        started = service.start_rollover()
        assert started.returncode == 0, started.stdout + started.stderr
        run = service.rollover("run", service.name, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "done" in run.stdout
        time.sleep(1)
    finally:
        sender.stop()
    assert_clean(sender, 10)
    assert spki_der(service.served_leaf()) == spki_der(service.next_leaf)
    # Only the new association is left, served signed by PowerDNS.
    assert pdns.served(service.owner) == {str(rec("3 1 1", service.next_leaf))}
    response = pdns.query(pdns.primary, service.owner, "TLSA")
    assert any(rrset.rdtype == 46 for rrset in response.answer)
    status = json.loads(service.rollover("status", service.name, "--json").stdout)
    assert status["phase"] == "done"
    assert status["error"] is None
    history = json.loads(service.rollover("history", service.name, "--json").stdout)
    phases = [h["detail"].get("to") for h in history if h["event"] == "transition"]
    for phase in ("propagating", "deploying", "retiring", "done"):
        assert phase in phases
    changes = [h["detail"] for h in history if h["event"] == "provider-change"]
    assert changes
    assert all(c["provider"] == "pdns" for c in changes)
    assert all(str(c["change_id"]).startswith("serial>=") for c in changes)
    assert service.leaks(pdns.api_key) == []
