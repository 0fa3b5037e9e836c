"""The zone-file editor: only the one TLSA RRset and the serial change; named-checkzone agrees."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollover.core.association import parse_association
from rollover.core.plan import TlsaRRset
from rollover.errors import ProviderError
from rollover.providers.zonetext import next_serial, read_rrset, replace_rrset
from tests.lab import _which

TODAY = date(2026, 11, 28)
OWNER = "_25._tcp.mx1.example.test."
A = parse_association("3 1 1 " + "aa" * 32)
B = parse_association("3 1 1 " + "bb" * 32)
C = parse_association("2 0 1 " + "cc" * 32)

ZONE = """\
; example.test, hand-written, with everything a real one has
$ORIGIN example.test.
$TTL 300
@   IN  SOA ns1.example.test. hostmaster.example.test. (
            2026010101 ; serial, date-based
            3600       ; refresh
            600        ; retry
            86400      ; expire
            300 )      ; minimum
    IN  NS  ns1
ns1 IN  A   192.0.2.1
mx1 IN  A   192.0.2.25
; the DANE records for mx1
_25._tcp.mx1 300 IN TLSA 3 1 1 ( aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
                                 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ) ; current key
             300 IN TLSA 2 0 1 cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
             300 IN TXT "owner inherited from the TLSA line above"
_25._tcp.mx2 IN TLSA 3 1 1 dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd
$ORIGIN sub.example.test.
www IN A 192.0.2.80
"""


def checkzone(text: str, tmp_path: Path, zone: str = "example.test") -> None:
    path = tmp_path / "check.db"
    path.write_text(text)
    result = subprocess.run(
        [_which("named-checkzone"), "-q", zone, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_read_multiline_and_inherited_owner() -> None:
    rrset = read_rrset(ZONE, "example.test.", OWNER, "z")
    assert rrset.records == {A, C}
    assert rrset.ttl == 300


@pytest.mark.parametrize(
    "after",
    [
        TlsaRRset(OWNER, 300, frozenset({A, B, C})),  # add beside
        TlsaRRset(OWNER, 300, frozenset({B, C})),  # replace
        TlsaRRset(OWNER, 60, frozenset({B})),  # replace all, new TTL
        TlsaRRset(OWNER),  # remove the RRset; the TXT keeps its owner
    ],
)
def test_replace_keeps_everything_else(after: TlsaRRset, tmp_path: Path) -> None:
    edit = replace_rrset(ZONE, "example.test.", after, TODAY, "z")
    checkzone(edit.text, tmp_path)
    assert read_rrset(edit.text, "example.test.", OWNER, "z").records == after.records
    assert edit.serial == 2026112800
    assert "2026112800 ; serial, date-based" in edit.text
    # Untouched lines stay byte for byte.
    for line in ZONE.splitlines():
        if (
            "TLSA" not in line
            and "aaaa" not in line
            and "2026010101" not in line
            and "inherited" not in line
        ):
            assert line in edit.text.splitlines(), line
    assert "_25._tcp.mx2 IN TLSA 3 1 1 dddd" in edit.text
    # The TXT record keeps its owner.
    import dns.name
    import dns.rdatatype

    from rollover.providers.zonetext import parse_zone

    parsed = parse_zone(edit.text, "example.test.", "z")
    assert parsed.get_rdataset(dns.name.from_text(OWNER), dns.rdatatype.TXT) is not None


def test_add_to_a_name_without_records(tmp_path: Path) -> None:
    owner = "_25._tcp.mx9.example.test."
    edit = replace_rrset(ZONE, "example.test.", TlsaRRset(owner, 120, frozenset({B})), TODAY, "z")
    checkzone(edit.text, tmp_path)
    assert edit.text.startswith(ZONE.replace("2026010101", "2026112800"))
    assert edit.text.endswith(f"{owner}\t120\tIN\tTLSA\t{B}\n")


def test_file_without_trailing_newline_and_crlf(tmp_path: Path) -> None:
    text = ZONE.replace("\n", "\r\n").rstrip("\r\n")
    edit = replace_rrset(
        text,
        "example.test.",
        TlsaRRset("_25._tcp.mx9.example.test.", 5, frozenset({B})),
        TODAY,
        "z",
    )
    assert "\r\n_25._tcp.mx9.example.test.\t5\tIN\tTLSA" in edit.text
    checkzone(edit.text, tmp_path)


@pytest.mark.parametrize(
    ("old", "today", "new"),
    [
        (2026010101, TODAY, 2026112800),
        (2026112800, TODAY, 2026112801),
        (2026112899, TODAY, 2026112900),  # 100 changes in a day: move on, stay increasing
        (2026120105, TODAY, 2026120106),  # a serial ahead of the clock still increases
        (42, TODAY, 43),
        (1700000000, TODAY, 1700000001),  # unix-time style: a counter
        (2**32 - 1, TODAY, 0),  # RFC 1982 wrap
    ],
)
def test_next_serial(old: int, today: date, new: int) -> None:
    assert next_serial(old, today) == new


def test_include_is_refused() -> None:
    with pytest.raises(ProviderError, match=r"\$INCLUDE"):
        replace_rrset(
            ZONE + "$INCLUDE other.db\n",
            "example.test.",
            TlsaRRset(OWNER, 5, frozenset({B})),
            TODAY,
            "z",
        )


def test_unparseable_zone_is_refused() -> None:
    with pytest.raises(ProviderError, match=r"cannot parse|unbalanced"):
        replace_rrset(
            ZONE + "broken IN A (\n",
            "example.test.",
            TlsaRRset(OWNER, 5, frozenset({B})),
            TODAY,
            "z",
        )


hexes = st.binary(min_size=32, max_size=32).map(lambda b: parse_association("3 1 1 " + b.hex()))


@settings(max_examples=40, deadline=None)
@given(records=st.frozensets(hexes, max_size=4), ttl=st.integers(1, 86400))
def test_any_target_rrset_round_trips(records: frozenset, ttl: int) -> None:  # type: ignore[type-arg]
    after = TlsaRRset(OWNER, ttl if records else None, records)
    edit = replace_rrset(ZONE, "example.test.", after, TODAY, "z")
    got = read_rrset(edit.text, "example.test.", OWNER, "z")
    assert got.records == records
    if records:
        assert got.ttl == ttl
    # Applying the same change again is stable apart from the serial.
    again = replace_rrset(edit.text, "example.test.", after, TODAY, "z")
    assert read_rrset(again.text, "example.test.", OWNER, "z") == got
    assert again.serial == edit.serial + 1
