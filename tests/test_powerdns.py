"""The PowerDNS adapter without a server: content form, validation, zone ids, URLs, settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollover.config import Section
from rollover.core.association import Association, parse_association
from rollover.core.params import TlsaParams
from rollover.errors import ConfigError, InputError, ProviderError
from rollover.providers import powerdns
from rollover.providers.powerdns import (
    PowerDNSProvider,
    PowerDNSSettings,
    _serial_reached,
    _split_url,
    content,
    parse_settings,
    validate,
    zone_id,
)

DIGEST = "0123456789ABCDEFabcdef" + "00" * 21  # 32 bytes, mixed case on input


def test_content_is_lower_case_unbroken_hex() -> None:
    a = parse_association(f"3 1 1 {DIGEST[:30]} {DIGEST[30:]}")
    assert content(a) == "3 1 1 " + DIGEST.lower()
    assert validate(a) == content(a)
    assert " " not in content(a).split(" ", 3)[3]


@pytest.mark.parametrize(
    ("params", "size", "needle"),
    [
        ((3, 1, 1), 31, "matching type 1 needs 32"),
        ((3, 1, 1), 64, "matching type 1 needs 32"),
        ((2, 0, 2), 32, "matching type 2 needs 64"),
        ((3, 1, 0), 0, "empty"),
        ((256, 1, 1), 32, "one octet"),
    ],
)
def test_validation_refuses_what_powerdns_would_store(
    params: tuple[int, int, int], size: int, needle: str
) -> None:
    with pytest.raises(ProviderError, match=needle):
        validate(Association(TlsaParams(*params), b"\x01" * size))


def test_validation_accepts_full_data_of_any_length() -> None:
    assert validate(Association(TlsaParams(3, 1, 0), b"\x30\x82")) == "3 1 0 3082"
    assert validate(Association(TlsaParams(2, 0, 2), b"\xff" * 64)) == "2 0 2 " + "ff" * 64


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("example.com", "example.com."),
        ("Example.COM.", "example.com."),
        ("xn--bcher-kva.example.", "xn--bcher-kva.example."),
        ("a_b.example.", "a=5Fb.example."),
        (".", "=2E"),
    ],
)
def test_zone_id(zone: str, expected: str) -> None:
    assert zone_id(zone) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8081", ("http", "127.0.0.1", 8081, "")),
        ("http://127.0.0.1:8081/api/v1/", ("http", "127.0.0.1", 8081, "")),
        ("https://dns.example/pdns", ("https", "dns.example", 443, "/pdns")),
        ("http://[::1]:8081", ("http", "::1", 8081, "")),
    ],
)
def test_urls(url: str, expected: tuple[str, str, int, str]) -> None:
    assert _split_url(url) == expected


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://x", "http:// or https://"),
        ("http://user:pw@host:8081", "no credentials in the URL"),
        ("http://host:8081/?api-key=x", "no query"),
        ("http://:8081", "no host"),
    ],
)
def test_bad_urls(url: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        _split_url(url)


def test_serial_arithmetic() -> None:
    assert _serial_reached(5, 5)
    assert _serial_reached(6, 5)
    assert not _serial_reached(4, 5)
    assert _serial_reached(1, 2**32 - 1)  # wrapped (RFC 1982)
    assert not _serial_reached(2**32 - 1, 1)


def key_file(tmp_path: Path, text: str = "s3cret-key\n", mode: int = 0o600) -> Path:
    path = tmp_path / "api-key"
    path.write_text(text)
    path.chmod(mode)
    return path


def parse(raw: dict[str, object], warnings: list[str] | None = None) -> PowerDNSSettings:
    return parse_settings(
        Section(raw, "providers.pdns", "rollover.yaml"), [] if warnings is None else warnings
    )


def test_settings(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    warnings: list[str] = []
    settings = parse(
        {"api_url": "http://127.0.0.1:8081", "api_key_file": str(path), "zone": "Example.COM"},
        warnings,
    )
    assert settings.api_key == "s3cret-key"
    assert settings.server_id == "localhost"
    assert settings.zone == "example.com."
    assert settings.rectify is True
    assert warnings == []
    assert "s3cret-key" not in repr(settings)
    provider = PowerDNSProvider("pdns", settings)
    assert "s3cret-key" not in repr(vars(provider))


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"api_key_file": "K"}, "providers.pdns.api_url: is required"),
        ({"api_url": "http://127.0.0.1:1"}, "providers.pdns.api_key_file: is required"),
        ({"api_url": "gopher://x", "api_key_file": "K"}, "providers.pdns.api_url: "),
        ({"api_url": "http://127.0.0.1:1", "api_key_file": "/nonexistent"}, "no such file"),
        ({"api_url": "http://127.0.0.1:1", "api_key_file": "K", "ttl": 5}, "ttl: unknown key"),
        ({"api_url": "http://127.0.0.1:1", "api_key_file": "K", "retries": 0}, "retries: 0"),
        ({"api_url": "http://127.0.0.1:1", "api_key_file": "K", "server_id": "a/b"}, "server_id"),
    ],
)
def test_settings_errors_name_the_key(tmp_path: Path, raw: dict[str, object], needle: str) -> None:
    path = key_file(tmp_path)
    raw = {k: (str(path) if v == "K" else v) for k, v in raw.items()}
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        parse(raw)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("\n\n", "is empty"), ("one\ntwo\n", "more than one line"), ("a key\n", "spaces")],
)
def test_key_file_contents(tmp_path: Path, text: str, needle: str) -> None:
    path = key_file(tmp_path, text)
    with pytest.raises(ConfigError, match=needle) as caught:
        parse({"api_url": "http://127.0.0.1:1", "api_key_file": str(path)})
    assert "two" not in str(caught.value)
    assert "a key" not in str(caught.value)


def test_warnings(tmp_path: Path) -> None:
    path = key_file(tmp_path, mode=0o644)
    warnings: list[str] = []
    parse({"api_url": "http://dns.example:8081", "api_key_file": str(path)}, warnings)
    assert any("chmod 600" in w for w in warnings)
    assert any("plain HTTP to another host" in w for w in warnings)
    assert not any("s3cret" in w for w in warnings)


def test_module_is_an_adapter() -> None:
    assert callable(powerdns.parse_settings)
    assert callable(powerdns.create)
    assert os.path.basename(powerdns.__file__) == "powerdns.py"
