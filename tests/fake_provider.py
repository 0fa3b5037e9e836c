"""A third-party provider adapter, registered through the entry point group in a test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollover.config import Section
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ProviderError
from rollover.ports import Receipt


def parse_settings(section: Section, warnings: list[str]) -> dict[str, Any]:
    return {"label": section.text("label", "fake")}


@dataclass
class LabelProvider:
    """Reads nothing, writes nothing: enough to be a :class:`rollover.ports.Provider`."""

    name: str
    label: str

    def zone_for(self, owner: str) -> str:
        return owner.split(".", 1)[1]

    def read(self, owner: str) -> TlsaRRset:
        return TlsaRRset(owner, None, frozenset())

    def apply(self, change: Change) -> Receipt:
        raise ProviderError(f"{self.name}: {self.label} cannot write")

    def wait(self, receipt: Receipt, timeout: float) -> None:
        return None


def create(name: str, settings: dict[str, Any]) -> object:
    if settings["label"] == "not-a-provider":
        return ("fake-provider", name)
    return LabelProvider(name, settings["label"])
