"""Cross-check every derived record against the openssl command-line tool."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from rollover.core.derive import DeriveOptions, derive
from rollover.core.material import parse_material
from rollover.core.params import TlsaParams
from tests.certs import NOW, csr_pem, der, key_pem, make_cert, make_key, make_pki, pem, public_pem

ALL_PARAMS = tuple(
    TlsaParams(u, s, m) for u, s, m in itertools.product(range(4), range(2), range(3))
)
KINDS = ["rsa2048", "p256", "p384", "p521", "ed25519", "ed448"]


def openssl(*args: str, data: bytes) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=data, capture_output=True, check=True, timeout=30
    ).stdout


def openssl_selected(cert_pem: bytes, selector: int) -> bytes:
    """The bytes a selector picks, as openssl extracts them."""
    if selector == 0:
        return openssl("x509", "-outform", "DER", data=cert_pem)
    pubkey = openssl("x509", "-pubkey", "-noout", data=cert_pem)
    return openssl("pkey", "-pubin", "-outform", "DER", data=pubkey)


def openssl_association(selected: bytes, mtype: int) -> str:
    if mtype == 0:
        return selected.hex()
    digest = "-sha256" if mtype == 1 else "-sha512"
    return openssl("dgst", digest, "-binary", data=selected).hex()


def openssl_expected(cert_pem: bytes, params: TlsaParams) -> str:
    return openssl_association(openssl_selected(cert_pem, params.selector), params.mtype)


def derive_hex(
    data: bytes, params: tuple[TlsaParams, ...], passphrase: bytes | None = None, **kw: object
) -> list[str]:
    material = parse_material("src", data, passphrase)
    result = derive(material, DeriveOptions(params=params, owner="_25._tcp", **kw), NOW)  # type: ignore[arg-type]
    assert not result.errors, result.errors
    return [r.association.hex for r in result.records]


@pytest.mark.parametrize("kind", KINDS)
def test_all_24_parameter_sets_match_openssl_for_a_chain(kind: str) -> None:
    pki = make_pki(kind, tag=kind)
    bundle = pem(pki.leaf, pki.intermediate, pki.root)
    ours = derive_hex(bundle, ALL_PARAMS)
    leaf_sel = {s: openssl_selected(pem(pki.leaf), s) for s in (0, 1)}
    ta_sel = {s: openssl_selected(pem(pki.intermediate), s) for s in (0, 1)}
    expected = []
    for p in ALL_PARAMS:
        selected = ta_sel if p.usage in (0, 2) else leaf_sel
        expected.append(openssl_association(selected[p.selector], p.mtype))
    assert ours == expected


@pytest.mark.parametrize("order", ["leaf-first", "reversed", "shuffled"])
def test_bundle_order_does_not_change_records(order: str) -> None:
    pki = make_pki("p256", tag="order")
    certs = {
        "leaf-first": (pki.leaf, pki.intermediate, pki.root),
        "reversed": (pki.root, pki.intermediate, pki.leaf),
        "shuffled": (pki.intermediate, pki.leaf, pki.root),
    }[order]
    params = (TlsaParams(3, 1, 1), TlsaParams(2, 0, 1), TlsaParams(2, 1, 1))
    material = parse_material("bundle.pem", pem(*certs))
    result = derive(material, DeriveOptions(params=params, owner="_25._tcp"), NOW)
    assert [r.association.hex for r in result.records] == [
        openssl_expected(pem(pki.leaf), params[0]),
        openssl_expected(pem(pki.intermediate), params[1]),
        openssl_expected(pem(pki.intermediate), params[2]),
    ]
    notes = [w for w in result.warnings if "bundle is" in w]
    assert bool(notes) == (order != "leaf-first")
    if order == "reversed":
        assert "reverse order" in notes[0]


def test_der_certificate_equals_pem(tmp_path: Path) -> None:
    pki = make_pki("rsa2048", tag="der")
    params = (TlsaParams(3, 1, 1), TlsaParams(3, 0, 1), TlsaParams(3, 1, 2))
    assert derive_hex(der(pki.leaf), params) == derive_hex(pem(pki.leaf), params)
    assert derive_hex(der(pki.leaf), params) == [openssl_expected(pem(pki.leaf), p) for p in params]


def test_reused_key_in_two_certificates() -> None:
    """3 1 1 survives a renewal with the same key; 3 0 1 does not."""
    pki = make_pki("p256", tag="reuse")
    renewed = make_cert("mx1.example.test", pki.leaf_key, (pki.intermediate, pki.intermediate_key))
    params = (TlsaParams(3, 1, 1), TlsaParams(3, 0, 1))
    first, second = derive_hex(pem(pki.leaf), params), derive_hex(pem(renewed), params)
    assert first[0] == second[0] == openssl_expected(pem(renewed), params[0])
    assert first[1] != second[1]
    assert second[1] == openssl_expected(pem(renewed), params[1])


@pytest.mark.parametrize("kind", KINDS)
def test_key_and_csr_sources_match_the_certificate(kind: str) -> None:
    key = make_key(kind, "keysrc")
    cert = make_cert("mx1.example.test", key)
    expected = [openssl_expected(pem(cert), TlsaParams(3, 1, m)) for m in range(3)]
    params = tuple(TlsaParams(3, 1, m) for m in range(3))
    variants = [
        key_pem(key),
        key_pem(key, encoding=serialization.Encoding.DER),
        public_pem(key),
        public_pem(key, encoding=serialization.Encoding.DER),
        csr_pem(key),
        key_pem(key) + pem(cert),
    ]
    if kind.startswith(("rsa", "p")):
        variants.append(key_pem(key, serialization.PrivateFormat.TraditionalOpenSSL))
    if kind.startswith("rsa"):
        variants.append(public_pem(key, serialization.PublicFormat.PKCS1))
    for data in variants:
        assert derive_hex(data, params) == expected


def test_encrypted_keys_with_passphrase() -> None:
    key = make_key("p256", "enc")
    cert = make_cert("mx1.example.test", key)
    expected = [openssl_expected(pem(cert), TlsaParams(3, 1, 1))]
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        data = key_pem(key, fmt, passphrase=b"s3cret")
        assert derive_hex(data, (TlsaParams(3, 1, 1),), passphrase=b"s3cret") == expected
    der_data = key_pem(key, passphrase=b"s3cret", encoding=serialization.Encoding.DER)
    assert derive_hex(der_data, (TlsaParams(3, 1, 1),), passphrase=b"s3cret") == expected


def test_ta_selection_by_index_and_subject() -> None:
    pki = make_pki("p256", tag="ta")
    bundle = pem(pki.leaf, pki.intermediate, pki.root)
    p = (TlsaParams(2, 0, 1),)
    root_hash = openssl_expected(pem(pki.root), p[0])
    assert derive_hex(bundle, p, ta_index=2) == [root_hash]
    assert derive_hex(bundle, p, ta_subject="test root") == [root_hash]
    # A single CA certificate file is hashed itself: the 2 0 1 of a CA file.
    assert derive_hex(pem(pki.root), p) == [root_hash]


def test_cli_json_matches_openssl(tmp_path: Path, rollover_cli) -> None:  # type: ignore[no-untyped-def]
    pki = make_pki("rsa2048", tag="cli")
    (tmp_path / "full.pem").write_bytes(pem(pki.leaf, pki.intermediate))
    result = rollover_cli(
        "record",
        str(tmp_path / "full.pem"),
        "-p",
        "3 1 1",
        "-p",
        "dane-ta cert sha2-512",
        "--host",
        "MX1.example.test",
        "--ttl",
        "300",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["owner"], r["usage"], r["selector"], r["mtype"], r["data"]) for r in records] == [
        (
            "_25._tcp.mx1.example.test.",
            3,
            1,
            1,
            openssl_expected(pem(pki.leaf), TlsaParams(3, 1, 1)),
        ),
        (
            "_25._tcp.mx1.example.test.",
            2,
            0,
            2,
            openssl_expected(pem(pki.intermediate), TlsaParams(2, 0, 2)),
        ),
    ]
    assert records[0]["subject"] == "CN=mx1.example.test"
    assert records[1]["subject"] == pki.intermediate.subject.rfc4514_string()
    assert records[0]["key_type"] == "RSA-2048"
    assert records[0]["not_after"].endswith("Z")
    assert records[0]["source"] == str(tmp_path / "full.pem")


def test_same_named_intermediates_are_told_apart_by_signature() -> None:
    """An old and a renewed intermediate share a name; 2 0 1 must hash the one that signed."""
    root_key = make_key("p256", "samename-root")
    root = make_cert("Same Root", root_key, ca=True)
    old_key, new_key = make_key("p256", "samename-old"), make_key("p256", "samename-new")
    old = make_cert("Same Intermediate", old_key, (root, root_key), ca=True)
    new = make_cert("Same Intermediate", new_key, (root, root_key), ca=True)
    leaf = make_cert("mx1.example.test", make_key("p256", "samename-leaf"), (new, new_key))
    p = (TlsaParams(2, 0, 1),)
    for bundle in (pem(leaf, old, new), pem(old, leaf, new), pem(new, old, leaf)):
        assert derive_hex(bundle, p) == [openssl_expected(pem(new), p[0])]


def test_compressed_ec_point_is_hashed_as_encoded(tmp_path: Path) -> None:
    """A key stored with a compressed point gives certificates, CSRs and public keys with a
    compressed SPKI; a sender hashes that encoding, so every source must give its hash."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], capture_output=True, check=True, timeout=30)

    plain, key, cert, csr, pub = (tmp_path / n for n in ("k", "kc.pem", "c.pem", "r.pem", "p.pem"))
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(plain))
    run("ec", "-in", str(plain), "-conv_form", "compressed", "-out", str(key))
    run("req", "-new", "-x509", "-key", str(key), "-subj", "/CN=mx1.example.test", "-days", "30",
        "-out", str(cert))  # fmt: skip
    run("req", "-new", "-key", str(key), "-subj", "/CN=mx1.example.test", "-out", str(csr))
    run("ec", "-in", str(key), "-pubout", "-conv_form", "compressed", "-out", str(pub))
    expected = openssl_expected(cert.read_bytes(), TlsaParams(3, 1, 1))
    selected = openssl_selected(cert.read_bytes(), 1)
    assert selected[-33] in (2, 3)  # the point really is compressed in the certificate
    pkcs8 = openssl("pkcs8", "-topk8", "-nocrypt", "-outform", "DER", data=key.read_bytes())
    sources = [cert.read_bytes(), key.read_bytes(), csr.read_bytes(), pub.read_bytes(), pkcs8]
    for source in sources:
        assert derive_hex(source, (TlsaParams(3, 1, 1),)) == [expected]
    uncompressed = derive_hex(plain.read_bytes(), (TlsaParams(3, 1, 1),))
    assert uncompressed != [expected]  # the same key, encoded otherwise: another hash
    # Staging still pairs the key with its certificate, whatever the encodings.
    from rollover.engine.staging import load_staged

    assert load_staged(str(cert), str(plain), None).spki_sha256
