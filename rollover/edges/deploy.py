"""Install the new chain and key where the server reads them, then reload it.

Files are replaced by :func:`rollover.edges.files.write_atomic` (temp file, fsync, rename): the key
is 0600 whatever the umask, and an existing file's owner and group are kept. The reload command
runs through :func:`rollover.edges.commands.run_command` (an argument list, or a string through
the shell as configured) with its timeout; its failure is reported.
"""

from __future__ import annotations

from pathlib import Path

from rollover.config import DeployConfig
from rollover.edges.commands import run_command
from rollover.edges.files import unsafe_path_reason, write_atomic
from rollover.errors import CommandError, DeployError, FileError

__all__ = ["FileDeployer", "write_file"]


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError(f"{path}: cannot read: {exc.strerror or exc}") from None


def write_file(path: str, data: bytes, *, private: bool) -> None:
    """Install ``data`` at ``path`` with :func:`~rollover.edges.files.write_atomic`: a private
    file is 0600, any other keeps an existing file's mode (0644 for a new one); an existing
    file's owner and group are kept. A failure is a :class:`DeployError`."""
    try:
        write_atomic(
            path, data, mode=0o600 if private else 0o644, keep_mode=not private, keep_owner=True
        )
    except FileError as exc:
        raise DeployError(str(exc)) from None


class FileDeployer:
    """The :class:`rollover.ports.Deployer` of a configured ``deploy:`` section: files written
    atomically (modes and owners kept), then the reload command."""

    def __init__(self, config: DeployConfig) -> None:
        self.config = config

    def describe(self) -> str:
        return self.config.chain

    def deployed(self) -> tuple[bytes | None, bytes | None]:
        return _read(self.config.chain), _read(self.config.key)

    def matches(self, chain: bytes, key: bytes) -> bool:
        return self.deployed() == (chain, key)

    def install(self, chain: bytes, key: bytes) -> None:
        for path in (self.config.key, self.config.chain):
            reason = unsafe_path_reason(path)
            if reason is not None:
                raise DeployError(f"{path}: refusing to deploy: {reason}")
        # The key first: a server that reads a new chain with the old key fails to start, one
        # that reads the old chain with the new key fails too, but a reload only follows both.
        write_file(self.config.key, key, private=True)
        write_file(self.config.chain, chain, private=False)

    def reload(self) -> None:
        command = self.config.reload
        if command is None:
            return
        try:
            run_command(command, label="reload command", timeout=self.config.reload_timeout)
        except CommandError as exc:
            raise DeployError(str(exc)) from None
