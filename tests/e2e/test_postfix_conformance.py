"""Postfix's DANE verdict (``posttls-finger -l dane``) against ``rollover verify``, case by case,
in the signed lab (harness: tests/postfix.py).

Each row below is one server/TLSA situation: its name, what Postfix does there (``expected``,
checked against Postfix itself on every run), and how it is built (the records added to
``example.test.``, the chains the server on 127.0.B.N:25 presents). ``rollover verify`` must reach
the same verdict, unless the case is in ``DELIBERATE`` (name -> why the difference is intended).

Run: ``.venv/bin/pytest tests/e2e/test_postfix_conformance.py -rA`` (root, Postfix installed);
the comparison table is printed by ``test_agreement``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.lab import Lab
from tests.postfix import (
    NOW,
    Case,
    CaseResult,
    HarnessError,
    Slot,
    build_cert,
    loose_ber,
    new_key,
    run_conformance,
    table,
    tlsa,
)

pytestmark = [pytest.mark.lab, pytest.mark.postfix]

CASES: list[Case] = []


def case(name: str, expected: str, note: str = "") -> Callable[[Callable[[Slot], object]], None]:
    def register(build: Callable[[Slot], object]) -> None:
        CASES.append(Case(name, expected, build, note))

    return register


EXPIRED = {"not_before": NOW - dt.timedelta(days=60), "not_after": NOW - dt.timedelta(days=1)}

# -- DANE-EE(3) ------------------------------------------------------------------------------


for _params in ("3 1 1", "3 0 1", "3 1 2", "3 0 0", "3 1 0", "3 0 2"):

    @case(f"ee-{_params.replace(' ', '')}", "verified")
    def _ee(s: Slot, params: str = _params) -> None:
        s.tlsa(tlsa(params, s.standard()))


@case("ee-leaf-only-sent", "verified")
def _(s: Slot) -> None:
    leaf = s.leaf()
    s.serve([leaf]).tlsa(tlsa("3 1 1", leaf))


@case("ee-other-key", "defer")
def _(s: Slot) -> None:
    s.standard()
    s.tlsa(tlsa("3 1 1", s.pki.other_key))


@case("ee-record-of-intermediate", "defer", "DANE-EE matches the leaf only")
def _(s: Slot) -> None:
    s.standard()
    s.tlsa(tlsa("3 1 1", s.pki.intermediate))


@case("ee-expired-leaf", "verified", "DANE-EE ignores dates (RFC 7672 section 3.1.1)")
def _(s: Slot) -> None:
    leaf = s.leaf(**EXPIRED)
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("3 1 1", leaf))


@case("ee-wrong-name", "verified", "DANE-EE ignores names")
def _(s: Slot) -> None:
    leaf = s.leaf("elsewhere.example.net")
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("3 1 1", leaf))


@case("ee-eku-clientauth-only", "verified")
def _(s: Slot) -> None:
    leaf = s.leaf(eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("3 1 1", leaf))


@case("ee-unknown-critical-extension", "verified")
def _(s: Slot) -> None:
    leaf = s.leaf(unknown_critical=True)
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("3 1 1", leaf))


@case("ee-ber-intermediate", "verified", "intermediate's TBS length in non-minimal BER")
def _(s: Slot) -> None:
    leaf = s.leaf()
    s.serve([leaf, loose_ber(s.pki.intermediate, s.pki.root_key)]).tlsa(tlsa("3 1 1", leaf))


# -- DANE-TA(2) ------------------------------------------------------------------------------


for _params in ("2 0 1", "2 1 1", "2 1 2", "2 0 0"):

    @case(f"ta-{_params.replace(' ', '')}-intermediate", "verified")
    def _ta(s: Slot, params: str = _params) -> None:
        s.standard()
        s.tlsa(tlsa(params, s.pki.intermediate))


for _params in ("2 0 1", "2 1 1"):

    @case(f"ta-{_params.replace(' ', '')}-root-sent", "verified")
    def _root(s: Slot, params: str = _params) -> None:
        s.serve([s.leaf(), s.pki.intermediate, s.pki.root]).tlsa(tlsa(params, s.pki.root))


for _params, _expected in (("2 0 1", "defer"), ("2 1 1", "defer"), ("2 1 0", "verified")):

    @case(
        f"ta-{_params.replace(' ', '')}-root-not-sent",
        _expected,
        "OpenSSL takes a 2 1 0 (a bare public key) as an anchor the server need not send",
    )
    def _root_absent(s: Slot, params: str = _params) -> None:
        s.standard()
        s.tlsa(tlsa(params, s.pki.root))


@case("ta-intermediate-not-sent", "defer")
def _(s: Slot) -> None:
    s.serve([s.leaf()]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-record-of-leaf-leaf-only-sent", "defer", "DANE-TA never on the leaf itself")
def _(s: Slot) -> None:
    leaf = s.leaf()
    s.serve([leaf]).tlsa(tlsa("2 0 1", leaf))


@case("ta-chain-out-of-order", "verified", "[leaf, root, intermediate]")
def _(s: Slot) -> None:
    s.serve([s.leaf(), s.pki.root, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.root))


@case("ta-chain-with-stray-cert", "verified", "[leaf, unrelated CA, intermediate]")
def _(s: Slot) -> None:
    stray = build_cert("Stray CA", new_key(), ca=True)
    s.serve([s.leaf(), stray, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-expired-leaf", "defer")
def _(s: Slot) -> None:
    s.serve([s.leaf(**EXPIRED), s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-wrong-name", "defer")
def _(s: Slot) -> None:
    leaf = s.leaf("elsewhere.example.net")
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-wildcard", "verified", "*.example.test for <label>.example.test")
def _(s: Slot) -> None:
    leaf = s.leaf("*.example.test")
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-wildcard-two-labels-down", "defer", "*.example.test for x.<label>.example.test")
def _(s: Slot) -> None:
    host = f"x.{s.host}"
    s.elsewhere(host).add(host, "A", s.address)
    leaf = s.leaf("*.example.test")
    s.serve([leaf, s.pki.intermediate])
    s.tlsa(tlsa("2 0 1", s.pki.intermediate), owner=f"_25._tcp.{host}")


@case("ta-partial-wildcard", "defer", "pf*.example.test")
def _(s: Slot) -> None:
    leaf = s.leaf("pf*.example.test")
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-cn-only-no-san", "verified", "the host only as the CN, no subjectAltName")
def _(s: Slot) -> None:
    leaf = build_cert(s.host, s.pki.leaf_key, (s.pki.intermediate, s.pki.int_key))
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-eku-clientauth-only", "defer", "leaf EKU without serverAuth")
def _(s: Slot) -> None:
    leaf = s.leaf(eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-unknown-critical-extension", "defer", "in the leaf")
def _(s: Slot) -> None:
    leaf = s.leaf(unknown_critical=True)
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("2 0 1", s.pki.intermediate))


@case("ta-pathlen-exceeded", "defer", "anchor pathLen 0, one more CA below it")
def _(s: Slot) -> None:
    key0, key1 = new_key(), new_key()
    anchor = build_cert("PathLen0 CA", key0, (s.pki.root, s.pki.root_key), ca=True, path_length=0)
    sub = build_cert("Sub CA", key1, (anchor, key0), ca=True)
    s.serve([s.leaf(issuer=(sub, key1)), sub, anchor]).tlsa(tlsa("2 0 1", anchor))


@case("ta-name-constraints-exclude-host", "defer", "anchor excludes example.test")
def _(s: Slot) -> None:
    key = new_key()
    anchor = build_cert(
        "NC CA", key, (s.pki.root, s.pki.root_key), ca=True, excluded=["example.test"]
    )
    s.serve([s.leaf(issuer=(anchor, key)), anchor]).tlsa(tlsa("2 0 1", anchor))


@case("ta-name-constraints-permit-other", "defer", "anchor permits only example.net")
def _(s: Slot) -> None:
    key = new_key()
    anchor = build_cert(
        "NC CA", key, (s.pki.root, s.pki.root_key), ca=True, permitted=["example.net"]
    )
    s.serve([s.leaf(issuer=(anchor, key)), anchor]).tlsa(tlsa("2 0 1", anchor))


@case("ta-intermediate-without-keycertsign", "defer", "anchor is the root")
def _(s: Slot) -> None:
    key = new_key()
    bad = build_cert(
        "No keyCertSign CA", key, (s.pki.root, s.pki.root_key), ca=True, key_cert_sign=False
    )
    s.serve([s.leaf(issuer=(bad, key)), bad, s.pki.root]).tlsa(tlsa("2 0 1", s.pki.root))


@case("ta-expired-root-sent", "defer", "an expired self-signed root, sent, under its 2 0 1")
def _(s: Slot) -> None:
    key, int_key = new_key("p384"), new_key()
    root = build_cert("Expired Root", key, ca=True, **EXPIRED)
    inter = build_cert("Under Expired Root", int_key, (root, key), ca=True)
    s.serve([s.leaf(issuer=(inter, int_key)), inter, root]).tlsa(tlsa("2 0 1", root))


@case("ta-expired-intermediate-below-anchor", "defer")
def _(s: Slot) -> None:
    key = new_key()
    inter = build_cert("Expired Int", key, (s.pki.root, s.pki.root_key), ca=True, **EXPIRED)
    s.serve([s.leaf(issuer=(inter, key)), inter, s.pki.root]).tlsa(tlsa("2 0 1", s.pki.root))


@case(
    "ta-expired-anchor-intermediate",
    "verified",
    "the expired intermediate is the anchor: OpenSSL 3.0 checks the dates of the certificates "
    "below a DANE-TA anchor that is not self-signed, not the anchor's (compare "
    "ta-expired-root-sent)",
)
def _(s: Slot) -> None:
    key = new_key()
    inter = build_cert("Expired Int", key, (s.pki.root, s.pki.root_key), ca=True, **EXPIRED)
    s.serve([s.leaf(issuer=(inter, key)), inter]).tlsa(tlsa("2 0 1", inter))


# -- digest agility (RFC 7671 section 9) ------------------------------------------------------


@case("agility-312-other-hides-311", "defer", "3 1 1 of the leaf beside 3 1 2 of another key")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("3 1 1", leaf), tlsa("3 1 2", s.pki.other_key))


@case("agility-311-and-312-both-match", "verified")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("3 1 1", leaf), tlsa("3 1 2", leaf))


@case("agility-other-selector", "verified", "3 1 1 of the leaf beside 3 0 2 of another cert")
def _(s: Slot) -> None:
    leaf = s.standard()
    other = s.leaf(key=s.pki.other_key)
    s.tlsa(tlsa("3 1 1", leaf), tlsa("3 0 2", other))


@case("agility-other-usage", "verified", "3 1 1 of the leaf beside 2 1 2 of another key")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("3 1 1", leaf), tlsa("2 1 2", s.pki.other_key))


@case("agility-full-beside-311-other", "verified", "3 1 0 of the leaf beside 3 1 1 of another")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("3 1 0", leaf), tlsa("3 1 1", s.pki.other_key))


# -- CNAMEs (RFC 7672 section 2.2.2) -----------------------------------------------------------


def _cname_owner(s: Slot, target: str) -> None:
    s.add(s.owner, "CNAME", target.rstrip(".") + ".")


@case("tlsa-owner-cname", "verified", "_25._tcp.host CNAME another name holding the RRset")
def _(s: Slot) -> None:
    leaf = s.standard()
    target = s.name("rrset")
    _cname_owner(s, target)
    s.tlsa(tlsa("3 1 1", leaf), owner=target)


@case("tlsa-owner-cname-mismatch", "defer")
def _(s: Slot) -> None:
    s.standard()
    target = s.name("rrset")
    _cname_owner(s, target)
    s.tlsa(tlsa("3 1 1", s.pki.other_key), owner=target)


@case("tlsa-owner-cname-to-nxdomain", "opportunistic", "a secure denial at the target")
def _(s: Slot) -> None:
    s.standard()
    _cname_owner(s, s.name("nothing"))


@case("tlsa-owner-cname-to-insecure", "opportunistic", "target in plain.test (unsigned)")
def _(s: Slot) -> None:
    s.standard()
    _cname_owner(s, "_25._tcp.mx.plain.test")


@case("tlsa-owner-cname-to-bogus", "defer", "target in bogus.test")
def _(s: Slot) -> None:
    s.standard()
    _cname_owner(s, "_25._tcp.mx.bogus.test")


def _aliased(s: Slot) -> str:
    """The host a CNAME to <label>-real.example.test, which has the A record."""
    real = s.name("real")
    s.a_record = False
    s.add(s.host, "CNAME", real + ".").add(real, "A", s.address)
    return real


@case("host-cname-tlsa-at-target", "verified", "host CNAME real; TLSA at _25._tcp.real")
def _(s: Slot) -> None:
    real = _aliased(s)
    leaf = s.leaf(real)
    s.serve([leaf, s.pki.intermediate]).tlsa(tlsa("3 1 1", leaf), owner=f"_25._tcp.{real}")


@case("host-cname-tlsa-at-alias-only", "verified", "TLSA only at _25._tcp.host: tried second")
def _(s: Slot) -> None:
    _aliased(s)
    s.tlsa(tlsa("3 1 1", s.standard()))


@case("host-cname-target-rrset-wins", "defer", "mismatch at real, match at host: real is used")
def _(s: Slot) -> None:
    real = _aliased(s)
    leaf = s.standard()
    s.tlsa(tlsa("3 1 1", s.pki.other_key), owner=f"_25._tcp.{real}")
    s.tlsa(tlsa("3 1 1", leaf))


@case("host-cname-ta-leaf-names-target", "verified", "2 0 1 at real, leaf names real")
def _(s: Slot) -> None:
    real = _aliased(s)
    s.serve([s.leaf(real), s.pki.intermediate])
    s.tlsa(tlsa("2 0 1", s.pki.intermediate), owner=f"_25._tcp.{real}")


@case(
    "host-cname-ta-leaf-names-alias",
    "defer",
    "2 0 1 at real, leaf names the alias only: Postfix matches the TLSA base domain (real)",
)
def _(s: Slot) -> None:
    real = _aliased(s)
    s.serve([s.leaf(s.host), s.pki.intermediate])
    s.tlsa(tlsa("2 0 1", s.pki.intermediate), owner=f"_25._tcp.{real}")


def _aliased_insecure(s: Slot) -> None:
    """The host a (secure) CNAME to mx.plain.test (insecure, 127.0.0.1)."""
    s.a_record = False
    s.address = "127.0.0.1"
    s.add(s.host, "CNAME", "mx.plain.test.")
    s.serve([s.pki.leaf("mx.plain.test"), s.pki.intermediate])


@case(
    "host-cname-to-insecure-tlsa-mismatch",
    "defer",
    "host CNAME mx.plain.test (insecure): the TLSA RRset at the secure alias still applies",
)
def _(s: Slot) -> None:
    _aliased_insecure(s)
    s.tlsa(tlsa("3 1 1", s.pki.other_key))


@case("host-cname-to-insecure-no-tlsa", "opportunistic", "as above, no TLSA at the alias")
def _(s: Slot) -> None:
    _aliased_insecure(s)


@case("host-cname-to-insecure-tlsa-match", "verified", "as above, the alias's 3 1 1 matches")
def _(s: Slot) -> None:
    _aliased_insecure(s)
    s.tlsa(tlsa("3 1 1", s.pki.leaf_key))


# -- insecure, bogus, indeterminate (the lab's names at 127.0.0.1) -----------------------------


for _name, _host, _expected in (
    ("insecure-zone", "mx.plain.test", "opportunistic"),
    ("insecure-delegation", "mx.insecure.example.test", "opportunistic"),
    ("bogus-zone", "mx.bogus.test", "defer"),
    ("indeterminate-zone", "mx.island.lab", "opportunistic"),
):

    @case(_name, _expected, f"[{_host}] at 127.0.0.1")
    def _zone(s: Slot, host: str = _host) -> None:
        s.elsewhere(host, "127.0.0.1")
        s.serve([s.pki.leaf("mx.plain.test"), s.pki.intermediate])


# -- no TLSA, unusable TLSA ------------------------------------------------------------------


@case("no-tlsa-nxdomain", "opportunistic")
def _(s: Slot) -> None:
    s.standard()


@case("no-tlsa-nodata", "opportunistic", "_25._tcp.host has a TXT record only")
def _(s: Slot) -> None:
    s.standard()
    s.add(s.owner, "TXT", '"not a TLSA"')


@case("unusable-pkix-ee-only", "opportunistic", "1 1 1 of the leaf (RFC 7672 section 3.1.3)")
def _(s: Slot) -> None:
    s.tlsa(tlsa("1 1 1", s.standard()))


@case("unusable-pkix-ta-only", "opportunistic", "0 0 1 of the root, root sent")
def _(s: Slot) -> None:
    s.serve([s.leaf(), s.pki.intermediate, s.pki.root]).tlsa(tlsa("0 0 1", s.pki.root))


@case("unusable-short-digest-only", "opportunistic", "a 31-byte 3 1 1")
def _(s: Slot) -> None:
    s.tlsa(tlsa("3 1 1", s.standard(), truncate=31))


@case("unusable-unknown-usage-only", "opportunistic", "4 1 1")
def _(s: Slot) -> None:
    s.tlsa("4 1 1 " + tlsa("3 1 1", s.standard()).split()[3])


@case("unusable-unknown-mtype-only", "opportunistic", "3 1 3")
def _(s: Slot) -> None:
    s.tlsa("3 1 3 " + tlsa("3 1 1", s.standard()).split()[3])


@case("short-digest-beside-good", "verified", "a 31-byte 3 1 1 beside the right 3 1 1")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("3 1 1", leaf, truncate=31), tlsa("3 1 1", leaf))


@case("unusable-beside-mismatch", "defer", "1 1 1 of the leaf beside 3 1 1 of another key")
def _(s: Slot) -> None:
    leaf = s.standard()
    s.tlsa(tlsa("1 1 1", leaf), tlsa("3 1 1", s.pki.other_key))


# -- STARTTLS -------------------------------------------------------------------------------


@case("no-starttls", "defer", "under a matching 3 1 1")
def _(s: Slot) -> None:
    s.tlsa(tlsa("3 1 1", s.standard()))
    s.starttls = False


@case("no-starttls-no-tlsa", "opportunistic", "delivered in the clear")
def _(s: Slot) -> None:
    s.standard()
    s.starttls = False


# -- RSA and ECDSA side by side ----------------------------------------------------------------


def _dual(s: Slot) -> tuple[object, object]:
    ecdsa_leaf = s.leaf()
    rsa_leaf = s.leaf(key=s.pki.rsa_key)
    s.serve([rsa_leaf, s.pki.intermediate], s.pki.rsa_key)
    s.serve([ecdsa_leaf, s.pki.intermediate], s.pki.leaf_key)
    return ecdsa_leaf, rsa_leaf


@case("dual-only-ecdsa-matches", "verified", "Postfix is offered the ECDSA chain")
def _(s: Slot) -> None:
    ecdsa_leaf, _rsa = _dual(s)
    s.tlsa(tlsa("3 1 1", ecdsa_leaf))  # type: ignore[arg-type]


@case("dual-only-rsa-matches", "defer", "Postfix is offered the ECDSA chain")
def _(s: Slot) -> None:
    _ecdsa, rsa_leaf = _dual(s)
    s.tlsa(tlsa("3 1 1", rsa_leaf))  # type: ignore[arg-type]


@case("dual-both-match", "verified")
def _(s: Slot) -> None:
    ecdsa_leaf, rsa_leaf = _dual(s)
    s.tlsa(tlsa("3 1 1", ecdsa_leaf), tlsa("3 1 1", rsa_leaf))  # type: ignore[arg-type]


# -- the documented differences ---------------------------------------------------------------

DELIBERATE: dict[str, str] = {
    "dual-only-ecdsa-matches": (
        "rollover verify probes every key algorithm the server offers (README: every chain the "
        "server can present must match): another sender, or this one with other settings, gets "
        "the RSA chain, which no record authenticates"
    ),
}

NAMES = [c.name for c in CASES]
assert len(set(NAMES)) == len(NAMES), "case names must be unique"


@pytest.fixture(scope="module")
def results(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CaseResult]:
    try:
        return run_conformance(lab, tmp_path_factory.mktemp("postfix"), CASES)
    except HarnessError as exc:
        pytest.fail(f"the Postfix harness could not run: {exc}")


def _explain(result: CaseResult) -> str:
    return (
        f"\n{result.case.name} ({result.destination} at {result.address}:25): {result.case.note}"
        f"\n  postfix:  {result.postfix}: {result.postfix_detail}"
        f"\n  rollover: {result.rollover} (exit {result.rollover_exit}): {result.rollover_reasons}"
        f"{result.rollover_stderr[-500:]}"
    )


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_postfix_outcome(results: dict[str, CaseResult], case: Case) -> None:
    """The table's expected outcome is what Postfix does (the harness and the table stay true)."""
    result = results[case.name]
    assert result.postfix == case.expected, _explain(result)


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_rollover_agrees_with_postfix(results: dict[str, CaseResult], case: Case) -> None:
    result = results[case.name]
    assert result.rollover == case.expected or case.name in DELIBERATE, _explain(result)


def test_agreement(results: dict[str, CaseResult]) -> None:
    """The whole table and the agreement figure (shown with -rA); at least 40 cases; every
    deliberate difference still a difference (else it is stale)."""
    print()
    print(table(results.values(), DELIBERATE))
    for result in results.values():
        if not result.agree:
            print(_explain(result))
    assert len(CASES) >= 40
    assert set(DELIBERATE) <= set(NAMES)
    stale = [n for n in DELIBERATE if results[n].agree]
    assert not stale, f"DELIBERATE entries that now agree: {stale}"
