"""Hostile and malformed input: fuzzed loaders, parameters, configuration, zone files, unsafe
deploy paths. Zero tracebacks: every failure is the tool's own error, with a message."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollover import providers
from rollover.config import DeployConfig, parse_config
from rollover.core.material import parse_material
from rollover.core.plan import TlsaRRset
from rollover.edges.deploy import FileDeployer
from rollover.edges.files import unsafe_path_reason
from rollover.errors import DeployError, RolloverError
from rollover.providers.zonetext import read_rrset, replace_rrset
from tests.certs import csr_pem, der, key_pem, make_pki, pem
from tests.test_zonetext import OWNER, TODAY, ZONE

PKI = make_pki("p256", tag="fuzz")
SEEDS = [
    pem(PKI.leaf, PKI.intermediate),
    der(PKI.leaf),
    key_pem(PKI.leaf_key),
    csr_pem(PKI.leaf_key),
]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=64),
)
def test_loaders_only_fail_with_input_errors(
    seed: bytes, cut: int, flips: list[tuple[int, int]], tail: bytes
) -> None:
    data = bytearray(seed[: cut % (len(seed) + 1)] + tail)
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    try:
        material = parse_material("fuzz", bytes(data))
    except RolloverError as exc:
        assert str(exc).startswith("fuzz")
        return
    assert material.certificates or material.key_spki


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    try:
        parse_material("rnd", data)
    except RolloverError as exc:
        assert "rnd" in str(exc)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "providers",
                    "services",
                    "type",
                    "server",
                    "port",
                    "host",
                    "records",
                    "tsig",
                    "name",
                    "deploy",
                    "chain",
                    "key",
                    "probe",
                    "ttl",
                    "provider",
                    "resolvers",
                    "zone",
                    "path",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_values)
def test_config_loader_never_crashes(document: object) -> None:
    try:
        parse_config(document, "fuzz.yaml", providers.settings_parser)
    except RolloverError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [
                "; comment",
                "$TTL 60",
                "$ORIGIN sub.example.test.",
                "www IN A 192.0.2.1",
                '  IN TXT "x"',
                "_25._tcp.mx1 IN TLSA 3 1 1 " + "ab" * 32,
                "(",
                ")",
                "bad line ( here",
                '"unterminated',
                "_25._tcp.mx1 300 IN TLSA ( 3 1 1",
                "  " + "cd" * 32 + " )",
                "$INCLUDE x",
                "@ IN NS ns1",
            ]
        ),
        max_size=8,
    )
)
def test_zone_editor_refuses_or_edits_exactly(lines: list[str]) -> None:
    text = ZONE + "\n".join(lines) + "\n"
    after = TlsaRRset(OWNER, 60, frozenset())
    try:
        edit = replace_rrset(text, "example.test.", after, TODAY, "fuzz.db")
    except RolloverError:
        return
    assert not read_rrset(edit.text, "example.test.", OWNER, "fuzz.db").exists


def test_world_writable_deploy_directory_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    reason = unsafe_path_reason(str(open_dir / "fullchain.pem"))
    assert reason is not None
    assert "world-writable" in reason
    deployer = FileDeployer(DeployConfig(str(open_dir / "c.pem"), str(open_dir / "k.pem")))
    with pytest.raises(DeployError, match="refusing to deploy"):
        deployer.install(b"chain", b"key")
    assert not (open_dir / "k.pem").exists()
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    assert unsafe_path_reason(str(safe / "fullchain.pem")) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by another user")
def test_symlink_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o755)
    link = directory / "key.pem"
    link.symlink_to(tmp_path / "elsewhere")
    os.lchown(link, 65534, 65534)
    reason = unsafe_path_reason(str(link))
    assert reason is not None
    assert "symlink owned by uid 65534" in reason


def test_config_check_refuses_unsafe_deploy_paths(tmp_path: Path) -> None:
    from tests.conftest import run_rollover

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    secret = tmp_path / "s"
    secret.write_text("a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5\n")
    secret.chmod(0o600)
    doc = {
        "providers": {
            "p": {
                "type": "rfc2136",
                "server": "127.0.0.1",
                "tsig": {"name": "k", "secret_file": str(secret)},
            }
        },
        "services": {
            "mx": {
                "host": "mx.example",
                "provider": "p",
                "deploy": {"chain": str(open_dir / "c.pem"), "key": str(open_dir / "k.pem")},
            }
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_rollover("config", "check", "--config", str(path))
    assert result.returncode == 4
    assert "services.mx.deploy.chain" in result.stderr
    assert "world-writable" in result.stderr


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("silent", "timed out"),
        ("garbage", ""),
        ("short", ""),
        ("wrong-id", ""),
        ("wrong-question", ""),
        ("always-truncated", ""),
    ],
)
def test_observer_survives_misbehaving_servers(mode: str, needle: str) -> None:
    import time

    from rollover.edges.observer import DnsObserver
    from tests.fakedns import ZONE, FakeDns

    server = FakeDns(mode).start()
    try:
        started = time.monotonic()
        observation = DnsObserver(authoritative=[server.endpoint], timeout=0.3, tries=2).observe(
            f"_25._tcp.mx.{ZONE}"
        )
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert elapsed < 5
    if observation.error is None:
        (answer,) = observation.authoritative
        assert answer.error is not None, answer
        assert needle in answer.error
    else:
        assert needle in observation.error


def test_observer_cname_loop_and_huge_rrset() -> None:
    from rollover.edges.observer import DnsObserver
    from tests.fakedns import ZONE, FakeDns

    server = FakeDns("cname-loop").start()
    try:
        looped = DnsObserver(authoritative=[server.endpoint], timeout=0.5).observe(
            f"_25._tcp.mx.{ZONE}"
        )
    finally:
        server.stop()
    assert looped.error is not None
    assert "CNAME loop" in looped.error
    server = FakeDns("huge").start()
    try:
        huge = DnsObserver(authoritative=[server.endpoint], timeout=2).observe(
            f"_25._tcp.mx.{ZONE}"
        )
    finally:
        server.stop()
    (answer,) = huge.authoritative
    assert answer.error is None
    assert answer.transport == "tcp"
    assert len(answer.records) == 400


# Found by the atheris campaign (tests/test_atheris.py): each was a traceback before.
def _bad_version(der_bytes: bytes) -> bytes:
    marker = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2: version 3
    assert marker in der_bytes
    return der_bytes.replace(marker, bytes.fromhex("a003020105"), 1)


def test_certificate_or_csr_of_an_unknown_version_is_an_input_error() -> None:
    with pytest.raises(RolloverError, match="fuzz"):
        parse_material("fuzz", _bad_version(der(PKI.leaf)))
    csr = x509.load_pem_x509_csr(csr_pem(PKI.leaf_key)).public_bytes(Encoding.DER)
    bad = bytearray(csr)
    version_at = bad.index(bytes.fromhex("020100"))  # CertificationRequestInfo version 0
    bad[version_at + 2] = 0x30  # "48 is not a valid CSR version"
    armoured = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(bad))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    for data in (bytes(bad), armoured):
        with pytest.raises(RolloverError, match="fuzz"):
            parse_material("fuzz", data)


def test_a_presented_certificate_this_library_cannot_parse_names_the_server() -> None:
    from rollover.core.material import load_presented_chain

    good = der(PKI.leaf)
    assert load_presented_chain("192.0.2.1:25", [good])[0].public_bytes(Encoding.DER) == good
    with pytest.raises(
        RolloverError, match=r"^192\.0\.2\.1:25: the leaf \(certificate 1\) does not parse as DER"
    ):
        load_presented_chain("192.0.2.1:25", [_bad_version(good), good])
    # An issuer that does not parse is left out (issue 14 class 6): the leaf still counts.
    chain = load_presented_chain("192.0.2.1:25", [good, _bad_version(good)])
    assert [c.public_bytes(Encoding.DER) for c in chain] == [good]


@pytest.mark.parametrize("text", ["3 1 \u00b2", "\u0663 1 1", "3 1 1\u00b2"])
def test_unicode_digits_are_not_parameters(text: str) -> None:
    from rollover.core.params import parse_params

    with pytest.raises(RolloverError, match="TLSA parameters"):
        parse_params(text)


def test_answers_of_another_class_are_ignored() -> None:
    """A server answering with an HS-class A record for the name server (atheris found the
    traceback: such a record has no address attribute)."""
    from tests.replaydns import ReplayObserver, conversation, split_frames

    owner = "_25._tcp.mx1.fuzz.test."
    good = ReplayObserver(resolvers=["127.0.0.1:5353"], replies=split_frames(conversation()))
    assert good.observe(owner).authoritative[0].exists
    odd = ReplayObserver(resolvers=["127.0.0.1:5353"], replies=split_frames(conversation("HS")))
    observation = odd.observe(owner)  # the NS host has no IN address: reported, not a crash
    assert observation.error is not None
    assert "no addresses found for the NS set of fuzz.test." in observation.error


def test_reload_runs_without_a_shell_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configured string becomes an argument list: shell syntax in it is inert data."""
    from rollover.config import parse_config

    def deployer(reload: str, shell: bool) -> FileDeployer:
        doc = {
            "providers": {"z": {"type": "zonefile", "path": str(tmp_path / "z.db"), "zone": "t."}},
            "services": {
                "mx": {
                    "host": "mx.t",
                    "provider": "z",
                    "deploy": {
                        "chain": str(tmp_path / "c.pem"),
                        "key": str(tmp_path / "k.pem"),
                        "reload": reload,
                        "shell": shell,
                    },
                }
            },
        }
        deploy = parse_config(doc, "c.yaml", providers.settings_parser).service("mx").deploy
        assert deploy is not None
        return FileDeployer(deploy)

    monkeypatch.setenv("MARKER_WORD", "expanded")
    deployer(f"touch {tmp_path}/$MARKER_WORD", shell=False).reload()
    assert (tmp_path / "$MARKER_WORD").exists()  # the argument, as written
    assert not (tmp_path / "expanded").exists()
    deployer(f"touch {tmp_path}/$MARKER_WORD", shell=True).reload()
    assert (tmp_path / "expanded").exists()  # only with shell: true does /bin/sh expand it
