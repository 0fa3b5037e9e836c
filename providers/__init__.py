"""DNS provider adapters (RFC 2136, zone file, Route 53) behind one Protocol.

Adapters are chosen by ``type`` in the configuration. The built-in ones are imported only when
used; third-party adapters register a module through the ``rollover.providers`` entry point group.
An adapter module offers ``parse_settings(section, warnings)`` (validation, no I/O beyond checking
secret files) and ``create(name, settings)`` returning a :class:`providers.base.Provider`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

BUILTIN = {
    "rfc2136": "providers.rfc2136",
    "zonefile": "providers.zonefile",
    "route53": "providers.route53",
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


def create_provider(name: str, kind: str, settings: Any) -> Any:
    module = adapter_module(kind)
    if module is None:  # validated at load time; kept for direct callers
        raise KeyError(kind)
    return module.create(name, settings)
