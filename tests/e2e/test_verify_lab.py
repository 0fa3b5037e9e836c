"""`rollover verify` against the lab's DNS and the local STARTTLS server."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
from pathlib import Path

import pytest
from cryptography import x509

from rollover.core.association import Association
from tests.certs import NOW, key_pem, make_cert, make_key, make_pki, pem
from tests.conftest import run_rollover
from tests.lab import Lab
from tests.smtpserver import SmtpServer
from tests.test_matching import rec

PKI = make_pki("p256", tag="verify", host="*.example.test")
RSA_KEY = make_key("rsa2048", "verify-rsa")


pytestmark = pytest.mark.lab


def host() -> str:
    return f"mx-{secrets.token_hex(4)}.example.test"


def serve(
    tmp: Path, chains: list[tuple[list[x509.Certificate], object]], **kw: object
) -> SmtpServer:
    files = []
    for i, (certs, key) in enumerate(chains):
        chain, key_path = tmp / f"c{i}.pem", tmp / f"c{i}.key"
        chain.write_bytes(pem(*certs))
        key_path.write_bytes(key_pem(key))  # type: ignore[arg-type]
        files.append((chain, key_path))
    return SmtpServer(files, **kw).start()  # type: ignore[arg-type]


def publish(
    lab: Lab, name: str, records: set[Association], zone: str = "example.test.", port: int = 25
) -> None:
    lab.update(zone, add=tuple((f"_{port}._tcp.{name}.", 5, "TLSA", str(r)) for r in records))


def verify(lab: Lab, name: str, server: SmtpServer, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_rollover(
        "verify",
        "--host",
        name,
        "--connect",
        server.endpoint,
        "--resolver",
        lab.resolver,
        "--authoritative",
        lab.primary,
        "--timeout",
        "5",
        "--json",
        *extra,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


FULL = ([PKI.leaf, PKI.intermediate], PKI.leaf_key)


@pytest.mark.parametrize(
    ("records", "chains", "code", "depth"),
    [
        ({rec("3 1 1", PKI.leaf)}, [FULL], 0, 0),
        ({rec("3 1 1", make_pki("p256", tag="verify-other").leaf)}, [FULL], 2, None),
        ({rec("2 0 1", PKI.intermediate)}, [FULL], 0, 1),
        ({rec("2 1 1", PKI.intermediate)}, [FULL], 0, 1),
        ({rec("2 0 1", PKI.intermediate)}, [([PKI.leaf], PKI.leaf_key)], 2, None),  # TA not sent
    ],
)
def test_matching_cases(lab: Lab, tmp_path: Path, records, chains, code, depth) -> None:  # type: ignore[no-untyped-def]
    name = host()
    publish(lab, name, records)
    server = serve(tmp_path, chains, hostname=name)
    try:
        rc, doc = verify(lab, name, server)
    finally:
        server.stop()
    assert rc == code, doc
    assert doc["exit"] == code
    assert doc["status"] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code]
    (result,) = doc["results"]
    assert result["dnssec"] == "secure"
    matched = result["chains"][0]["matched"]
    assert (matched and matched["depth"]) == depth if depth else matched is None or code == 0
    cert = result["chains"][0]["certificates"][0]
    assert cert["subject"] == PKI.leaf.subject.rfc4514_string()
    assert len(cert["spki_sha256"]) == 64
    assert cert["not_after"].endswith("Z")


def test_name_mismatch_under_dane_ta(lab: Lab, tmp_path: Path) -> None:
    name = host()  # the certificate says mx1.example.test, not this name
    key = make_key("p256", "verify-narrow")
    narrow = make_cert(
        "mx1.example.test",
        key,
        (PKI.intermediate, PKI.intermediate_key),
        dns_names=("mx1.example.test",),
    )
    publish(lab, name, {rec("2 0 1", PKI.intermediate)})
    server = serve(tmp_path, [([narrow, PKI.intermediate], key)])
    try:
        rc, doc = verify(lab, name, server)
    finally:
        server.stop()
    assert rc == 2
    assert any("names do not include" in r for r in doc["results"][0]["reasons"])


def test_expired_leaf_ok_under_dane_ee_critical_under_dane_ta(lab: Lab, tmp_path: Path) -> None:
    key = make_key("p256", "verify-expired")
    name = host()
    expired = make_cert(
        name,
        key,
        (PKI.intermediate, PKI.intermediate_key),
        dns_names=(name,),
        not_before=NOW - dt.timedelta(days=90),
        not_after=NOW - dt.timedelta(days=2),
    )
    server = serve(tmp_path, [([expired, PKI.intermediate], key)])
    try:
        publish(lab, name, {rec("3 1 1", expired)})
        rc, doc = verify(lab, name, server)
        assert rc == 0, doc
        assert any("DANE-EE ignores expiry" in r for r in doc["results"][0]["reasons"])
        other = host()
        publish(lab, other, {rec("2 0 1", PKI.intermediate)})
        rc, doc = verify(lab, other, server)
        assert rc == 2
        assert any("expired" in r for r in doc["results"][0]["reasons"])
    finally:
        server.stop()


def test_expiry_warning_days(lab: Lab, tmp_path: Path) -> None:
    key = make_key("p256", "verify-soon")
    name = host()
    soon = make_cert(name, key, dns_names=(name,), not_after=NOW + dt.timedelta(days=5))
    server = serve(tmp_path, [([soon], key)])
    try:
        publish(lab, name, {rec("3 1 1", soon)})
        assert verify(lab, name, server)[0] == 1  # default --warn 14
        assert verify(lab, name, server, "--warn", "3")[0] == 0
    finally:
        server.stop()


def test_starttls_missing_is_critical(lab: Lab, tmp_path: Path) -> None:
    name = host()
    publish(lab, name, {rec("3 1 1", PKI.leaf)})
    server = serve(tmp_path, [FULL], offer_starttls=False)
    try:
        rc, doc = verify(lab, name, server)
    finally:
        server.stop()
    assert rc == 2
    assert any("STARTTLS not offered" in r for r in doc["results"][0]["reasons"])


def test_rsa_and_ecdsa_side_by_side(lab: Lab, tmp_path: Path) -> None:
    rsa_leaf = make_cert(
        "mx1.example.test",
        RSA_KEY,
        (PKI.intermediate, PKI.intermediate_key),
        dns_names=("mx1.example.test",),
    )
    server = serve(tmp_path, [FULL, ([rsa_leaf, PKI.intermediate], RSA_KEY)])
    try:
        only_ec = host()
        publish(lab, only_ec, {rec("3 1 1", PKI.leaf)})
        rc, doc = verify(lab, only_ec, server)
        assert rc == 2  # the RSA chain a sender may get does not match
        chains = doc["results"][0]["chains"]
        assert len(chains) == 2  # one per distinct chain the server can present
        assert {c["matched"] is None for c in chains} == {True, False}
        both = host()
        publish(lab, both, {rec("3 1 1", PKI.leaf), rec("3 1 1", rsa_leaf)})
        assert verify(lab, both, server)[0] == 0
    finally:
        server.stop()


def test_insecure_and_bogus_zones(lab: Lab, tmp_path: Path) -> None:
    server = serve(tmp_path, [FULL])
    try:
        rc, doc = verify(lab, "mx.plain.test", server)
        assert rc == 1
        assert doc["results"][0]["dnssec"] == "insecure"
        rc, doc = verify(lab, "mx.bogus.test", server)
        assert rc == 2
        assert doc["results"][0]["dnssec"] == "bogus"
    finally:
        server.stop()


def test_unreachable_server_is_unknown(lab: Lab) -> None:
    name = host()
    publish(lab, name, {rec("3 1 1", PKI.leaf)})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_rollover(
        "verify",
        "--host",
        name,
        "--connect",
        f"127.0.0.1:{port}",
        "--resolver",
        lab.resolver,
        "-a",
        lab.primary,
        "--json",
    )
    assert result.returncode == 3
    assert "connection refused" in json.loads(result.stdout)["results"][0]["reasons"][0]


def test_mx_walk_two_hosts_one_fails(lab: Lab, tmp_path: Path) -> None:
    """Two MX hosts on two loopback addresses at one port; the worse one decides."""
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    for _ in range(20):
        port = 20000 + secrets.randbelow(40000)
        try:
            good = serve(good_dir, [FULL], address="127.0.0.1", port=port)
        except OSError:
            continue
        try:
            bad = serve(bad_dir, [FULL], address="127.0.0.3", port=port)
        except OSError:
            good.stop()
            continue
        break
    else:
        pytest.fail("no free port on 127.0.0.1 and 127.0.0.3")
    label = secrets.token_hex(3)
    domain, mxa, mxb = (
        f"d{label}.example.test",
        f"mxa{label}.example.test",
        f"mxb{label}.example.test",
    )
    lab.update(
        "example.test.",
        add=(
            (f"{domain}.", 5, "MX", f"10 {mxa}."),
            (f"{domain}.", 5, "MX", f"20 {mxb}."),
            (f"{mxa}.", 5, "A", "127.0.0.1"),
            (f"{mxb}.", 5, "A", "127.0.0.3"),
        ),
    )
    publish(lab, mxa, {rec("3 1 1", PKI.leaf)}, port=port)
    publish(lab, mxb, {rec("3 1 1", make_pki("p256", tag="verify-wrong").leaf)}, port=port)
    try:
        result = run_rollover(
            "verify",
            "--domain",
            domain,
            "--port",
            str(port),
            "--starttls",
            "smtp",
            "--resolver",
            lab.resolver,
            "-a",
            lab.primary,
            "--json",
        )
    finally:
        good.stop()
        bad.stop()
    doc = json.loads(result.stdout)
    assert result.returncode == 2, doc
    by_host = {r["host"]: r for r in doc["results"]}
    assert by_host[f"{mxa}."]["status"] == "OK"
    assert by_host[f"{mxb}."]["status"] == "CRITICAL"
    assert [r["host"] for r in doc["results"]] == [f"{mxa}.", f"{mxb}."]  # preference order


def test_null_mx_is_skipped(lab: Lab) -> None:
    domain = f"null{secrets.token_hex(3)}.example.test"
    lab.update("example.test.", add=((f"{domain}.", 5, "MX", "0 ."),))
    result = run_rollover("verify", "--domain", domain, "--resolver", lab.resolver, "--json")
    doc = json.loads(result.stdout)
    assert any("null MX" in n for n in doc["notes"])
    assert doc["results"] == []
    assert result.returncode == 3
