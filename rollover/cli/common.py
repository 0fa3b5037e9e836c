"""Options and helpers shared by the commands that use the configuration."""

import os
from typing import Annotated, Any

import typer

from rollover.errors import InputError

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
DEFAULT_PASSPHRASE_ENV = "ROLLOVER_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


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


def load_config(path_option: str | None) -> Any:
    """The validated configuration; its warnings go to stderr."""
    import providers
    from rollover.config import config_path, load_config

    config = load_config(config_path(path_option), providers.settings_parser)
    for line in config.warnings:
        warn(line)
    return config


def make_provider(config: Any, name: str) -> Any:
    import providers

    entry = config.providers[name]
    return providers.create_provider(entry.name, entry.type, entry.settings)


def state_dir(config: Any, option: str | None) -> str:
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


def service_live(config: Any, service: Any) -> Any:
    """A probe of every chain the service presents, with its probe settings (the withdraw guard
    and the rollover's cut-over both use it)."""

    def live() -> Any:
        from rollover.verifier import live_chains

        return live_chains(
            service.host,
            service.port,
            connect=service.probe.connect,
            starttls=service.probe.starttls,
            resolvers=list(service.resolvers or config.resolvers),
            timeout=service.probe.timeout,
        )

    return live
