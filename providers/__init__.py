"""DNS provider adapters (RFC 2136, zone file, Route 53, PowerDNS, Cloudflare, deSEC) behind one
Protocol.

Adapters are chosen by ``type`` in the configuration. The built-in ones are imported only when
used; third-party adapters register a module through the ``rollover.providers`` entry point group.
An adapter module offers ``parse_settings(section, warnings)`` (validation, no I/O beyond checking
secret files) and ``create(name, settings)`` returning a :class:`rollover.ports.Provider`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from rollover.errors import ConfigError
from rollover.ports import Provider

BUILTIN = {
    "rfc2136": "rollover.providers.rfc2136",
    "zonefile": "rollover.providers.zonefile",
    "route53": "rollover.providers.route53",
    "powerdns": "rollover.providers.powerdns",
    "cloudflare": "rollover.providers.cloudflare",
    "desec": "rollover.providers.desec",
}


def adapter_module(kind: str) -> ModuleType | None:
    """The module implementing provider ``kind``, or None when nothing provides it."""
    if kind in BUILTIN:
        try:
            return importlib.import_module(BUILTIN[kind])
        except ModuleNotFoundError as exc:
            if exc.name == BUILTIN[kind]:
                return None
            raise
    from importlib.metadata import entry_points

    for entry in entry_points(group="rollover.providers"):
        if entry.name == kind:
            module = entry.load()
            return module if isinstance(module, ModuleType) else None
    return None


def settings_parser(kind: str) -> Any:
    module = adapter_module(kind)
    return None if module is None else module.parse_settings


def create_provider(name: str, kind: str, settings: Any) -> Provider:
    """The adapter for ``providers.<name>``; ConfigError when no module provides ``kind`` or
    what it creates is not a provider (validated at load time too; kept for direct callers)."""
    module = adapter_module(kind)
    if module is None:
        raise ConfigError(f"providers.{name}.type: no provider adapter of type {kind!r}")
    provider = module.create(name, settings)
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"providers.{name}.type: the {kind!r} adapter did not create a provider "
            "(read, apply, wait, zone_for)"
        )
    return provider
