"""Reading and writing files: one clear line for every OS error, atomic replacement, locks.

This is the one place files are replaced (:func:`write_atomic`: state, deployed chains and keys,
staged copies, next keys, zone files, metrics) and locked (:func:`locked`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from rollover.core.material import MAX_SOURCE_BYTES
from rollover.errors import FileError, InputError


def read_source(path: str, stdin: bytes | None = None) -> bytes:
    """Read a source's bytes, turning every OS error into one clear line."""
    if path == "-":
        data = stdin if stdin is not None else sys.stdin.buffer.read(MAX_SOURCE_BYTES + 1)
    else:
        try:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                raise InputError(f"{path}: is a directory, not a certificate, key or CSR file")
            if st.st_size > MAX_SOURCE_BYTES:
                raise InputError(f"{path}: larger than {MAX_SOURCE_BYTES} bytes; refusing to read")
            with open(path, "rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES + 1)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied") from None
        except IsADirectoryError:
            raise InputError(
                f"{path}: is a directory, not a certificate, key or CSR file"
            ) from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise InputError(f"{path}: larger than {MAX_SOURCE_BYTES} bytes; refusing to read")
    return data


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def unsafe_path_reason(path: str) -> str | None:
    """Why a path is unsafe to write: a world-writable directory on the way (anyone could swap
    the file or plant a symlink), or a symlink owned by another user."""
    target = Path(path)
    try:
        link = target.lstat()
    except FileNotFoundError:
        link = None
    except OSError as exc:
        return f"cannot inspect it: {_reason(exc)}"
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


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = 0o600,
    keep_mode: bool = False,
    keep_owner: bool = False,
) -> None:
    """Replace ``path`` by ``data``, never leaving a half-written file or a temp file behind.

    The data goes to a temp file in the same directory, which is given ``mode`` whatever the
    umask, written, fsynced and renamed over ``path``; the directory is fsynced after. With
    ``keep_mode`` an existing file's mode bits are kept (``mode`` is then for a new file); with
    ``keep_owner`` an existing file's owner and group are kept when running as root. Any OS error
    is a :class:`FileError`, and the old file (if any) is untouched.
    """
    target = Path(path)
    previous: os.stat_result | None = None
    if keep_mode or keep_owner:
        try:
            previous = target.stat()
        except FileNotFoundError:
            previous = None
        except OSError as exc:
            raise FileError(
                str(path), _reason(exc), f"{path}: cannot write: {_reason(exc)}"
            ) from None
    if keep_mode and previous is not None:
        mode = stat.S_IMODE(previous.st_mode)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise FileError(
            str(path), _reason(exc), f"{path}: cannot write in {target.parent}: {_reason(exc)}"
        ) from None
    replaced = False
    try:
        try:
            if keep_owner and previous is not None and os.geteuid() == 0:
                os.fchown(fd, previous.st_uid, previous.st_gid)
            os.fchmod(fd, mode)  # after the chown, which may clear the set-id bits
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        replaced = True
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException as exc:
        if not replaced:
            with suppress(OSError):
                os.unlink(temp)
        if isinstance(exc, OSError):
            raise FileError(
                str(path), _reason(exc), f"{path}: cannot write: {_reason(exc)}"
            ) from None
        raise


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created 0600), released on exit or process death."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise FileError(
            str(path), _reason(exc), f"{path}: cannot open lock: {_reason(exc)}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise FileError(
                str(path), _reason(exc), f"{path}: cannot lock: {_reason(exc)}"
            ) from None
        yield
    finally:
        os.close(fd)
