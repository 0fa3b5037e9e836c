"""The probe against the local STARTTLS server: chains, key algorithms, failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cryptography import x509

from rollover.edges.probe import TlsProbe
from tests.certs import der, key_pem, make_cert, make_key, make_pki, pem
from tests.smtpserver import SmtpServer


def write_chain(
    directory: Path, name: str, certs: list[x509.Certificate], key
) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    chain = directory / f"{name}.pem"
    chain.write_bytes(pem(*certs))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(key_pem(key))
    return chain, key_path


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("dual")
    ec_pki = make_pki("p256", tag="probe-ec")
    rsa_key = make_key("rsa2048", "probe-rsa")
    rsa_leaf = make_cert(
        "mx1.example.test",
        rsa_key,
        (ec_pki.intermediate, ec_pki.intermediate_key),
        dns_names=("mx1.example.test",),
    )
    server = SmtpServer(
        [
            write_chain(d, "ec", [ec_pki.leaf, ec_pki.intermediate], ec_pki.leaf_key),
            write_chain(d, "rsa", [rsa_leaf, ec_pki.intermediate], rsa_key),
        ]
    ).start()
    yield server, ec_pki, rsa_leaf
    server.stop()


def test_probe_captures_both_chains(dual) -> None:  # type: ignore[no-untyped-def]
    server, ec_pki, rsa_leaf = dual
    result = TlsProbe(timeout=10).probe("127.0.0.1", server.port, "mx1.example.test", "smtp")
    assert result.error is None
    chains = {c.asked: c for c in result.chains}
    assert set(chains) == {"default", "ecdsa", "rsa"}
    assert chains["ecdsa"].certificates[0] == der(ec_pki.leaf)
    assert chains["rsa"].certificates[0] == der(rsa_leaf)
    assert len(chains["rsa"].certificates) == 2  # the intermediate too
    assert len(result.distinct_chains) == 2
    assert chains["rsa"].protocol == "TLSv1.2"


def test_no_starttls(tmp_path: Path) -> None:
    pki = make_pki("p256", tag="nostarttls")
    server = SmtpServer(
        [write_chain(tmp_path, "c", [pki.leaf], pki.leaf_key)], offer_starttls=False
    ).start()
    try:
        result = TlsProbe(timeout=5).probe("127.0.0.1", server.port, "mx1.example.test", "smtp")
    finally:
        server.stop()
    assert result.starttls_missing
    assert result.error == "STARTTLS not offered"


def test_refused_and_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = TlsProbe(timeout=2).probe("127.0.0.1", port, "x", "smtp")
    assert result.error == "connection refused"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never speaks
    try:
        result = TlsProbe(timeout=1).probe("127.0.0.1", listener.getsockname()[1], "x", "smtp")
    finally:
        listener.close()
    assert result.error is not None
    assert "timed out" in result.error


def test_record_connect_derives_from_the_live_chains(dual) -> None:  # type: ignore[no-untyped-def]
    from rollover.core.params import TlsaParams
    from tests.conftest import run_rollover
    from tests.test_record_openssl import openssl_expected

    server, ec_pki, rsa_leaf = dual
    result = run_rollover(
        "record",
        "--connect",
        server.endpoint,
        "--starttls",
        "smtp",
        "--host",
        "mx1.example.test",
        "-p",
        "3 1 1",
        "-p",
        "2 0 1",
    )
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    owner = "_25._tcp.mx1.example.test. IN TLSA"
    assert f"{owner} 3 1 1 {openssl_expected(pem(ec_pki.leaf), TlsaParams(3, 1, 1))}" in lines
    assert f"{owner} 3 1 1 {openssl_expected(pem(rsa_leaf), TlsaParams(3, 1, 1))}" in lines
    assert (
        f"{owner} 2 0 1 {openssl_expected(pem(ec_pki.intermediate), TlsaParams(2, 0, 1))}" in lines
    )
    assert len(lines) == 3  # one shared issuer: its 2 0 1 printed once


def test_record_connect_refused() -> None:
    from tests.conftest import assert_one_line_error, run_rollover

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_rollover("record", "--connect", f"127.0.0.1:{port}")
    assert_one_line_error(result, 3, "connection refused")
