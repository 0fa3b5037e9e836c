"""The error hierarchy. Every failure a user can cause or meet maps to one of these.

::

    RolloverError                 (root; never raised itself: each failure has its kind)
    ├── InputError                exit 3   a source file, argument or value is unusable
    ├── ConfigError               exit 4   the configuration file is wrong (names the key path)
    ├── ProviderError             exit 5   a DNS provider refused or failed a read or a change
    ├── ConflictError             exit 6   compare-and-swap: the RRset or the rollover record
    │                                      changed under us (nothing was written)
    ├── ObserverError             exit 7   DNS could not be observed (timeouts, no servers)
    ├── PreconditionError         exit 8   a safety guard refused to act
    ├── StateError                exit 11  the state store or the ownership ledger cannot be
    │                                      opened, read or written
    ├── DeployError               exit 12  installing the chain and key, or the reload, failed
    ├── FileError                 exit 13  another file the tool writes (metrics, a key, a
    │                                      backup) cannot be written or locked
    └── CommandError              exit 14  a configured command exited non-zero, timed out or
                                           could not start

Exit codes 1 (warnings under ``--strict``), 2 (usage), 9 (held by a fault) and 10 (a rollover
needs a person) are outcomes, not errors. The CLI prints ``str(error)`` as one line on stderr
and exits with ``error.exit_code``; ``tests/test_errors.py`` keeps the codes distinct.
"""

from __future__ import annotations


class RolloverError(Exception):
    """Root of every error the tool raises on purpose; only its subclasses are raised."""

    exit_code = 1


class InputError(RolloverError):
    """A source (certificate, key, CSR), argument or value cannot be used.

    Example: ``mx1.pem: truncated PEM block (BEGIN CERTIFICATE without END)``.
    """

    exit_code = 3


class ConfigError(RolloverError):
    """The configuration is wrong; the message names the key path, e.g. ``services.mx1.port``."""

    exit_code = 4


class ProviderError(RolloverError):
    """A DNS provider refused, failed or timed out on a read or a change."""

    exit_code = 5


class ConflictError(RolloverError):
    """Compare-and-swap failed: the RRset is not what was read before the change, or the
    rollover record was changed (or its lease taken) by another process."""

    exit_code = 6


class ObserverError(RolloverError):
    """DNS could not be observed well enough to decide anything."""

    exit_code = 7


class PreconditionError(RolloverError):
    """A safety guard refused an action (e.g. withdrawing the last live association)."""

    exit_code = 8


class StateError(RolloverError):
    """The state directory, the rollover store or the ownership ledger is unusable."""

    exit_code = 11


class DeployError(RolloverError):
    """Installing the chain and key where the server reads them, or its reload, failed."""

    exit_code = 12


class FileError(RolloverError):
    """A file could not be written or locked. The message is one line naming the path;
    ``reason`` is the operating system's word for it (``No space left on device``)."""

    exit_code = 13

    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class CommandError(RolloverError):
    """A command exited non-zero, timed out or could not start; ``str()`` is the one line."""

    exit_code = 14

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        timed_out: bool = False,
        tail: str = "",
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.timed_out = timed_out
        self.tail = tail
