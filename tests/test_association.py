from __future__ import annotations

import hashlib

import pytest

from rollover.core.association import Association, association_data, owner_name, parse_association
from rollover.core.params import TlsaParams
from rollover.errors import InputError


@pytest.mark.parametrize(
    ("host", "port", "proto", "expected"),
    [
        ("mx1.example.com", 25, "tcp", "_25._tcp.mx1.example.com."),
        ("MX1.Example.COM.", 25, "tcp", "_25._tcp.mx1.example.com."),
        ("imap.example.com", 993, "tcp", "_993._tcp.imap.example.com."),
        ("sip.example.com", 5061, "_udp", "_5061._udp.sip.example.com."),
        (None, 25, "tcp", "_25._tcp"),
        (None, 465, "tcp", "_465._tcp"),
    ],
)
def test_owner_name(host: str | None, port: int, proto: str, expected: str) -> None:
    assert owner_name(host, port, proto) == expected


@pytest.mark.parametrize(
    ("host", "port", "needle"),
    [
        ("mx1..example.com", 25, "not a valid DNS name"),
        ("-mx.example.com", 25, "not a valid DNS name"),
        ("mx1.example.com", 0, "port 0"),
        ("mx1.example.com", 65536, "port 65536"),
        ("", 25, "empty"),
        ("a" * 64 + ".example", 25, "not a valid DNS name"),
    ],
)
def test_owner_name_rejects(host: str, port: int, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        owner_name(host, port)


def test_association_data_selectors_and_digests() -> None:
    cert, spki = b"\x30cert", b"\x30spki"
    assert association_data(0, 0, cert, spki) == cert
    assert association_data(1, 0, cert, spki) == spki
    assert association_data(0, 1, cert, spki) == hashlib.sha256(cert).digest()
    assert association_data(1, 2, cert, spki) == hashlib.sha512(spki).digest()
    with pytest.raises(InputError, match="selector 0"):
        association_data(0, 1, None, spki)


def test_parse_association_round_trip_and_case() -> None:
    a = parse_association("3 1 1 AB CD\tEF")
    assert a == Association(TlsaParams(3, 1, 1), bytes.fromhex("abcdef"))
    assert str(a) == "3 1 1 abcdef"
    assert not a.is_well_formed()
    assert parse_association("3 1 1 " + "00" * 32).is_well_formed()
    with pytest.raises(InputError):
        parse_association("3 1 1 abc")
    with pytest.raises(InputError):
        parse_association("3 1 1 zz")
