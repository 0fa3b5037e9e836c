"""A third-party provider adapter, registered through the entry point group in a test."""

from __future__ import annotations

from typing import Any

from rollover.config import Section


def parse_settings(section: Section, warnings: list[str]) -> dict[str, Any]:
    return {"label": section.text("label", "fake")}


def create(name: str, settings: dict[str, Any]) -> object:
    return ("fake-provider", name, settings["label"])
