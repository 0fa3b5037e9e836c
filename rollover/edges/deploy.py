"""Install the new chain and key where the server reads them, then reload it.

Files are written to a temp file in the same directory, fsynced and renamed over the target; the
key is 0600 whatever the umask, and an existing file's owner and group are kept. The reload
command runs as an argument list (a string runs through the shell, as configured) with a timeout;
its output is captured and its failure reported.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

from rollover.config import DeployConfig
from rollover.errors import RolloverError


class DeployError(RolloverError):
    exit_code = 5


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError(f"{path}: cannot read: {exc.strerror or exc}") from None


def unsafe_path_reason(path: str) -> str | None:
    """Why a deploy path is unsafe to write: a world-writable directory on the way (anyone could
    swap the file or plant a symlink), or a symlink owned by another user."""
    target = Path(path)
    try:
        link = target.lstat()
    except FileNotFoundError:
        link = None
    except OSError as exc:
        return f"cannot inspect it: {exc.strerror or exc}"
    me = os.geteuid()
    if link is not None and stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, me):
        return f"it is a symlink owned by uid {link.st_uid}"
    directory = target.parent
    while True:
        try:
            st = directory.stat()
        except OSError:
            break
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            return f"{directory} is world-writable"
        if st.st_mode & stat.S_IWOTH and directory == target.parent:
            return f"{directory} is world-writable (sticky, but the file's own directory)"
        if directory.parent == directory:
            break
        directory = directory.parent
    return None


def write_file(path: str, data: bytes, *, private: bool) -> None:
    target = Path(path)
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DeployError(f"{path}: {exc.strerror or exc}") from None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise DeployError(f"{path}: cannot write in {target.parent}: {exc.strerror}") from None
    try:
        mode = 0o600 if private else (st.st_mode & 0o777 if st else 0o644)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if st is not None and os.geteuid() == 0:
            os.chown(temp, st.st_uid, st.st_gid)
        os.replace(temp, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise DeployError(f"{path}: cannot write: {exc.strerror or exc}") from None


class Deployer(Protocol):
    """Where the server reads its chain and key, and how it is told to read them again."""

    def deployed(self) -> tuple[bytes | None, bytes | None]: ...
    def matches(self, chain: bytes, key: bytes) -> bool: ...
    def install(self, chain: bytes, key: bytes) -> None: ...
    def reload(self) -> None: ...
    def describe(self) -> str: ...


class FileDeployer:
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
            result = subprocess.run(
                command,
                shell=isinstance(command, str),
                capture_output=True,
                text=True,
                timeout=self.config.reload_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"reload command killed after {self.config.reload_timeout:g} s"
            ) from None
        except OSError as exc:
            raise DeployError(f"reload command failed to start: {exc.strerror or exc}") from None
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise DeployError(
                f"reload command exited {result.returncode}" + (f": {output[-1]}" if output else "")
            )
