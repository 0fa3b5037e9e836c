"""Reading and writing files: one clear line for every OS error, atomic replacement."""

from __future__ import annotations

import os
import stat
import sys

from rollover.core.material import MAX_SOURCE_BYTES
from rollover.errors import InputError


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
