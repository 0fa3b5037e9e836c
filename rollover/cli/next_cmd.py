"""``rollover next``: the "current + next" key scheme."""

from typing import TYPE_CHECKING, Annotated

import typer

from rollover.cli import common

if TYPE_CHECKING:
    from rollover.config import Config, ServiceConfig


def register(app: typer.Typer) -> None:
    app.command("next")(next_command)


def next_command(
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="Configured service.")],
    csr: Annotated[
        str | None, typer.Option("--csr", help="Write a CSR for the next key here (certbot --csr).")
    ] = None,
    place: Annotated[
        list[str] | None,
        typer.Option(
            "--place",
            help="Also copy the next key here, 0600 (acme.sh's "
            "<key>.next, dehydrated's privkey.roll.pem); repeatable.",
        ),
    ] = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Generate a fresh next key even if one exists.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    config: common.ConfigOption = None,
    state_dir: common.StateDirOption = None,
) -> None:
    """Keep a pre-generated next key whose association is published beside the current one.

    Generates the key when there is none (algorithm from services.NAME.next_key, file 0600),
    publishes its end-entity associations (3 1 1), and can write a CSR for it or place it where
    an ACME client picks it up. When a renewed certificate carries this key and its association
    has aged, the rollover deploys at once; afterwards a fresh next key is generated and
    published.

    \b
    Example:
      rollover next mx1 --csr /etc/rollover/mx1-next.csr
      certbot certonly --csr /etc/rollover/mx1-next.csr ...
    """
    cfg = common.load_config(config)
    ensure_next(
        cfg,
        cfg.service(service),
        state_dir,
        rotate=rotate,
        dry_run=dry_run,
        csr=csr,
        place=list(place or []),
    )


def ensure_next(
    cfg: "Config",
    service: "ServiceConfig",
    state_dir: str | None,
    *,
    rotate: bool = False,
    dry_run: bool = False,
    csr: str | None = None,
    place: list[str] | None = None,
) -> None:
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from rollover.core.material import parse_material
    from rollover.edges.files import read_source, write_atomic
    from rollover.engine.associations import service_associations
    from rollover.engine.build import SharedEdges
    from rollover.errors import ConfigError
    from rollover.workflows import nextkey
    from rollover.workflows.publishing import publish

    if service.next_key_algorithm is None:
        raise ConfigError(f"services.{service.name}.next_key is not configured")
    directory = common.state_dir(cfg, state_dir)
    path = nextkey.key_path(service, directory)
    if rotate or not Path(path).exists():
        if dry_run:
            _say(f"would generate a {service.next_key_algorithm} next key at {path}")
            return
        nextkey.write_key(path, nextkey.generate_key(service.next_key_algorithm))
        _say(f"{service.name}: generated a {service.next_key_algorithm} next key at {path}")
    data = read_source(path)
    key = serialization.load_pem_private_key(data, password=None)
    material = parse_material(path, data)
    edges = SharedEdges(cfg, directory)
    now = edges.clock().now()
    associations, _warnings = service_associations(
        nextkey.selector1_service(service), material, now
    )
    publish(
        service,
        common.make_provider(cfg, service.provider),
        edges.ownership(),
        associations,
        now=now,
        out=_say,
        dry_run=dry_run,
    )
    if csr is not None and not dry_run:
        write_atomic(csr, nextkey.csr_pem(key, service.host), mode=0o644, keep_mode=True)
        _say(f"{service.name}: CSR for the next key written to {csr}")
    for target in place or []:
        if not dry_run:
            write_atomic(target, nextkey.private_pem(key))
            _say(f"{service.name}: next key placed at {target}")


def rotate_after_done(
    cfg: "Config", service: "ServiceConfig", state_dir: str | None, staged_spki: str
) -> None:
    """After a rollover to the next key: a fresh next key, published at once."""
    from rollover.workflows import nextkey

    if service.next_key_algorithm is None:
        return
    path = nextkey.key_path(service, common.state_dir(cfg, state_dir))
    if nextkey.spki_sha256_of_key_file(path) == staged_spki:
        ensure_next(cfg, service, state_dir, rotate=True)


def _say(line: str) -> None:
    common.say(line)
