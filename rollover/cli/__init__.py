"""The ``rollover`` command line: a thin layer that parses, calls the core and renders.

Each command lives in its own module and imports what it needs inside the function, so that
``rollover record`` starts without loading dnspython or boto3.
"""

import importlib
import sys

import typer

from rollover import __version__
from rollover.errors import RolloverError

# Which module registers which command. Only the module of the command being run is imported and
# registered: typer inspects every registered command's signature at start-up, and with all of
# them `rollover record` started ~20 ms slower (benchmarks/bench_record.py).
COMMAND_MODULES = {
    "record": "record",
    "dns": "dns_cmd",
    "publish": "publish_cmd",
    "withdraw": "publish_cmd",
    "verify": "verify_cmd",
    "start": "rollover_cmd",
    "advance": "rollover_cmd",
    "run": "rollover_cmd",
    "status": "rollover_cmd",
    "abort": "rollover_cmd",
    "rollback": "rollover_cmd",
    "resume": "rollover_cmd",
    "history": "rollover_cmd",
    "config": "config_cmd",
    "hook": "hook_cmd",
    "metrics": "metrics_cmd",
    "next": "next_cmd",
    "state": "state_cmd",
    "agent": "agent_cmd",
    "tlsrpt": "tlsrpt_cmd",
}
_ROOT_OPTIONS_WITH_VALUE = ("--log-format",)

app = typer.Typer(
    name="rollover",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rollover {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_format: str = typer.Option(
        "text", "--log-format", help="text (human lines) or json (one object per line)."
    ),
) -> None:
    """Derive DANE TLSA records and roll them over without breaking mail delivery.

    Exit codes: 0 success; 1 warnings under --strict; 2 command-line usage error; 3 bad input
    (file, argument); 4 configuration error; 5 DNS provider error; 6 compare-and-swap conflict;
    7 DNS observation failed; 8 a safety guard refused; 9 held by a fault; 10 a rollover needs
    a person; 11 state store error; 12 deploy failed; 13 a file could not be written; 14 a
    configured command failed.
    """
    from rollover.cli import common
    from rollover.errors import InputError

    if log_format not in ("text", "json"):
        raise InputError(f"--log-format {log_format!r}: use text or json")
    common.LOG_FORMAT["value"] = log_format


def _command_name(argv: list[str]) -> str | None:
    """The subcommand in ``argv`` (skipping root options and their values), if any."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in _ROOT_OPTIONS_WITH_VALUE:
            skip = True
            continue
        if token.startswith("-"):
            continue
        return token
    return None


def register_commands(names: list[str] | None = None) -> None:
    """Register the modules of ``names`` (every command when None or unknown)."""
    wanted = [COMMAND_MODULES[n] for n in names or [] if n in COMMAND_MODULES]
    modules = dict.fromkeys(wanted or COMMAND_MODULES.values())
    for module in modules:
        if module not in _registered:
            importlib.import_module(f"rollover.cli.{module}").register(app)
            _registered.add(module)


_registered: set[str] = set()


def main() -> None:
    """Console entry point: one line on stderr and a documented exit code for every failure."""
    name = _command_name(sys.argv[1:])
    register_commands([name] if name else None)
    try:
        app(prog_name="rollover")
    except RolloverError as exc:
        from rollover.cli import common

        if common.LOG_FORMAT["value"] == "json":
            print(common._json_line("error", str(exc)), file=sys.stderr)
        else:
            print(f"rollover: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except KeyboardInterrupt:
        print("rollover: interrupted", file=sys.stderr)
        sys.exit(130)
