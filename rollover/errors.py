"""The error hierarchy. Every failure a user can cause or meet maps to one of these.

::

    RolloverError                 exit 1   (root; never raised bare by the tool)
    ├── InputError                exit 3   a source file, argument or value is unusable
    ├── ConfigError               exit 4   the configuration file is wrong (names the key path)
    ├── ProviderError             exit 5   a DNS provider refused or failed a change
    │   └── ConflictError         exit 6   compare-and-swap: the RRset changed under us
    ├── ObserverError             exit 7   DNS could not be observed (timeouts, no servers)
    └── PreconditionError         exit 8   a safety guard refused to act

The CLI prints ``str(error)`` as one line on stderr and exits with ``error.exit_code``.
"""

from __future__ import annotations


class RolloverError(Exception):
    """Root of every error the tool raises on purpose."""

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


class ConflictError(ProviderError):
    """Compare-and-swap failed: the RRset is not what was read before the change."""

    exit_code = 6


class ObserverError(RolloverError):
    """DNS could not be observed well enough to decide anything."""

    exit_code = 7


class PreconditionError(RolloverError):
    """A safety guard refused an action (e.g. withdrawing the last live association)."""

    exit_code = 8
