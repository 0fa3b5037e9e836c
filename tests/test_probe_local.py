"""The probe against the local STARTTLS server: chains, key algorithms, failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cryptography import x509

from rollover.edges.probe import TlsProbe
from tests.certs import der, key_pem, make_cert, make_key, make_pki, pem
from tests.fakedns import FakeDns
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
    before = server.handshakes
    result = TlsProbe(timeout=10).probe("127.0.0.1", server.port, "mx1.example.test", "smtp")
    assert result.error is None
    chains = {c.asked: c for c in result.chains}
    # The default handshake brought the ECDSA chain: it is not asked for again.
    assert set(chains) == {"default", "rsa"}
    assert server.handshakes - before == 2
    assert chains["default"].certificates[0] == der(ec_pki.leaf)
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


def test_record_connect_bracketed_ipv6_with_a_port(tmp_path: Path) -> None:
    """``--connect [::1]:PORT`` is an address and a port, not a name to resolve."""
    from tests.conftest import run_rollover

    pki = make_pki("p256", tag="v6")
    server = SmtpServer(
        [write_chain(tmp_path, "c", [pki.leaf], pki.leaf_key)], address="::1"
    ).start()
    try:
        result = run_rollover(
            "record", "--connect", server.endpoint, "--starttls", "smtp", "-p", "3 1 1"
        )
    finally:
        server.stop()
    assert server.endpoint.startswith("[::1]:")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.endswith(openssl_spki_sha256(pki.leaf))


def openssl_spki_sha256(certificate: x509.Certificate) -> str:
    from rollover.core.params import TlsaParams
    from tests.test_record_openssl import openssl_expected

    return openssl_expected(pem(certificate), TlsaParams(3, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx1.example.test", ("mx1.example.test", 25)),
        ("mx1.example.test:2525", ("mx1.example.test", 2525)),
        ("192.0.2.1:587", ("192.0.2.1", 587)),
        ("[::1]:2525", ("::1", 2525)),
        ("[2001:db8::25]", ("2001:db8::25", 25)),
        ("2001:db8::25", ("2001:db8::25", 25)),
    ],
)
def test_one_host_port_parser(text: str, expected: tuple[str, int]) -> None:
    from rollover.core.addresses import split_host_port

    assert split_host_port(text, 25) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[::1", "expected [IPV6]:PORT"),
        ("[::1]x", "expected"),
        (":25", "no host"),
        ("a:b", "bad port"),
    ],
)
def test_host_port_errors_name_the_option(text: str, needle: str) -> None:
    from rollover.core.addresses import split_host_port
    from rollover.errors import InputError

    with pytest.raises(InputError, match=r"^--connect ") as info:
        split_host_port(text, 25, what="--connect")
    assert needle in str(info.value)


def test_verify_timeout_option_beats_the_configured_probe_timeout(tmp_path: Path) -> None:
    """``verify --service mx1 --timeout 2`` probes for 2 s, whatever probe.timeout says; without
    the option the service's probe.timeout applies."""
    import json

    import yaml

    from tests.conftest import run_rollover
    from tests.test_config import SECRET

    secret = tmp_path / "lab.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts, never speaks
    silent = f"127.0.0.1:{listener.getsockname()[1]}"
    dns_server = FakeDns("normal").start()  # answers at once: only the probe waits
    config = tmp_path / "rollover.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "lab": {
                        "type": "rfc2136",
                        "server": "127.0.0.1",
                        "zone": "example.test",
                        "tsig": {"name": "k", "secret_file": str(secret)},
                    }
                },
                "resolvers": [dns_server.endpoint],
                "state_dir": str(tmp_path / "state"),
                "services": {
                    "mx1": {
                        "host": "mx.fuzz.test",
                        "provider": "lab",
                        "probe": {"connect": [silent], "starttls": "smtp", "timeout": 1},
                    }
                },
            }
        )
    )
    try:
        given = run_rollover(
            "verify", "--service", "mx1", "--timeout", "2", "--json", "--config", str(config)
        )
        default = run_rollover("verify", "--service", "mx1", "--json", "--config", str(config))
    finally:
        listener.close()
        dns_server.stop()

    def reasons(result: object) -> str:
        return " ".join(json.loads(result.stdout)["results"][0]["reasons"])  # type: ignore[attr-defined]

    assert "the probe's limit: 2 s" in reasons(given), given.stdout
    assert "the probe's limit: 1 s" in reasons(default), default.stdout


@pytest.mark.parametrize(
    ("option", "configured", "expected"),
    [(10.0, 1.0, 10.0), (2.0, 1.0, 2.0), (None, 1.0, 1.0), (None, None, 10.0), (10.0, None, 10.0)],
)
def test_the_timeout_given_is_the_timeout_used(
    option: float | None, configured: float | None, expected: float
) -> None:
    from rollover.cli.verify_cmd import probe_timeout

    assert probe_timeout(option, configured) == expected
