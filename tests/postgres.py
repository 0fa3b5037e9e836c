"""A real PostgreSQL cluster for the tests: Debian's PostgreSQL binaries (15 on Debian 12),
a cluster made by ``initdb`` in a temporary directory, listening on 127.0.0.1 on a free port
only (no Unix socket), password (SCRAM-SHA-256) authentication for every connection, started
and stopped by PID.

PostgreSQL refuses to run as root (``postgres``: "root execution of the PostgreSQL server is
not permitted"), so when the tests run as root (CI) the cluster's files belong to ``nobody``
and ``initdb`` and ``postgres`` run as that user; otherwise as the current user.

Use it from pytest (a module fixture in tests/test_postgres_store.py) or by hand::

    .venv/bin/python -m tests.postgres     # starts, prints the DSN, stops on Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _bin_dir() -> Path:
    """``ROLLOVER_TEST_PG_BIN``, else the newest of Debian's /usr/lib/postgresql/<major>/bin
    (15 on Debian 12)."""
    if os.environ.get("ROLLOVER_TEST_PG_BIN"):
        return Path(os.environ["ROLLOVER_TEST_PG_BIN"])
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


BIN = _bin_dir()
ADMIN = "postgres"
ROLE = "rollover"
DATABASE = "rollover"


class HarnessError(RuntimeError):
    """The cluster could not be made or started (missing binaries, a server that died)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """The unprivileged user the server runs as when we are root; None: as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(os.environ.get("ROLLOVER_TEST_PG_USER", "nobody"))
    except KeyError as exc:
        raise HarnessError(
            f"running as root and no unprivileged user to run PostgreSQL: {exc}"
        ) from None
    return entry.pw_uid, entry.pw_gid


def quote_value(value: str) -> str:
    """A libpq key/value connection string value, quoted (libpq's rules: \\ and ')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class PostgresCluster:
    """A cluster in ``directory``. Make one with :meth:`create`; always :meth:`destroy`."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rollover-pg-")))
    port: int = 0
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(12))
    admin_password: str = field(default_factory=lambda: "admin-" + secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None
    user: tuple[int, int] | None = None
    _schemas: int = 0

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "postgres.pid"

    # -- life cycle ------------------------------------------------------------------------
    @classmethod
    def create(cls) -> PostgresCluster:
        for name in ("initdb", "postgres"):
            if not os.access(BIN / name, os.X_OK):
                raise HarnessError(f"{BIN / name} not found: install postgresql")
        cluster = cls()
        try:
            cluster._init()
            cluster.start()
            cluster.admin(
                f"CREATE ROLE {ROLE} LOGIN PASSWORD {quote_value(cluster.password)}",
                f"CREATE DATABASE {DATABASE} OWNER {ROLE}",
            )
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _child(self) -> dict[str, Any]:
        """Popen arguments: as the unprivileged user when we are root, a clean environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        extra: dict[str, Any] = {"env": env, "cwd": str(self.directory)}
        if self.user is not None:
            extra.update(user=self.user[0], group=self.user[1], extra_groups=[])
        return extra

    def _init(self) -> None:
        self.user = _run_as()
        self.port = _free_port()
        secret = self.directory / "admin.pw"
        secret.write_text(self.admin_password + "\n")
        secret.chmod(0o600)
        if self.user is not None:
            for path in (self.directory, secret):
                os.chown(path, *self.user)
        result = subprocess.run(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ADMIN,
                f"--pwfile={secret}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._child(),
        )
        secret.unlink()
        if result.returncode != 0:
            raise HarnessError(f"initdb failed: {result.stderr.strip()[-800:]}")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",  # a test cluster: clean stops and process crashes only
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "40",
            "timezone": "'UTC'",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests/postgres.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        # TCP on loopback with a password, nothing else.
        (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server on the data directory and wait until it accepts a login."""
        if self.alive():
            return
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "postgres"), "-D", str(self.data)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._child(),
            )
        self.pid_file.write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise HarnessError(f"postgres exited {self.process.returncode}: {self.log_tail()}")
            try:
                self.admin("SELECT 1")
                return
            except HarnessError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def stop(self, mode: signal.Signals = signal.SIGINT, timeout: float = 15.0) -> None:
        """Stop by the recorded PID: SIGINT is PostgreSQL's fast shutdown (clients cut off,
        a clean checkpoint); SIGQUIT its immediate shutdown (a crash: recovery on start).
        SIGKILL after ``timeout``."""
        if not self.pid_file.exists():
            return
        pid = self.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, mode)
        deadline = time.monotonic() + timeout
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.process.wait(10)
                break
            time.sleep(0.02)
        self.pid_file.unlink(missing_ok=True)

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint, crash recovery at the next start."""
        self.stop(signal.SIGQUIT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- connecting ------------------------------------------------------------------------
    def dsn(
        self,
        *,
        schema: str | None = None,
        password: str | None = None,
        user: str = ROLE,
        database: str = DATABASE,
    ) -> str:
        """A libpq key/value DSN for ``user`` (the test role), with ``search_path`` set to
        ``schema`` when given."""
        parts = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "dbname": database,
            "user": user,
            "password": self.password if password is None else password,
            "connect_timeout": "5",
        }
        if schema is not None:
            parts["options"] = f"-csearch_path={schema}"
        return " ".join(f"{key}={quote_value(value)}" for key, value in parts.items())

    def admin(self, *statements: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run ``statements`` as the superuser (autocommit); the rows of the last one."""
        import psycopg

        dsn = self.dsn(user=ADMIN, password=self.admin_password, database=database)
        rows: list[tuple[Any, ...]] = []
        try:
            with psycopg.connect(dsn, autocommit=True) as connection:
                for statement in statements:
                    cursor = connection.execute(statement.encode())
                    rows = list(cursor.fetchall()) if cursor.description else []
        except psycopg.OperationalError as exc:
            raise HarnessError(f"cannot run as {ADMIN}: {exc}") from None
        return rows

    def psql(self, sql: str, *, schema: str | None = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the superuser in the test database (in ``schema`` when given)."""
        setup = [f"SET search_path TO {schema}"] if schema else []
        return self.admin(*setup, sql, database=DATABASE)

    def fresh_schema(self) -> tuple[str, str]:
        """A new, empty schema owned by the test role, and a DSN whose search_path is it: one
        per test, so tests share the cluster and never each other's tables."""
        self._schemas += 1
        name = f"t{self._schemas}_{secrets.token_hex(3)}"
        self.admin(f"CREATE SCHEMA {name} AUTHORIZATION {ROLE}", database=DATABASE)
        return name, self.dsn(schema=name)


def main() -> None:
    cluster = PostgresCluster.create()
    try:
        schema, dsn = cluster.fresh_schema()
        print(f"PostgreSQL (pid {cluster.pid}) on 127.0.0.1:{cluster.port}; schema {schema}")
        print(dsn)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
