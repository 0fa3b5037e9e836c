"""Running a configured command (a reload, an ``on_event`` hook) and saying how it failed.

A list runs as an argument list; a string runs through /bin/sh (the configuration allows one only
with ``shell: true``). The command runs in a session of its own with its output captured; on its
timeout the whole session is killed (a shell's children too), so nothing it started outlives it.
A failure is one line naming the command by its label: ``reload command exited 1: <last line of
its stderr>``, ``reload command timed out: killed after 60 s``, ``reload command failed to start:
/usr/sbin/postfix: No such file or directory``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress

from rollover.errors import CommandError

TAIL_CHARS = 300


def run_command(
    command: Sequence[str] | str,
    *,
    timeout: float,
    label: str = "command",
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to completion within ``timeout`` seconds and return its captured output.

    ``env`` adds variables to the current environment. Raises :class:`CommandError` when the
    command exits non-zero (the message ends with the last line of its stderr, or of its stdout
    when stderr is empty), is killed at its timeout, or cannot be started.
    """
    shell = isinstance(command, str)
    if not command:
        raise CommandError(f"{label} failed to start: the command is empty")
    try:
        process = subprocess.Popen(
            command,
            shell=shell,
            env=None if env is None else {**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        raise CommandError(f"{label} failed to start: {_start_reason(exc)}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise CommandError(
            f"{label} timed out: killed after {timeout:g} s", timed_out=True
        ) from None
    except BaseException:
        _kill(process)
        raise
    code = process.returncode
    if code != 0:
        tail = tail_line(stderr) or tail_line(stdout)
        how = f"exited {code}" if code > 0 else f"was killed by {_signal_name(-code)}"
        raise CommandError(
            f"{label} {how}" + (f": {tail}" if tail else ""), returncode=code, tail=tail
        )
    return subprocess.CompletedProcess(command, code, stdout, stderr)


def tail_line(output: str) -> str:
    """The last non-empty line of ``output``, cut to :data:`TAIL_CHARS` characters."""
    lines = output.strip().splitlines()
    if not lines:
        return ""
    last = lines[-1].strip()
    return last if len(last) <= TAIL_CHARS else last[: TAIL_CHARS - 3] + "..."


def _start_reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return f"{exc.filename}: {reason}" if exc.filename else reason
    return str(exc)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill the command's whole session, reap it, and close its pipes without waiting on them
    (a process that left the session may still hold them open)."""
    with suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(OSError):
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with suppress(OSError):
                stream.close()
