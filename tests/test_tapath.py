"""Issue 14 classes 4, 5 and 7: DANE-TA path validation as OpenSSL does it, through
``cryptography.x509.verification`` (rollover.core.tapath). Table-driven, no network."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rollover.core.matching import match_chain
from tests.certs import NOW, make_key
from tests.test_matching import rec

HOST = "mx.example.test"
ROOT_KEY = make_key("p256", "tapath-root")
INT_KEY = make_key("p256", "tapath-int")
LEAF_KEY = make_key("p256", "tapath-leaf")
DAY = dt.timedelta(days=1)

Edit = Callable[[x509.CertificateBuilder], x509.CertificateBuilder]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: object,
    issuer: tuple[x509.Name, object] | None,
    *,
    ca: bool,
    path_length: int | None = None,
    edit: Edit = lambda b: b,
    before: dt.datetime = NOW - DAY,
    after: dt.datetime = NOW + 90 * DAY,
) -> x509.Certificate:
    issuer_name, signer = issuer or (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False
        )
    return edit(builder).sign(signer, hashes.SHA256())  # type: ignore[arg-type]


def _chain(
    *,
    leaf: Edit = lambda b: b,
    intermediate: Edit = lambda b: b,
    root_after: dt.datetime = NOW + 900 * DAY,
    int_path_length: int | None = None,
    root_path_length: int | None = None,
    leaf_ca: bool = False,
) -> list[x509.Certificate]:
    root = _cert("TA Root", ROOT_KEY, None, ca=True, path_length=root_path_length, after=root_after)
    inter = _cert(
        "TA Int",
        INT_KEY,
        (root.subject, ROOT_KEY),
        ca=True,
        path_length=int_path_length,
        edit=intermediate,
    )
    end = _cert(HOST, LEAF_KEY, (inter.subject, INT_KEY), ca=leaf_ca, edit=leaf)
    return [end, inter, root]


def _unknown_critical(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    return b.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=True)


def _client_only(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)


def _server_eku(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)


def _excluded(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return b.add_extension(
        x509.NameConstraints(None, [x509.DNSName("example.test")]), critical=True
    )


def _no_cert_sign(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    return b.add_extension(usage, critical=True)


CASES = [
    ("ordinary", {}, 1, True, ""),
    ("root as anchor", {}, 2, True, ""),
    ("leaf EKU serverAuth", {"leaf": _server_eku}, 1, True, ""),
    ("unknown critical extension", {"leaf": _unknown_critical}, 1, False, "critical"),
    ("leaf EKU without serverAuth", {"leaf": _client_only}, 1, False, "server authentication"),
    ("pathLen 0 above an intermediate", {"root_path_length": 0}, 2, False, "path"),
    ("name constraints exclude the host", {"intermediate": _excluded}, 1, False, ""),
    ("CA without keyCertSign", {"intermediate": _no_cert_sign}, 1, False, "keyCertSign"),
    ("expired self-signed anchor sent", {"root_after": NOW - DAY}, 2, False, "expired"),
]


@pytest.mark.parametrize(("name", "shape", "anchor", "ok", "why"), CASES)
def test_dane_ta_path(name: str, shape: dict[str, object], anchor: int, ok: bool, why: str) -> None:
    chain = _chain(**shape)  # type: ignore[arg-type]
    result = match_chain(
        frozenset({rec("2 0 1", chain[anchor])}), chain, port=25, reference_names=[HOST], now=NOW
    )
    assert result.ok is ok, (name, result.problems)
    if not ok:
        assert why.lower() in result.problems[0].lower(), result.problems


def test_dane_ta_naming_the_leaf_itself_says_why() -> None:
    leaf = _chain()[0]
    result = match_chain(
        frozenset({rec("2 0 1", leaf)}), [leaf], port=25, reference_names=[HOST], now=NOW
    )
    assert not result.ok
    assert "names the leaf itself" in result.problems[0]


def test_a_wildcard_just_below_a_top_level_name_matches_nothing() -> None:
    from rollover.core.matching import name_matches
    from tests.certs import make_cert

    tld = make_cert("w", make_key("p256", "w1"), dns_names=("*.test",))
    ok = make_cert("w", make_key("p256", "w2"), dns_names=("*.example.test",))
    assert not name_matches(tld, "example.test")
    assert name_matches(ok, "mx.example.test")
