"""The parsed-configuration cache: content-addressed, exact, private, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollover import config as config_module
from rollover import providers
from rollover.config import Config
from rollover.edges.configcache import CACHED_DOCUMENTS, cached_document, document_cache

TEXT = """
providers:
  z: {type: zonefile, path: /tmp/zone.db, zone: example.test}
services:
  mx1: {host: mx1.example.test, provider: z, ttl: 60}
"""


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.delenv("ROLLOVER_CONFIG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "rollover"


def config_from_text(text: str, path: str, parsers: object) -> Config:
    return config_module.config_from_text(
        text, path, providers.settings_parser, cache=cached_document
    )


def _no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str, path: str) -> object:
        raise AssertionError("the YAML was parsed again")

    monkeypatch.setattr(config_module, "yaml_document", refuse)


def test_the_same_text_is_read_back_from_the_cache(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = config_from_text(TEXT, "c.yaml", providers.settings_parser)
    files = list(cache_home.glob("config-*.json"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert cache_home.stat().st_mode & 0o777 == 0o700
    _no_yaml(monkeypatch)
    again = config_from_text(TEXT, "c.yaml", providers.settings_parser)
    assert again == first
    with pytest.raises(AssertionError, match="parsed again"):  # an edit is a new key
        config_from_text(TEXT.replace("ttl: 60", "ttl: 61"), "c.yaml", providers.settings_parser)


@pytest.mark.parametrize(
    "extra",
    [
        "when: 2026-12-01\n",  # a YAML date: JSON would give back a string
        "25: port\n",  # a non-string key: JSON would give back "25"
        "ratio: .nan\n",
    ],
)
def test_documents_json_would_not_give_back_exactly_are_not_cached(
    cache_home: Path, extra: str
) -> None:
    doc = config_module.yaml_document(TEXT + extra, "c.yaml")
    cache = document_cache(TEXT + extra)
    assert cache is not None
    cache.store(doc)
    assert not cache.path.exists()


def test_a_document_planted_by_someone_else_is_ignored(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = document_cache(TEXT)
    assert cache is not None
    cache_home.mkdir(mode=0o700)
    planted = {"providers": {}, "services": {}}
    cache.path.write_text('{"providers": {}, "services": {}}')
    os.chmod(cache.path, 0o644)  # readable (so writable?) by others: not ours alone
    assert cache.load() is None
    os.chmod(cache.path, 0o600)
    assert cache.load() == planted
    os.chmod(cache_home, 0o777)  # a directory others can write to is never written
    cache.path.unlink()
    cache.store(planted)
    assert not cache.path.exists()


def test_off_switch_and_no_home(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOVER_CONFIG_CACHE", "off")
    assert document_cache(TEXT) is None
    config_from_text(TEXT, "c.yaml", providers.settings_parser)
    assert not cache_home.exists()
    monkeypatch.delenv("ROLLOVER_CONFIG_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")
    assert document_cache(TEXT) is None
    monkeypatch.setenv("CACHE_DIRECTORY", str(cache_home.parent / "systemd"))
    cache = document_cache(TEXT)
    assert cache is not None
    assert cache.directory == cache_home.parent / "systemd"


def test_the_cache_keeps_only_the_newest_documents(cache_home: Path) -> None:
    for ttl in range(CACHED_DOCUMENTS + 4):
        text = TEXT.replace("ttl: 60", f"ttl: {100 + ttl}")
        config_from_text(text, "c.yaml", providers.settings_parser)
        newest = document_cache(text)
        assert newest is not None
        assert newest.path.exists()
    assert len(list(cache_home.glob("config-*.json"))) == CACHED_DOCUMENTS
    assert not list(cache_home.glob("*.tmp"))


def test_an_unreadable_cache_entry_falls_back_to_the_yaml(cache_home: Path) -> None:
    cache = document_cache(TEXT)
    assert cache is not None
    cache_home.mkdir(mode=0o700)
    cache.path.write_text("{not json")
    os.chmod(cache.path, 0o600)
    config = config_from_text(TEXT, "c.yaml", providers.settings_parser)
    assert config.services["mx1"].ttl == 60
