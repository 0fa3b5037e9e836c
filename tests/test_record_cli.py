"""`rollover record` as a user meets it: bad inputs, warnings, exit codes, never a traceback."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.certs import NOW, csr_pem, der, key_pem, make_cert, make_key, make_pki, pem
from tests.conftest import assert_one_line_error, run_rollover

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki = make_pki("p256", tag="clifiles")
    (d / "full.pem").write_bytes(pem(pki.leaf, pki.intermediate))
    (d / "reversed.pem").write_bytes(pem(pki.root, pki.intermediate, pki.leaf))
    (d / "leaf.pem").write_bytes(pem(pki.leaf))
    (d / "leaf.der").write_bytes(der(pki.leaf))
    (d / "key.pem").write_bytes(key_pem(pki.leaf_key))
    (d / "csr.pem").write_bytes(csr_pem(pki.leaf_key))
    (d / "enc.pem").write_bytes(key_pem(pki.leaf_key, passphrase=b"correct horse"))
    (d / "pass.txt").write_bytes(b"correct horse\n")
    (d / "wrongpass.txt").write_bytes(b"wrong\n")
    (d / "empty.pem").write_bytes(b"")
    (d / "garbage.pem").write_bytes(b"this is not a certificate\n")
    full = pem(pki.leaf)
    (d / "truncated.pem").write_bytes(full[: len(full) // 2])
    lines = full.splitlines()
    lines[5] = b"!!!!" + lines[5][4:]
    (d / "corrupt.pem").write_bytes(b"\n".join(lines) + b"\n")
    body = der(pki.leaf)
    (d / "truncated.der").write_bytes(body[: len(body) - 40])
    (d / "binary.bin").write_bytes(os.urandom(300))
    (d / "adir").mkdir()
    return d


def test_zone_output_is_one_line_per_record(pki_files: Path) -> None:
    result = run_rollover("record", str(pki_files / "full.pem"), "--host", "mx1.example.test")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    owner, klass, rtype, u, s, m, data = line.split()
    assert (owner, klass, rtype, u, s, m) == (
        "_25._tcp.mx1.example.test.",
        "IN",
        "TLSA",
        "3",
        "1",
        "1",
    )
    assert data == data.lower()
    assert len(data) == 64
    assert result.stderr == ""


def test_ttl_and_relative_owner(pki_files: Path) -> None:
    result = run_rollover("record", str(pki_files / "leaf.pem"), "--ttl", "300")
    assert result.returncode == 0
    assert result.stdout.startswith("_25._tcp 300 IN TLSA 3 1 1 ")


def test_duplicates_from_several_sources_print_once(pki_files: Path) -> None:
    names = ["full.pem", "leaf.pem", "leaf.der", "key.pem", "csr.pem"]
    result = run_rollover("record", *(str(pki_files / n) for n in names))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_stdin_source(pki_files: Path) -> None:
    data = (pki_files / "full.pem").read_bytes()
    result = run_rollover("record", "-", stdin=data)
    direct = run_rollover("record", str(pki_files / "full.pem"))
    assert result.returncode == 0
    assert result.stdout == direct.stdout


def test_reversed_bundle_is_reported(pki_files: Path) -> None:
    result = run_rollover("record", str(pki_files / "reversed.pem"))
    assert result.returncode == 0
    assert "reverse order" in result.stderr
    assert result.stdout == run_rollover("record", str(pki_files / "full.pem")).stdout


def test_passphrase_from_file_and_environment(pki_files: Path) -> None:
    expected = run_rollover("record", str(pki_files / "key.pem")).stdout
    by_file = run_rollover(
        "record", str(pki_files / "enc.pem"), "--passphrase-file", str(pki_files / "pass.txt")
    )
    by_env = run_rollover(
        "record", str(pki_files / "enc.pem"), env={"ROLLOVER_PASSPHRASE": "correct horse"}
    )
    assert by_file.returncode == 0
    assert by_env.returncode == 0
    assert by_file.stdout == by_env.stdout == expected


@pytest.mark.parametrize(
    ("name", "args", "needles"),
    [
        ("empty.pem", [], ["empty.pem", "is empty"]),
        ("garbage.pem", [], ["garbage.pem", "neither PEM nor DER"]),
        ("truncated.pem", [], ["truncated.pem", "truncated PEM block"]),
        ("corrupt.pem", [], ["corrupt.pem", "corrupt"]),
        ("truncated.der", [], ["truncated.der", "corrupt or truncated"]),
        ("binary.bin", [], ["binary.bin"]),
        ("missing.pem", [], ["missing.pem", "no such file"]),
        ("adir", [], ["adir", "is a directory"]),
        ("enc.pem", [], ["enc.pem", "encrypted", "--passphrase-file"]),
        ("enc.pem", ["--passphrase-file", "{d}/wrongpass.txt"], ["enc.pem", "wrong passphrase"]),
        ("key.pem", ["-p", "3 0 1"], ["key.pem", "selector 0"]),
        ("csr.pem", ["-p", "2 0 1"], ["csr.pem", "selector 0"]),
        ("leaf.pem", ["--ta-index", "5", "-p", "2 0 1"], ["--ta-index 5"]),
        (
            "full.pem",
            ["--ta-subject", "nothing-like-this", "-p", "2 0 1"],
            ["matches no certificate"],
        ),
    ],
)
def test_bad_input_gives_one_line_and_status_3(
    pki_files: Path, name: str, args: list[str], needles: list[str]
) -> None:
    args = [a.replace("{d}", str(pki_files)) for a in args]
    result = run_rollover("record", str(pki_files / name), *args)
    assert_one_line_error(result, 3, *needles)
    assert result.stdout == ""


def test_unreadable_file_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from rollover.edges.files import read_source
    from rollover.errors import InputError

    def deny(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(InputError, match=r"mx1-fullchain\.pem: permission denied"):
        read_source(str(REPO / "examples" / "mx1-fullchain.pem"))


def test_one_bad_source_does_not_hide_the_others(pki_files: Path) -> None:
    result = run_rollover(
        "record",
        str(pki_files / "garbage.pem"),
        str(pki_files / "full.pem"),
        str(pki_files / "missing.pem"),
    )
    assert result.returncode == 3
    assert len(result.stdout.splitlines()) == 1
    assert "garbage.pem" in result.stderr
    assert "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-p", "9 9 9"], "certificate usage 9"),
        (["--format", "yaml"], "--format"),
        (["--host", "bad..name"], "not a valid DNS name"),
        (["--port", "70000"], "port 70000"),
    ],
)
def test_bad_options(pki_files: Path, args: list[str], needle: str) -> None:
    result = run_rollover("record", str(pki_files / "full.pem"), *args)
    assert_one_line_error(result, 3, needle)


def test_usage_error_from_the_parser_is_status_2() -> None:
    result = run_rollover("record", "--no-such-option", "x.pem")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_warnings_and_strict(tmp_path: Path) -> None:
    old_root_key = make_key("rsa1024", "weak")
    expired = make_cert(
        "Old CA",
        old_root_key,
        ca=False,
        not_before=NOW - dt.timedelta(days=400),
        not_after=NOW - dt.timedelta(days=10),
    )
    (tmp_path / "old.pem").write_bytes(pem(expired))
    path = str(tmp_path / "old.pem")
    # DANE-EE ignores expiry: only the weak-key warning.
    result = run_rollover("record", path)
    assert result.returncode == 0
    assert "under 2048 bits" in result.stderr
    assert "expired" not in result.stderr
    result = run_rollover("record", path, "-p", "2 0 1", "-p", "1 1 1", "-p", "3 0 0")
    assert result.returncode == 0
    for needle in (
        "expired on",
        "not a CA certificate",
        "SHOULD NOT",
        "full-certificate",
        "under 2048 bits",
    ):
        assert needle in result.stderr, needle
    assert len(result.stdout.splitlines()) == 3
    strict = run_rollover("record", path, "-p", "2 0 1", "--strict")
    assert strict.returncode == 1
    assert strict.stdout  # records still printed
    clean = run_rollover("record", str(REPO / "examples" / "mx1-fullchain.pem"), "--strict")
    assert clean.returncode == 0
    assert clean.stderr == ""


def test_usage_1_on_other_ports_is_not_warned(tmp_path: Path) -> None:
    pki = make_pki("p256", tag="port")
    (tmp_path / "full.pem").write_bytes(pem(pki.leaf, pki.intermediate))
    result = run_rollover("record", str(tmp_path / "full.pem"), "-p", "1 1 1", "--port", "443")
    assert result.returncode == 0
    assert "SHOULD NOT" not in result.stderr


def test_combined_key_and_wrong_certificate_is_an_error(tmp_path: Path) -> None:
    pki = make_pki("p256", tag="combo")
    other = make_key("p256", "other")
    (tmp_path / "combo.pem").write_bytes(key_pem(other) + pem(pki.leaf))
    result = run_rollover("record", str(tmp_path / "combo.pem"))
    assert_one_line_error(result, 3, "does not match any certificate")


def test_encrypted_der_key_without_passphrase(tmp_path: Path) -> None:
    key = make_key("p256", "encder")
    (tmp_path / "k.der").write_bytes(
        key_pem(key, passphrase=b"pw", encoding=serialization.Encoding.DER)
    )
    result = run_rollover("record", str(tmp_path / "k.der"))
    assert_one_line_error(result, 3, "k.der", "encrypted")


def test_version_and_help() -> None:
    version = run_rollover("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("rollover ")
    help_text = run_rollover("record", "--help")
    assert help_text.returncode == 0
    assert "Examples" in help_text.stdout


def test_record_does_not_import_dnspython_or_boto3() -> None:
    import subprocess
    import sys

    probe = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "rollover",
            "record",
            str(REPO / "examples" / "mx1-fullchain.pem"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in probe.stderr.splitlines() if "|" in line}
    assert "cryptography.x509" in modules  # the probe works
    heavy = {
        m for m in modules if m.split(".")[0] in ("dns", "boto3", "botocore", "yaml", "pydantic")
    }
    assert heavy == set()
    # Only the record command's module is registered (typer inspects every registered command).
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            f"sys.argv = ['rollover', 'record', {str(REPO / 'examples' / 'mx1-fullchain.pem')!r}]\n"
            "from rollover.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('rollover.cli')), file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "'rollover.cli.record'" in loaded
    assert "rollover_cmd" not in loaded
    assert "verify_cmd" not in loaded
