"""ACME client hooks: certbot, acme.sh, dehydrated, lego.

A hook finds the configured services a renewal concerns, copies the renewed chain and key into
rollover's own staging area (the ACME client's live files change again at the next renewal, and
the server must never read them directly), and then either starts a rollover and returns at once
(a hook never blocks the ACME client for a TTL wait: ``rollover advance --all`` from a timer
carries it on), or, when the key did not change (certbot ``--reuse-key``), deploys at once because
the published associations already match.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rollover.config import Config, ServiceConfig
from rollover.edges.files import write_atomic
from rollover.errors import InputError

if TYPE_CHECKING:
    from rollover.engine.machine import Engine


@dataclass(frozen=True)
class Renewal:
    """What an ACME client renewed: the domains and where the new chain and key are."""

    client: str
    domains: tuple[str, ...]
    fullchain: str
    key: str
    lineage: str | None = None


def certbot_renewal(env: Mapping[str, str]) -> Renewal:
    lineage = env.get("RENEWED_LINEAGE")
    if not lineage:
        raise InputError("RENEWED_LINEAGE is not set: run this as certbot's --deploy-hook")
    domains = tuple(env.get("RENEWED_DOMAINS", "").split())
    return Renewal(
        "certbot",
        domains,
        os.path.join(lineage, "fullchain.pem"),
        os.path.join(lineage, "privkey.pem"),
        lineage.rstrip("/"),
    )


def acmesh_renewal(env: Mapping[str, str]) -> Renewal:
    fullchain, key = env.get("CERT_FULLCHAIN_PATH"), env.get("CERT_KEY_PATH")
    if not fullchain or not key:
        raise InputError(
            "CERT_FULLCHAIN_PATH and CERT_KEY_PATH are not set: run this as "
            "acme.sh's --reloadcmd or --renew-hook"
        )
    return Renewal("acme.sh", tuple(d for d in [env.get("Le_Domain", "")] if d), fullchain, key)


def dehydrated_renewal(argv: Sequence[str]) -> Renewal | None:
    """``deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP``; other
    handlers (deploy_challenge, clean_challenge, startup_hook, exit_hook...) are not ours."""
    if not argv or argv[0] != "deploy_cert":
        return None
    if len(argv) < 5:
        raise InputError("dehydrated deploy_cert: expected DOMAIN KEYFILE CERTFILE FULLCHAINFILE")
    return Renewal("dehydrated", (argv[1],), argv[4], argv[2])


def lego_renewal(env: Mapping[str, str]) -> Renewal:
    cert, key = env.get("LEGO_CERT_PATH"), env.get("LEGO_CERT_KEY_PATH")
    if not cert or not key:
        raise InputError(
            "LEGO_CERT_PATH and LEGO_CERT_KEY_PATH are not set: run this as lego's "
            "--run-hook or --renew-hook"
        )
    return Renewal("lego", tuple(d for d in [env.get("LEGO_CERT_DOMAIN", "")] if d), cert, key)


def services_for(config: Config, renewal: Renewal) -> list[ServiceConfig]:
    """Explicit ``acme:`` mappings first (lineage or domain); else every service whose host is
    one of the renewed domains."""
    explicit = [s for s in config.services.values() if s.acme_lineage or s.acme_domain]
    chosen = [
        s
        for s in explicit
        if (s.acme_lineage and renewal.lineage and s.acme_lineage.rstrip("/") == renewal.lineage)
        or (s.acme_domain and s.acme_domain.lower() in {d.lower() for d in renewal.domains})
    ]
    if chosen:
        return chosen
    domains = {d.lower().rstrip(".") for d in renewal.domains}
    return [
        s
        for s in config.services.values()
        if s.host.lower().rstrip(".") in domains and s not in explicit
    ]


def stage(state_dir: str, service: str, renewal: Renewal, now: datetime) -> tuple[str, str]:
    """Copy the renewed chain and key into ``state_dir/staged/<service>/<time>/`` (key 0600)."""
    directory = Path(state_dir) / "staged" / service / now.strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    chain_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    try:
        chain = Path(renewal.fullchain).read_bytes()
        key = Path(renewal.key).read_bytes()
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot read the renewed files: {exc.strerror}") from None
    write_atomic(key_path, key)
    write_atomic(chain_path, chain)
    return str(chain_path), str(key_path)


ACME_LIVE_MARKERS = (
    "/etc/letsencrypt/live/",
    "/etc/letsencrypt/archive/",
    "/.acme.sh/",
    "/etc/dehydrated/certs/",
    "/.lego/certificates/",
    "/etc/lego/certificates/",
)


def acme_live_warnings(config: Config) -> list[str]:
    """The server must read files rollover deploys, never the ACME client's own: those change
    at renewal, before the new key's association is published and aged."""
    warnings = []
    for service in config.services.values():
        if service.deploy is None:
            continue
        for label, path in (("chain", service.deploy.chain), ("key", service.deploy.key)):
            resolved = os.path.realpath(path)
            if any(marker in path or marker in resolved for marker in ACME_LIVE_MARKERS):
                warnings.append(
                    f"services.{service.name}.deploy.{label}: {path} is the ACME client's own "
                    "file; the server would present a renewed key before its TLSA association "
                    "is published and aged. Deploy to a path of your own (e.g. "
                    "/etc/postfix/tls/) and let rollover copy into it"
                )
    return warnings


def take_renewal(
    engine: Engine,
    service: ServiceConfig,
    renewal: Renewal,
    *,
    state_dir: str,
    now: datetime,
    out: Callable[[str], None],
    publish: bool = True,
) -> str:
    """Stage the renewal for one service, then start its rollover or deploy at once.

    Returns ``"deployed"`` (the key did not change and its associations are published: nothing
    to roll) or ``"started"``. With ``publish`` False the started rollover is left for the
    caller's batched tick to publish (one provider change per zone for a renewal of many
    names).
    """
    from rollover.core.material import parse_material
    from rollover.core.phases import FINAL
    from rollover.edges.deploy import FileDeployer
    from rollover.edges.files import read_source
    from rollover.engine.associations import service_associations
    from rollover.engine.staging import load_staged
    from rollover.errors import ConfigError, ConflictError

    active = engine.store.current(service.name)
    if active is not None and active.phase not in FINAL:
        raise ConflictError(
            f"services.{service.name}: a rollover is already in progress "
            f"({active.phase}); this renewal was not staged"
        )
    if service.deploy is None:
        raise ConfigError(f"services.{service.name}.deploy is not configured")
    chain, key = stage(state_dir, service.name, renewal, now)
    staged = load_staged(chain, key, None)
    deployer = FileDeployer(service.deploy)
    deployed_spki = None
    if deployer.deployed()[1] is not None:
        deployed_spki = parse_material(service.deploy.key, read_source(service.deploy.key)).key_spki
    if (
        deployed_spki is not None
        and hashlib.sha256(deployed_spki).hexdigest() == staged.spki_sha256
    ):
        new, _warnings = service_associations(service, staged.material, now)
        if new <= engine.provider.read(service.owner).records:
            deployer.install(staged.chain, staged.key)
            deployer.reload()
            out(
                f"{service.name}: key unchanged and its associations are published: deployed "
                "the renewed chain without a rollover"
            )
            return "deployed"
    engine.start(staged)
    if publish:
        engine.advance()
    out(
        f"{service.name}: rollover started for the renewed key; `rollover advance --all` "
        "carries it on"
    )
    return "started"
