"""The ``state:`` section: backend, DSN file, lease; and `rollover state` refusing what it cannot do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rollover import providers
from rollover.config import StateConfig, parse_config
from rollover.errors import ConfigError
from tests.conftest import assert_one_line_error, run_rollover
from tests.test_config import base


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    from tests.test_config import SECRET

    path = tmp_path / "lab.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def with_state(secret: Path, state: Any) -> dict[str, Any]:
    doc = base(secret)
    doc["state"] = state
    return doc


def test_sqlite_is_the_default(secret: Path) -> None:
    config = parse_config(base(secret), "c.yaml", providers.settings_parser)
    assert config.state == StateConfig()
    assert config.state.backend == "sqlite"


def test_postgresql_with_a_dsn_file(secret: Path, tmp_path: Path) -> None:
    dsn = tmp_path / "pg.dsn"
    dsn.write_text("host=127.0.0.1 password=hunter2\n")
    dsn.chmod(0o644)
    state = {"backend": "postgresql", "dsn_file": str(dsn), "lease_seconds": 120}
    config = parse_config(with_state(secret, state), "c.yaml", providers.settings_parser)
    assert config.state == StateConfig("postgresql", str(dsn), 10.0, 120.0)
    # Readable by others: a warning naming the key, never the DSN's text.
    assert any("state.dsn_file" in w and "chmod 600" in w for w in config.warnings)
    assert not any("hunter2" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ({"backend": "mysql"}, "state.backend: 'mysql': use one of sqlite, postgresql"),
        ({"backend": "sqlite", "dsn_file": "/x"}, "state.dsn_file: only for backend: postgresql"),
        ({"backend": "postgresql", "dsn_file": "/nonexistent/pg.dsn"}, "no such file"),
        ({"backend": "postgresql", "lease_seconds": 5}, "state.lease_seconds: 5 is below 20"),
        ({"backend": "postgresql", "dns_file": "/x"}, "state.dns_file"),  # unknown key
        ({"backend": "postgresql", "lease_seconds": 40}, "deploy.reload_timeout: 60 s is more"),
    ],
)
def test_bad_state_sections_name_their_key(secret: Path, state: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_state(secret, state), "c.yaml", providers.settings_parser)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_state_commands_need_the_postgresql_backend(secret: Path, tmp_path: Path) -> None:
    config = tmp_path / "rollover.yaml"
    config.write_text(yaml.safe_dump(base(secret)))
    result = run_rollover("state", "migrate", "--config", str(config))
    assert_one_line_error(result, 4, "state.backend is sqlite")


def test_state_import_refuses_a_directory_without_state(secret: Path, tmp_path: Path) -> None:
    dsn = tmp_path / "pg.dsn"
    dsn.write_text("host=127.0.0.1 port=1 password=hunter2\n")
    dsn.chmod(0o600)
    config = tmp_path / "rollover.yaml"
    config.write_text(
        yaml.safe_dump(with_state(secret, {"backend": "postgresql", "dsn_file": str(dsn)}))
    )
    result = run_rollover("state", "import", str(tmp_path / "empty"), "--config", str(config))
    assert_one_line_error(result, 11, "no state.db here")
    assert "hunter2" not in result.stderr + result.stdout
