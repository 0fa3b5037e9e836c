"""The ``rollover`` command line: a thin layer that parses, calls the core and renders.

Each command lives in its own module and imports what it needs inside the function, so that
``rollover record`` starts without loading dnspython or boto3.
"""

import sys

import typer

from rollover import __version__
from rollover.cli import config_cmd as _config_cmd
from rollover.cli import dns_cmd as _dns_cmd
from rollover.cli import hook_cmd as _hook_cmd
from rollover.cli import metrics_cmd as _metrics_cmd
from rollover.cli import next_cmd as _next_cmd
from rollover.cli import publish_cmd as _publish_cmd
from rollover.cli import record as _record
from rollover.cli import rollover_cmd as _rollover_cmd
from rollover.cli import verify_cmd as _verify_cmd
from rollover.errors import RolloverError

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
    7 DNS observation failed; 8 a safety guard refused; 10 a rollover needs a person.
    """
    from rollover.cli import common
    from rollover.errors import InputError

    if log_format not in ("text", "json"):
        raise InputError(f"--log-format {log_format!r}: use text or json")
    common.LOG_FORMAT["value"] = log_format


_record.register(app)
_dns_cmd.register(app)
_publish_cmd.register(app)
_verify_cmd.register(app)
_rollover_cmd.register(app)
_config_cmd.register(app)
_hook_cmd.register(app)
_metrics_cmd.register(app)
_next_cmd.register(app)


def main() -> None:
    """Console entry point: one line on stderr and a documented exit code for every failure."""
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
