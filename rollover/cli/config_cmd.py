"""``rollover config check``: validate the configuration file."""

import typer

from rollover.cli import common

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@config_app.command("check")
def check(config: common.ConfigOption = None) -> None:
    """Validate the configuration: every error names its key path (services.mx1.port) and what
    is wrong; unknown keys are errors; warnings (e.g. a TSIG secret readable by others) go to
    stderr. Secrets are never printed.

    Exit: 0 valid (warnings allowed); 4 invalid.
    """
    from rollover.workflows.renewals import acme_live_warnings

    cfg = common.load_config(config)
    for line in acme_live_warnings(cfg):
        common.warn(line)
    from rollover.edges.files import unsafe_path_reason
    from rollover.errors import ConfigError

    for service in cfg.services.values():
        if service.deploy is None:
            continue
        for label, path in (("chain", service.deploy.chain), ("key", service.deploy.key)):
            reason = unsafe_path_reason(path)
            if reason is not None:
                raise ConfigError(
                    f"{cfg.source}: services.{service.name}.deploy.{label}: "
                    f"{path}: unsafe: {reason}"
                )
    typer.echo(
        f"{cfg.source}: OK: {len(cfg.providers)} provider(s) "
        f"({', '.join(sorted(cfg.providers)) or 'none'}), {len(cfg.services)} service(s) "
        f"({', '.join(sorted(cfg.services)) or 'none'})"
    )
    for service in cfg.services.values():
        params = ", ".join(str(p) for p in service.records)
        typer.echo(
            f"  {service.name}: {service.owner} via {service.provider}, records {params}, "
            f"ttl {service.ttl}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
