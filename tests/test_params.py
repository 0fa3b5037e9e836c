from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollover.core.params import MTYPE_NAMES, SELECTOR_NAMES, USAGE_NAMES, TlsaParams, parse_params
from rollover.errors import InputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 1 1", TlsaParams(3, 1, 1)),
        ("2 0 1", TlsaParams(2, 0, 1)),
        ("  0   0   0 ", TlsaParams(0, 0, 0)),
        ("3,1,2", TlsaParams(3, 1, 2)),
        ("3/1/1", TlsaParams(3, 1, 1)),
        ("dane-ee spki sha2-256", TlsaParams(3, 1, 1)),
        ("DANE-TA Cert SHA2-256", TlsaParams(2, 0, 1)),
        ("PKIX-EE cert full", TlsaParams(1, 0, 0)),
        ("pkix-ta SPKI sha2-512", TlsaParams(0, 1, 2)),
        ("3 spki sha256", TlsaParams(3, 1, 1)),
    ],
)
def test_parse_params_accepts(text: str, expected: TlsaParams) -> None:
    assert parse_params(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("3 1", "three fields"),
        ("3 1 1 1", "three fields"),
        ("", "three fields"),
        ("4 1 1", "certificate usage 4"),
        ("3 2 1", "selector 2"),
        ("3 1 3", "matching type 3"),
        ("dane-xx spki sha2-256", "unknown certificate usage"),
        ("3 key 1", "unknown selector"),
        ("3 1 md5", "unknown matching type"),
        ("-1 1 1", "unknown certificate usage"),
    ],
)
def test_parse_params_rejects(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_params(text)


triples = st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(0, 2))


@given(triples, st.sampled_from([" ", ",", "/", "  ", "\t"]), st.booleans(), st.booleans())
def test_parse_params_round_trips_numbers_and_mnemonics(
    triple: tuple[int, int, int], sep: str, mnemonic: bool, upper: bool
) -> None:
    usage, selector, mtype = triple
    if mnemonic:
        fields = [USAGE_NAMES[usage], SELECTOR_NAMES[selector], MTYPE_NAMES[mtype]]
    else:
        fields = [str(usage), str(selector), str(mtype)]
    text = sep.join(fields)
    text = text.upper() if upper else text.lower()
    parsed = parse_params(text)
    assert parsed == TlsaParams(usage, selector, mtype)
    assert parse_params(parsed.mnemonic) == parsed
    assert parse_params(str(parsed)) == parsed


@given(st.text(max_size=40))
def test_parse_params_never_fails_other_than_input_error(text: str) -> None:
    try:
        result = parse_params(text)
    except InputError:
        return
    assert 0 <= result.usage <= 3
    assert 0 <= result.selector <= 1
    assert 0 <= result.mtype <= 2
