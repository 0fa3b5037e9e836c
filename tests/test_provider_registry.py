from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rollover import providers
from rollover.config import parse_config
from rollover.errors import ConfigError
from rollover.ports import Provider


def test_third_party_adapter_through_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "rollover_fake-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rollover-fake\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rollover.providers]\nfake = tests.fake_provider\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = parse_config(
        {"providers": {"x": {"type": "fake", "label": "hello"}}},
        "c.yaml",
        providers.settings_parser,
    )
    assert config.providers["x"].settings == {"label": "hello"}
    created = providers.create_provider("x", "fake", {"label": "hello"})
    assert isinstance(created, Provider)
    assert (created.name, getattr(created, "label", None)) == ("x", "hello")
    assert providers.adapter_module("not-registered") is None
    assert "tests.fake_provider" in sys.modules
    # What an adapter creates must be a provider, or the configuration key says why.
    with pytest.raises(ConfigError, match=r"^providers\.y\.type: the 'fake' adapter did not"):
        providers.create_provider("y", "fake", {"label": "not-a-provider"})


def test_an_unknown_type_is_a_configuration_error_not_a_key_error() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.z\.type: no provider adapter of type"):
        providers.create_provider("z", "no-such-type", {})


def test_builtin_adapters_resolve() -> None:
    assert providers.adapter_module("rfc2136") is not None
    assert providers.adapter_module("zonefile") is not None
