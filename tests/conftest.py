from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _private_config_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The parsed-configuration cache (rollover.config.DocumentCache) of this test run's own,
    inherited by every command the tests start: never the user's ~/.cache."""
    os.environ.pop("CACHE_DIRECTORY", None)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


def run_rollover(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess, the way a user or a hook runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOVER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rollover", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def rollover_cli():
    return run_rollover


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], status: int, *needles: str
) -> None:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert error_lines, result.stderr
    for needle in needles:
        assert any(needle in line for line in error_lines), (needle, result.stderr)


@pytest.fixture(scope="session")
def lab():  # type: ignore[no-untyped-def]
    """The BIND + unbound lab, shared by the session. Fails (never skips) when it cannot start."""
    from tests.lab import Lab, LabError

    try:
        running = Lab.start_new()
    except LabError as exc:
        pytest.fail(f"the DNS lab could not start: {exc}")
    yield running
    running.stop()


# Fixtures that start real servers: a test using one must carry the ``lab`` marker, so that
# ``-m "not lab"`` (the fast suite) never starts BIND, unbound, Postfix or moto.
SERVER_FIXTURES = {
    "lab",
    "env",
    "moto_endpoint",
    "aws_env",
    "pdns",
    "pdns_resolving",
    "knot",
    "knot_env",
    "postgres",
    "dovecot",
}


@pytest.fixture(scope="module")
def postgres():  # type: ignore[no-untyped-def]
    """A PostgreSQL cluster of the module's own (tests/postgres.py: initdb in a temp dir, on
    loopback, stopped by PID); fails, never skips, if it cannot start."""
    from tests.postgres import HarnessError, PostgresCluster

    try:
        cluster = PostgresCluster.create()
    except HarnessError as exc:
        pytest.fail(f"PostgreSQL could not start: {exc}")
    yield cluster
    cluster.destroy()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("lab") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests start real servers but are not marked lab: " + ", ".join(unmarked)
        )


# Reproducible property tests: the same examples on every run (and in CI).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("rollover", derandomize=True)
_hypothesis_settings.load_profile("rollover")


from tests.aws import aws_env, moto_endpoint  # noqa: E402  (fixtures for every module)

__all__ = ["aws_env", "lab", "moto_endpoint", "run_rollover"]
