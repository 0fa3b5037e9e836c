"""A tick over more services than the open-files limit would allow with one state-store
connection per service: ``advance --all`` must go through every service (each one's own
provider error here, one line each), never "Too many open files", never a traceback."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from rollover.core.association import owner_name
from rollover.core.phases import Phase, Rollover
from rollover.state.store import SqliteStateStore
from tests.test_config import SECRET
from tests.test_matching import rec
from tests.world import chain_of

SERVICES = 400  # three descriptors a connection: 1,200 > the limit below
LIMIT = 256


def _fleet(tmp_path: Path, closed_port: int) -> Path:
    secret = tmp_path / "k.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    state = tmp_path / "state"
    services = {
        f"mx{i}": {"host": f"mx{i}.example.test", "provider": "primary"} for i in range(SERVICES)
    }
    config = tmp_path / "rollover.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "primary": {
                        "type": "rfc2136",
                        "server": "127.0.0.1",
                        "port": closed_port,  # nothing listens: every read fails at once
                        "zone": "example.test",
                        "timeout": 0.2,
                        "retries": 1,
                        "tsig": {"name": "k", "secret_file": str(secret)},
                    }
                },
                "resolvers": [f"127.0.0.1:{closed_port}"],
                "state_dir": str(state),
                "services": services,
            }
        )
    )
    store = SqliteStateStore(str(state))
    now = datetime.now(UTC)
    new = frozenset({rec("3 1 1", chain_of(1)[0])})
    old = frozenset({rec("3 1 1", chain_of(0)[0])})
    for name in services:
        host = services[name]["host"]
        store.create(
            Rollover(
                name,
                owner_name(host, 25),
                Phase.PUBLISHING,
                old,
                new,
                "/nonexistent/chain.pem",
                "/nonexistent/key.pem",
                "0" * 64,
                now,
                now,
            )
        )
    store.close()
    return config


def test_advance_all_under_a_low_open_files_limit(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    config = _fleet(tmp_path, closed_port)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

    result = subprocess.run(
        [sys.executable, "-m", "rollover", "advance", "--all", "--config", str(config)],
        capture_output=True,
        text=True,
        preexec_fn=low_limit,
        timeout=600,
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert "Too many open files" not in result.stderr
    assert "unable to open database file" not in result.stderr
    warned = {line.split(":")[2].strip() for line in result.stderr.splitlines() if "mx" in line}
    assert len(warned) == SERVICES, result.stderr[-2000:]
    assert result.returncode == 5  # every service's provider error, none lost


def _rollover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollover", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_and_metrics_over_the_fleet(tmp_path: Path) -> None:
    """``status --json`` (one array, a service a line) and ``metrics --no-verify`` over every
    service of a large configuration, from one state connection."""
    import json

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    config = _fleet(tmp_path, closed_port)
    status = _rollover("status", "--json", "--config", str(config))
    assert status.returncode == 0, status.stderr
    documents = json.loads(status.stdout)
    assert sorted(d["service"] for d in documents) == sorted(f"mx{i}" for i in range(SERVICES))
    assert {d["phase"] for d in documents} == {"publishing"}
    assert len(status.stdout.splitlines()) == SERVICES + 2  # "[", a service a line, "]"
    metrics = _rollover("metrics", "--no-verify", "--config", str(config))
    assert metrics.returncode == 0, metrics.stderr
    phases = [line for line in metrics.stdout.splitlines() if line.startswith("rollover_phase{")]
    assert sum(line.endswith(" 1") for line in phases) == SERVICES
