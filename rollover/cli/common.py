"""Options and helpers shared by the commands that use the configuration."""

import os
from typing import TYPE_CHECKING, Annotated

import typer

from rollover.errors import InputError
from rollover.ports import no_checkpoint

if TYPE_CHECKING:
    from rollover.config import Config, ServiceConfig
    from rollover.ports import Checkpoint, LiveProbe, Provider

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $ROLLOVER_CONFIG, else /etc/rollover/rollover.yaml).",
    ),
]
StateDirOption = Annotated[
    str | None, typer.Option("--state-dir", help="State directory (overrides state_dir).")
]
PassphraseFileOption = Annotated[
    str | None,
    typer.Option("--passphrase-file", help="File whose first line is the key passphrase."),
]
PassphraseEnvOption = Annotated[
    str, typer.Option("--passphrase-env", help="Environment variable with the passphrase.")
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        max=256,
        help="Services advanced at once (overrides concurrency:, default 16).",
    ),
]
DEFAULT_PASSPHRASE_ENV = "ROLLOVER_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


checkpoint: "Checkpoint" = no_checkpoint
"""Called at each crash point of a rollover; only the crash-campaign tests' entry point
(``tests/crashing_cli.py``) puts anything else here."""

LOG_FORMAT = {"value": "text"}  # set by the root --log-format option


def _json_line(level: str, message: str) -> str:
    import json
    from datetime import UTC, datetime

    return json.dumps(
        {
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": level,
            "message": message,
        }
    )


def say(line: str) -> None:
    """A log line on stdout: plain text, or one JSON object per line with --log-format json."""
    import sys

    text = _json_line("info", line) if LOG_FORMAT["value"] == "json" else line
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def warn(line: str) -> None:
    if LOG_FORMAT["value"] == "json":
        typer.echo(_json_line("warning", line), err=True)
    else:
        typer.echo(f"rollover: warning: {line}", err=True)


def load_config(path_option: str | None, *, provider_settings: bool = True) -> "Config":
    """The validated configuration; its warnings go to stderr. ``provider_settings=False``
    (an agent): the providers' sections are not read (their secrets are not on this host)."""
    from rollover import providers
    from rollover.config import config_path, load_config
    from rollover.edges.configcache import cached_document

    config = load_config(
        config_path(path_option),
        providers.settings_parser,
        cache=cached_document,
        provider_settings=provider_settings,
    )
    for line in config.warnings:
        warn(line)
    return config


def make_provider(config: "Config", name: str) -> "Provider":
    from rollover.engine.build import make_provider

    return make_provider(config, name)


def state_dir(config: "Config", option: str | None) -> str:
    return str(option or config.state_dir)


def passphrase(path: str | None, env_name: str) -> bytes | None:
    """The passphrase from a file (first line) or the environment; never from argv."""
    if path is not None:
        try:
            with open(path, "rb") as handle:
                first = handle.readline(65536)
        except OSError as exc:
            raise InputError(
                f"{path}: cannot read passphrase file: {exc.strerror or exc}"
            ) from None
        return first.rstrip(b"\r\n")
    value = os.environ.get(env_name)
    return value.encode() if value else None


def service_live(config: "Config", service: "ServiceConfig") -> "LiveProbe":
    from rollover.engine.build import service_live

    return service_live(config, service)
