"""Issue 14 classes 1, 2, 6 and 8 in the pure verdict (rollover.core.verdicts.evaluate): what a DANE
sender concludes, case by case. Table-driven, no network."""

from __future__ import annotations

import pytest

from rollover.core.association import parse_association
from rollover.core.observation import DnssecState
from rollover.core.presented import PresentedChain, ProbeResult
from rollover.core.verdicts import evaluate
from rollover.errors import RolloverError
from tests.certs import NOW, der, make_pki
from tests.test_matching import rec

PKI = make_pki("p256", tag="classes", host="mx.example.test")
CHAIN = PresentedChain((der(PKI.leaf), der(PKI.intermediate)), "TLSv1.3", "x", "default")
GOOD = rec("3 1 1", PKI.leaf)
SHORT = parse_association("3 1 1 " + "ab" * 31)
PKIX = rec("1 1 1", PKI.leaf)
# An issuer in a loose encoding: a BER long-form length where DER wants the short form.
BER = b"\x30\x82\x00\x03\x02\x01\x01"


def verdict(state, records, probe=None, servfail=()):  # type: ignore[no-untyped-def]
    return evaluate(
        "mx.example.test.",
        state,
        frozenset(records),
        None,
        probe or ProbeResult("127.0.0.1", (CHAIN,)),
        port=25,
        reference_names=["mx.example.test"],
        now=NOW,
        warn_days=0,
        servfail=servfail,
    )


@pytest.mark.parametrize(
    ("state", "records", "status", "says"),
    [
        (DnssecState.SECURE, {GOOD}, "OK", ""),
        # 1: a malformed record beside a good one: the good one counts
        (DnssecState.SECURE, {GOOD, SHORT}, "OK", ""),
        # 2: secure denial, or only unusable records: delivered, not DANE-protected
        (DnssecState.SECURE, set(), "WARNING", "secure denial"),
        (DnssecState.SECURE, {SHORT}, "WARNING", "only unusable"),
        (DnssecState.SECURE, {PKIX}, "WARNING", "only unusable"),
        (DnssecState.INSECURE, {GOOD}, "WARNING", "not DANE-protected"),
        (DnssecState.SECURE, {rec("3 1 1", make_pki(tag="x").leaf)}, "CRITICAL", "no usable"),
    ],
)
def test_verdicts(state, records, status, says) -> None:  # type: ignore[no-untyped-def]
    report = verdict(state, records)
    assert report.status == status, report.reasons
    assert says in " ".join(report.reasons)


def test_a_malformed_record_is_listed_as_unusable() -> None:
    report = verdict(DnssecState.SECURE, {GOOD, SHORT})
    assert any("31 bytes" in u for u in report.unusable), report.unusable


def test_no_starttls_without_usable_records_is_not_critical() -> None:
    probe = ProbeResult("127.0.0.1", error="no STARTTLS", starttls_missing=True)
    assert verdict(DnssecState.SECURE, {SHORT}, probe).status == "WARNING"
    assert verdict(DnssecState.SECURE, {GOOD}, probe).status == "CRITICAL"


@pytest.mark.parametrize(
    ("ede", "says", "not_says"),
    [
        (("EDE 6: DNSSEC Bogus",), "bogus", "lookup failed"),
        (("EDE 22: No Reachable Authority",), "lookup failed", "bogus"),
        ((), "lookup failed", "is bogus"),
    ],
)
def test_servfail_is_a_deferral_worded_by_its_ede(ede, says, not_says) -> None:  # type: ignore[no-untyped-def]
    report = verdict(DnssecState.BOGUS, set(), servfail=ede)
    assert report.status == "CRITICAL"
    text = " ".join(report.reasons)
    assert says in text
    assert not_says not in text


def test_a_leaf_that_does_not_parse_is_said_as_the_guards_say_it() -> None:
    """verify, the withdraw guard and record --connect read a presented chain one way: a leaf
    that does not parse is named as such everywhere, never "no certificate" in one place."""
    from rollover.core.material import load_presented_chain

    unparseable = der(PKI.leaf)[:-40]
    chain = PresentedChain((unparseable, der(PKI.intermediate)), "TLSv1.3", "x", "default")
    report = verdict(DnssecState.SECURE, {GOOD}, ProbeResult("127.0.0.1", (chain,)))
    assert report.status == "CRITICAL", report.reasons
    text = " ".join(report.reasons)
    assert "the leaf (certificate 1) does not parse as DER" in text
    assert "no certificate" not in text
    with pytest.raises(RolloverError) as raised:
        load_presented_chain("127.0.0.1:25", chain.certificates)
    assert str(raised.value).startswith("127.0.0.1:25: the leaf (certificate 1) does not parse")
    guard_says = str(raised.value).removeprefix("127.0.0.1:25: ")
    assert guard_says in text


def test_an_issuer_that_does_not_parse_leaves_the_leaf_matching() -> None:
    chain = PresentedChain((der(PKI.leaf), BER), "TLSv1.3", "x", "default")
    report = verdict(DnssecState.SECURE, {GOOD}, ProbeResult("127.0.0.1", (chain,)))
    assert report.status == "OK", report.reasons
    assert "certificate 2 does not parse" in " ".join(report.reasons)
