"""Fixtures shared by the lab tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.rollover_env import ServiceEnv


@pytest.fixture
def env(lab: Lab, tmp_path: Path) -> Iterator[ServiceEnv]:
    """One service: its STARTTLS server up, its current records published and visible."""
    service = ServiceEnv(lab, tmp_path)
    service.setup()
    yield service
    service.stop_server()
