"""Configuration validation: every error names its key path; unknown keys are errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from rollover import providers
from rollover.config import load_config, parse_config
from rollover.errors import ConfigError
from tests.conftest import run_rollover

SECRET = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "lab.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def base(secret: Path) -> dict:  # type: ignore[type-arg]
    return {
        "providers": {
            "lab": {
                "type": "rfc2136",
                "server": "127.0.0.1",
                "port": 5300,
                "zone": "example.test",
                "tsig": {"name": "lab-key", "algorithm": "hmac-sha256", "secret_file": str(secret)},
            },
            "zonefile": {
                "type": "zonefile",
                "path": "/var/lib/bind/example.test.db",
                "zone": "example.test",
                "reload": "rndc reload example.test",
            },
        },
        "resolvers": ["127.0.0.1:5301"],
        "safety_factor": 2,
        "state_dir": "/var/lib/rollover",
        "services": {
            "mx1": {
                "host": "mx1.example.test",
                "port": 25,
                "provider": "lab",
                "records": ["3 1 1", "dane-ta cert sha2-256"],
                "ttl": 300,
                "authoritative": ["127.0.0.1:5300"],
                "deploy": {
                    "chain": "/srv/tls/mx1-fullchain.pem",
                    "key": "/srv/tls/mx1.key",
                    "reload": ["systemctl", "reload", "postfix"],
                },
                "probe": {"connect": ["127.0.0.1:8025"], "starttls": "smtp"},
            },
        },
    }


def test_the_documented_shape_loads(secret: Path) -> None:
    config = parse_config(base(secret), "c.yaml", providers.settings_parser)
    service = config.service("mx1")
    assert service.owner == "_25._tcp.mx1.example.test."
    assert [str(p) for p in service.records] == ["3 1 1", "2 0 1"]
    assert config.providers["lab"].settings.tsig.secret == b"k" * 32
    # A string is split into arguments and runs without a shell (shell: true changes that).
    assert config.providers["zonefile"].settings.reload == ["rndc", "reload", "example.test"]
    assert service.deploy is not None
    assert service.deploy.reload == ["systemctl", "reload", "postfix"]
    assert service.cutover_timeout == 300.0
    assert config.warnings == ()


def test_the_cutover_timeout_reaches_the_engine(secret: Path, tmp_path: Path) -> None:
    """A service's ``cutover_timeout`` is the one its engine's cut-over fails after, and the
    planned length the signature check at start counts with."""
    from datetime import timedelta

    from rollover.core.phases import planned_seconds
    from rollover.engine.build import build_engine

    doc = mutate(base(secret), "services.mx1.cutover_timeout", 7200)
    doc["state_dir"] = str(tmp_path / "state")
    config = parse_config(doc, "c.yaml", providers.settings_parser)
    assert config.service("mx1").cutover_timeout == 7200.0
    engine = build_engine(config, "mx1")
    assert engine.cutover_timeout == timedelta(hours=2)
    assert planned_seconds(300, 300, 2.0, 7200.0) == 2 * 600 + 3600 + 5400
    assert planned_seconds(300, 300, 2.0, 300.0) == planned_seconds(300, 300, 2.0)


def mutate(doc: dict, path: str, value: object) -> dict:  # type: ignore[type-arg]
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("services.mx1.port", "twenty-five", "services.mx1.port: expected an integer"),
        ("services.mx1.port", 70000, "services.mx1.port: 70000 is out of range"),
        ("services.mx1.host", _DELETE, "services.mx1.host: is required"),
        ("services.mx1.host", "bad..host", "services.mx1.host"),
        ("services.mx1.provider", "nope", "services.mx1.provider: no provider named 'nope'"),
        ("services.mx1.records", ["9 9 9"], "services.mx1.records[0]"),
        ("services.mx1.colour", "blue", "services.mx1.colour: unknown key"),
        ("services.mx1.deploy.key", _DELETE, "services.mx1.deploy.key: is required"),
        ("services.mx1.probe.starttls", "ftp", "services.mx1.probe.starttls"),
        ("services.mx1.authoritative", ["ns1.example"], "services.mx1.authoritative[0]"),
        ("providers.lab.type", "carrier-pigeon", "providers.lab.type: unknown provider type"),
        ("providers.lab.server", _DELETE, "providers.lab.server: is required"),
        ("providers.lab.tsig.algorithm", "hmac-md5", "providers.lab.tsig.algorithm"),
        ("providers.lab.tsig.secret_file", "/nonexistent/secret", "no such file"),
        ("providers.lab.tsig.extra", 1, "providers.lab.tsig.extra: unknown key"),
        (
            "providers.zonefile.path",
            _DELETE,
            "providers.zonefile.path: is required",
        ),
        ("resolvers", "127.0.0.1", "resolvers: expected a list"),
        ("safety_factor", 0.5, "safety_factor: 0.5 is below 1"),
        ("surprise", True, "surprise: unknown key"),
        (
            "services.mx1.deploy.reload",
            "postfix reload && echo done",
            "services.mx1.deploy.reload: uses the shell ('&&') but runs without one: give an "
            "argument list, or set services.mx1.deploy.shell: true",
        ),
        (
            "providers.zonefile.reload",
            "rndc reload 'x",
            "providers.zonefile.reload: cannot be split",
        ),
        ("services.mx1.deploy.shell", True, "services.mx1.deploy.shell: runs a string"),
        ("on_event", "notify | mail root", "on_event: uses the shell ('|')"),
        ("services.mx1.deploy.shell", "yes", "services.mx1.deploy.shell: expected"),
        ("concurrency", 0, "concurrency: 0 is out of range 1..256"),
        ("concurrency", 1000, "concurrency: 1000 is out of range"),
        ("services.mx1.staged", {"chain": "/s/c.pem"}, "services.mx1.staged: give both"),
        ("services.mx1.staged", {"chain": "/c", "key": "/k", "x": 1}, "staged.x: unknown key"),
        ("services.mx1.cutover_timeout", 5, "services.mx1.cutover_timeout: 5 is below 30"),
        ("services.mx1.cutover_timeout", 10**6, "cutover_timeout: 1e+06 s is more than 7 days"),
        ("services.mx1.cutover_timeout", "1h", "cutover_timeout: expected an integer or a number"),
    ],
)
def test_errors_name_the_key_path(secret: Path, path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(mutate(base(secret), path, value), "c.yaml", providers.settings_parser)
    assert message in str(info.value)
    assert str(info.value).startswith("c.yaml: ")
    assert SECRET not in str(info.value)


def test_bad_secret_content(tmp_path: Path, secret: Path) -> None:
    secret.write_text("not base64 at all!!\n")
    with pytest.raises(ConfigError, match="not valid base64"):
        parse_config(base(secret), "c.yaml", providers.settings_parser)


def test_bind_key_file(tmp_path: Path, secret: Path) -> None:
    key_file = tmp_path / "tsig.key"
    key_file.write_text(f'key "lab-key" {{\n\talgorithm hmac-sha512;\n\tsecret "{SECRET}";\n}};\n')
    key_file.chmod(0o600)
    doc = base(secret)
    doc["providers"]["lab"]["tsig"] = {"key_file": str(key_file)}
    config = parse_config(doc, "c.yaml", providers.settings_parser)
    assert config.providers["lab"].settings.tsig.algorithm == "hmac-sha512"
    assert config.providers["lab"].settings.tsig.name == "lab-key"


def test_world_readable_secret_warns(secret: Path) -> None:
    secret.chmod(0o644)
    config = parse_config(base(secret), "c.yaml", providers.settings_parser)
    assert any("readable by group or others" in w for w in config.warnings)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("services:\n  mx1: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+"):
        load_config(str(path), providers.settings_parser)


def test_oversized_or_binary_config_is_refused(tmp_path: Path) -> None:
    from rollover.config import MAX_CONFIG_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"big.yaml: larger than \d+ bytes"):
        load_config(str(big), providers.settings_parser)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"services: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bin\.yaml: not UTF-8 text"):
        load_config(str(binary), providers.settings_parser)


def test_config_check_cli(tmp_path: Path, secret: Path) -> None:
    path = tmp_path / "rollover.yaml"
    path.write_text(yaml.safe_dump(base(secret)))
    ok = run_rollover("config", "check", "--config", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "mx1" in ok.stdout
    assert SECRET not in ok.stdout + ok.stderr
    via_env = run_rollover("config", "check", env={"ROLLOVER_CONFIG": str(path)})
    assert via_env.returncode == 0
    secret.chmod(0o640)
    warned = run_rollover("config", "check", "--config", str(path))
    assert warned.returncode == 0
    assert "chmod 600" in warned.stderr
    path.write_text(yaml.safe_dump(mutate(base(secret), "services.mx1.port", "x")))
    bad = run_rollover("config", "check", "--config", str(path))
    assert bad.returncode == 4
    assert "services.mx1.port" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run_rollover("config", "check", "--config", str(tmp_path / "none.yaml"))
    assert missing.returncode == 4
    assert "no such configuration file" in missing.stderr


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"type": "powerdns", "api_key_file": "K"}, "providers.new.api_url: is required"),
        (
            {"type": "powerdns", "api_url": "http://127.0.0.1:8081", "api_key_file": "K", "x": 1},
            "providers.new.x: unknown key",
        ),
        ({"type": "desec"}, "providers.new.token_file: is required"),
        ({"type": "desec", "token_file": "K", "zone": 7}, "providers.new.zone: expected"),
        ({"type": "cloudflare", "api_token_file": "K", "minimum_ttl": 0}, "minimum_ttl: 0 is out"),
        ({"type": "cloudflare", "api_token_file": "/nonexistent"}, "no such file"),
    ],
)
def test_config_check_names_the_new_providers_keys(
    tmp_path: Path,
    secret: Path,
    provider: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    """``rollover config check`` on the PowerDNS, deSEC and Cloudflare sections: one line,
    the key path named, exit 4, the secret file's content never printed."""
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    token.chmod(0o600)
    doc = base(secret)
    doc["providers"]["new"] = {k: (str(token) if v == "K" else v) for k, v in provider.items()}
    path = tmp_path / "rollover.yaml"
    path.write_text(yaml.safe_dump(doc))
    checked = run_rollover("config", "check", "--config", str(path))
    assert checked.returncode == 4, checked.stdout + checked.stderr
    assert message in checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1
    assert "Traceback" not in checked.stderr
    assert SECRET not in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("section", "command", "shell", "runs"),
    [
        ("deploy", "postfix reload", None, ["postfix", "reload"]),
        (
            "deploy",
            "/usr/sbin/postfix -c '/etc/post fix' reload",
            None,
            ["/usr/sbin/postfix", "-c", "/etc/post fix", "reload"],
        ),
        ("deploy", "postfix reload && echo ok", True, "postfix reload && echo ok"),
        ("deploy", ["postfix", "reload"], None, ["postfix", "reload"]),
        ("zonefile", "rndc reload example.test; true", True, "rndc reload example.test; true"),
        ("on_event", "logger -t rollover done", None, ["logger", "-t", "rollover", "done"]),
        ("on_event", "logger done | mail root", True, "logger done | mail root"),
    ],
)
def test_commands_run_without_a_shell_unless_asked(
    secret: Path, section: str, command: object, shell: bool | None, runs: object
) -> None:
    """The issue's contract: an argument list, not through a shell, unless ``shell: true``."""
    doc = base(secret)
    if section == "deploy":
        where = doc["services"]["mx1"]["deploy"]
        where["reload"] = command
        if shell is not None:
            where["shell"] = shell
    elif section == "zonefile":
        doc["providers"]["zonefile"]["reload"] = command
        doc["providers"]["zonefile"]["shell"] = shell
    else:
        doc["on_event"] = command
        if shell is not None:
            doc["on_event_shell"] = shell
    config = parse_config(doc, "c.yaml", providers.settings_parser)
    deploy = config.service("mx1").deploy
    assert deploy is not None
    found = {
        "deploy": deploy.reload,
        "zonefile": config.providers["zonefile"].settings.reload,
        "on_event": config.on_event,
    }[section]
    assert found == runs


def test_tlsa_owner_names_the_shared_rrset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rollover import providers
    from rollover.config import load_config
    from rollover.errors import ConfigError

    base = (
        "providers: {z: {type: zonefile, path: /dev/null, zone: example.test}}\n"
        "services:\n  mx1: {host: mx1.example.test, provider: z, tlsa_owner: %s}\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(base % "_dane.example.test")
    cfg = load_config(str(path), providers.settings_parser)
    assert cfg.services["mx1"].owner == "_dane.example.test."
    path.write_text(base % "'bad name'")
    with pytest.raises(ConfigError, match="tlsa_owner"):
        load_config(str(path), providers.settings_parser)
