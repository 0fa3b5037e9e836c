"""DANE matching, table-driven on chains the tests make (RFC 6698, 7671, 7672)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from rollover.core.association import Association, association_data
from rollover.core.matching import match_chain, name_matches
from rollover.core.material import spki_der
from rollover.core.params import TlsaParams
from tests.certs import NOW, der, make_cert, make_key, make_pki

PKI = make_pki("p256", tag="matching")
OTHER = make_pki("p256", tag="matching-other")


def rec(params: str, cert: x509.Certificate) -> Association:
    u, s, m = (int(x) for x in params.split())
    return Association(TlsaParams(u, s, m), association_data(s, m, der(cert), spki_der(cert)))


def run(
    records: set[Association],
    chain: list[x509.Certificate],
    names=("mx1.example.test",),
    port: int = 25,
    now: dt.datetime = NOW,
):  # type: ignore[no-untyped-def]
    return match_chain(frozenset(records), chain, port=port, reference_names=names, now=now)


FULL = [PKI.leaf, PKI.intermediate]


@pytest.mark.parametrize(
    ("records", "chain", "depth"),
    [
        ({rec("3 1 1", PKI.leaf)}, FULL, 0),
        ({rec("3 0 1", PKI.leaf)}, FULL, 0),
        ({rec("3 1 2", PKI.leaf)}, FULL, 0),
        ({rec("3 1 0", PKI.leaf)}, FULL, 0),
        ({rec("2 0 1", PKI.intermediate)}, FULL, 1),
        ({rec("2 1 1", PKI.intermediate)}, FULL, 1),
        ({rec("2 0 1", PKI.root)}, [PKI.leaf, PKI.intermediate, PKI.root], 2),
        ({rec("3 1 1", OTHER.leaf), rec("3 1 1", PKI.leaf)}, FULL, 0),  # old + new: either
        ({rec("3 1 1", OTHER.leaf), rec("2 0 1", PKI.intermediate)}, FULL, 1),
    ],
)
def test_matches(records, chain, depth) -> None:  # type: ignore[no-untyped-def]
    result = run(records, chain)
    assert result.ok, result.problems
    assert result.matched is not None
    assert result.matched.depth == depth


@pytest.mark.parametrize(
    ("records", "chain", "needle"),
    [
        ({rec("3 1 1", OTHER.leaf)}, FULL, "no usable TLSA record matches"),
        (
            {rec("2 0 1", PKI.intermediate)},
            [PKI.leaf],
            "no usable TLSA record matches",
        ),  # TA not sent
        ({rec("2 0 1", OTHER.intermediate)}, FULL, "no usable TLSA record matches"),
        ({rec("1 1 1", PKI.leaf)}, FULL, "no usable TLSA records"),  # PKIX on port 25
        ({rec("0 0 1", PKI.intermediate)}, FULL, "no usable TLSA records"),
        ({Association(TlsaParams(3, 1, 1), b"\x01" * 31)}, FULL, "no usable TLSA records"),
        ({Association(TlsaParams(4, 1, 1), b"\x01" * 32)}, FULL, "no usable TLSA records"),
    ],
)
def test_does_not_match(records, chain, needle) -> None:  # type: ignore[no-untyped-def]
    result = run(records, chain)
    assert not result.ok
    assert any(needle in p for p in result.problems), result.problems


def test_dane_ta_checks_names_but_dane_ee_does_not() -> None:
    ta = {rec("2 0 1", PKI.intermediate)}
    result = run(ta, FULL, names=("mx9.example.test",))
    assert not result.ok
    assert "names do not include" in result.problems[0]
    assert run({rec("3 1 1", PKI.leaf)}, FULL, names=("mx9.example.test",)).ok


def test_expiry_ignored_by_dane_ee_enforced_by_dane_ta() -> None:
    key = make_key("p256", "expired-leaf")
    expired = make_cert(
        "mx1.example.test",
        key,
        (PKI.intermediate, PKI.intermediate_key),
        not_before=NOW - dt.timedelta(days=100),
        not_after=NOW - dt.timedelta(days=1),
        dns_names=("mx1.example.test",),
    )
    chain = [expired, PKI.intermediate]
    assert run({rec("3 1 1", expired)}, chain).ok
    result = run({rec("2 0 1", PKI.intermediate)}, chain)
    assert not result.ok
    assert "expired" in result.problems[0]


def test_ta_must_be_a_ca() -> None:
    # a "TA" that is not a CA: the leaf's issuer lacks CA:TRUE
    key = make_key("p256", "not-ca-issuer")
    not_ca = make_cert("Not A CA", key, (PKI.root, PKI.root_key), ca=False)
    leaf = make_cert(
        "mx1.example.test",
        make_key("p256", "leaf-under-not-ca"),
        (not_ca, key),
        dns_names=("mx1.example.test",),
    )
    result = run({rec("2 0 1", not_ca)}, [leaf, not_ca])
    assert not result.ok
    assert "not a CA" in result.problems[0]


def test_digest_agility_uses_the_strongest() -> None:
    """With SHA2-512 present for 3 1, a matching SHA2-256 record no longer counts."""
    records = {rec("3 1 1", PKI.leaf), Association(TlsaParams(3, 1, 2), b"\x02" * 64)}
    result = run(records, FULL)
    assert not result.ok
    assert any("stronger digest" in why for _a, why in result.unusable)
    assert run({rec("3 1 1", PKI.leaf), rec("3 1 2", PKI.leaf)}, FULL).ok
    # Another usage/selector pair is not affected.
    assert run({rec("3 1 1", PKI.leaf), Association(TlsaParams(3, 0, 2), b"\x02" * 64)}, FULL).ok


def test_pkix_usage_on_other_ports_needs_pkix() -> None:
    records = {rec("1 1 1", PKI.leaf)}
    assert not match_chain(frozenset(records), FULL, port=443, reference_names=[], now=NOW).ok
    assert match_chain(
        frozenset(records), FULL, port=443, reference_names=[], now=NOW, pkix_ok=lambda _c: True
    ).ok


@pytest.mark.parametrize(
    ("sans", "reference", "ok"),
    [
        (("mx1.example.test",), "mx1.example.test", True),
        (("MX1.Example.Test",), "mx1.example.test.", True),
        (("*.example.test",), "mx1.example.test", True),
        (("*.example.test",), "a.mx1.example.test", False),
        (("*.example.test",), "example.test", False),
        (("mx1*.example.test",), "mx1a.example.test", False),
        (("other.example.test",), "mx1.example.test", False),
    ],
)
def test_name_matches(sans: tuple[str, ...], reference: str, ok: bool) -> None:
    cert = make_cert("cn.example.test", make_key("p256", "names"), dns_names=sans)
    assert name_matches(cert, reference) is ok


def test_cn_only_without_dns_ids() -> None:
    cert = make_cert("mx1.example.test", make_key("p256", "cn-only"))
    assert name_matches(cert, "mx1.example.test")


def test_pkix_usages_validate_against_a_trust_store() -> None:
    from rollover.edges.trust import pkix_validator

    pki = make_pki("p256", tag="pkix", host="www.example.test", pkix=True)
    chain = [pki.leaf, pki.intermediate]
    trusted = pkix_validator("www.example.test", NOW, roots=[pki.root])
    untrusted = pkix_validator("www.example.test", NOW, roots=[OTHER.root])
    wrong_name = pkix_validator("other.example.test", NOW, roots=[pki.root])
    records = frozenset({rec("1 1 1", pki.leaf)})
    assert match_chain(records, chain, port=443, reference_names=[], now=NOW, pkix_ok=trusted).ok
    assert not match_chain(
        records, chain, port=443, reference_names=[], now=NOW, pkix_ok=untrusted
    ).ok
    assert not match_chain(
        records, chain, port=443, reference_names=[], now=NOW, pkix_ok=wrong_name
    ).ok
    ta = frozenset({rec("0 0 1", pki.intermediate)})
    assert match_chain(
        ta, chain, port=443, reference_names=["www.example.test"], now=NOW, pkix_ok=trusted
    ).ok
    # On port 25 the same records are unusable whatever the store says (RFC 7672).
    assert not match_chain(records, chain, port=25, reference_names=[], now=NOW, pkix_ok=trusted).ok
