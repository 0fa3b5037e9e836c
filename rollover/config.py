"""The YAML configuration: loading, strict validation with key paths, and the typed result.

Where it is found: ``--config FILE``, else ``$ROLLOVER_CONFIG``, else
``/etc/rollover/rollover.yaml``. Every error names the key path (``services.mx1.port``) and what
is wrong; unknown keys are errors; secrets are never read into messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from rollover.core.association import normalize_host, owner_name
from rollover.core.params import TlsaParams, parse_params
from rollover.errors import ConfigError, InputError

if TYPE_CHECKING:
    from rollover.tlsrpt.imap import ImapSettings

DEFAULT_CONFIG = "/etc/rollover/rollover.yaml"
DEFAULT_STATE_DIR = "/var/lib/rollover"
T = TypeVar("T")


def config_path(explicit: str | None) -> str:
    return explicit or os.environ.get("ROLLOVER_CONFIG") or DEFAULT_CONFIG


class Section:
    """A mapping being validated: typed getters that name the key path, and unknown-key checks."""

    def __init__(self, raw: object, path: str, source: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: {path or 'top level'}: expected a mapping")
        self.raw: Mapping[Any, Any] = raw
        self.path = path
        self.source = source
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)}: {what}")

    def has(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, kind: type | tuple[type, ...], *, required: bool = False) -> object:
        """The value at ``name`` checked against ``kind`` (a bool is never a number), or None
        when it is absent and not required."""
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                raise self.fail(name, "is required")
            return None
        value: object = self.raw[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(name, f"expected {_kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(name, f"expected {_kind_names(kinds)}, got {value!r}")
        return value

    @overload
    def text(self, name: str, default: str) -> str: ...
    @overload
    def text(self, name: str, default: None = None, *, required: Literal[True]) -> str: ...
    @overload
    def text(self, name: str, default: None = None, *, required: bool = False) -> str | None: ...
    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(name, str, required=required)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, bool)
        return default if value is None else bool(value)

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.get(name, int)
        if value is None:
            return default
        if not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(name, f"{value} is out of range {low}..{high}")
        return value

    def number(self, name: str, default: float, *, low: float | None = None) -> float:
        value = self.get(name, (int, float))
        if value is None:
            return default
        if not isinstance(value, (int, float)):
            raise self.fail(name, f"expected a number, got {value!r}")
        if low is not None and value < low:
            raise self.fail(name, f"{value} is below {low}")
        return float(value)

    def strings(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.get(name, list)
        if not isinstance(value, list):
            return list(default or [])
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{self.source}: {self.key(name)}[{i}]: expected a string")
        return list(value)

    def command(self, name: str, shell_key: str = "shell") -> list[str] | str | None:
        """A command, run as an argument list without a shell: a list as given, or a string split
        with shell-like quoting. Only when ``shell_key`` is true is a string handed to /bin/sh
        (returned as a string); a string that needs a shell without it is refused."""
        value = self.get(name, (list, str))
        shell = self.flag(shell_key, False)
        if value is None:
            return None
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise self.fail(name, "expected a non-empty list of strings or a string")
            if shell:
                raise self.fail(
                    shell_key, f"runs a string through /bin/sh: give {name} as a string"
                )
            return list(value)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must not be empty")
        if shell:
            return value
        return self._arguments(name, shell_key, value)

    def _arguments(self, name: str, shell_key: str, text: str) -> list[str]:
        import shlex

        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            raise self.fail(name, f"cannot be split into arguments ({exc})") from None
        operators = [t for t in tokens if t and all(c in "();<>|&" for c in t)]
        if operators:
            raise self.fail(
                name,
                f"uses the shell ({operators[0]!r}) but runs without one: give an argument "
                f"list, or set {self.key(shell_key)}: true",
            )
        return shlex.split(text)

    def section(self, name: str) -> Section | None:
        """The mapping at ``name``, or None when it is absent."""
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            return None
        return Section(self.raw[name], self.key(name), self.source)

    def required_section(self, name: str) -> Section:
        """The mapping at ``name``; a ConfigError naming the key when it is absent."""
        section = self.section(name)
        if section is None:
            raise self.fail(name, "is required")
        return section

    def finish(self) -> None:
        unknown = [str(k) for k in self.raw if str(k) not in self.seen]
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        bool: "true or false",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# Services one tick (``advance --all``, ``start --all``) advances at once, each thread with at
# most one connection open at a time: 16 stays far inside what a mail server grants one client
# (Postfix's smtpd_client_connection_count_limit is 50) and what BIND serves (tcp-clients 150).
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
# ``advance --all`` begins no further service once a tick has run this long: the ones left are
# the first of the next tick (the shipped timer fires every minute), and a fleet whose heavy
# step (deploy and cut-over of every service at once) outweighs one tick spreads it over a few.
DEFAULT_TICK_SECONDS = 10.0


@dataclass(frozen=True)
class ProviderConfig:
    """A provider entry; ``settings`` is the adapter's own validated configuration."""

    name: str
    type: str
    settings: Any


@dataclass(frozen=True)
class DeployConfig:
    chain: str
    key: str
    reload: list[str] | str | None = None
    reload_timeout: float = 60.0


@dataclass(frozen=True)
class ProbeConfig:
    connect: tuple[str, ...] = ()
    starttls: str | None = None
    timeout: float = 10.0


POOL_SHAPES = ("shared-key", "key-per-member")


@dataclass(frozen=True)
class MemberConfig:
    """One server of a pool behind the service's name: the addresses it serves, and where
    its agent (``rollover agent --member NAME``, on that host) installs the key."""

    name: str
    connect: tuple[str, ...]
    deploy: DeployConfig | None = None  # else the service's deploy


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    host: str
    port: int
    proto: str
    provider: str
    records: tuple[TlsaParams, ...]
    ttl: int
    authoritative: tuple[str, ...] = ()
    resolvers: tuple[str, ...] = ()
    deploy: DeployConfig | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    observe_via: str = "dns"
    acme_lineage: str | None = None  # certbot lineage directory this service takes renewals of
    acme_domain: str | None = None  # or the ACME domain name, when it is not ``host``
    next_key_algorithm: str | None = None  # the "current + next" scheme, when set
    next_key_path: str | None = None
    trust_anchors: tuple[str, ...] = ()  # pinned issuer certificates for usage 2 records
    tlsa_owner: str | None = None  # the RRset managed when the owner name is a CNAME to it
    staged: tuple[str, str] | None = None  # (chain, key) where the next key is dropped
    pool: str | None = None  # "shared-key": every member presents the one staged key
    members: tuple[MemberConfig, ...] = ()
    # How long a cut-over may wait for every address to present the new key before the
    # rollover fails with both RRsets kept (a pool's agents run on their own timers).
    cutover_timeout: float = 300.0

    def member_at(self, address: str) -> MemberConfig | None:
        """The member serving ``address`` (``ADDR:PORT`` as probed)."""
        for member in self.members:
            if address in member.connect:
                return member
        return None

    @property
    def owner(self) -> str:
        """The TLSA RRset this service manages: ``_port._proto.host``, or ``tlsa_owner`` where
        that name is a CNAME to an RRset shared by several hosts (RFC 7672 section 2.2.2)."""
        if self.tlsa_owner is not None:
            return normalize_host(self.tlsa_owner)
        return owner_name(self.host, self.port, self.proto)


STATE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StateConfig:
    """Where rollovers, history, ownership and leases live: ``sqlite`` (the embedded default,
    ``state.db`` in the state directory) or ``postgresql``, shared by several hosts. Its DSN,
    password included, is read from ``dsn_file`` (never from the configuration or argv); with
    no ``dsn_file``, libpq's own environment (``PGHOST``, ``PGSERVICE``, ...) and its
    ``~/.pg_service.conf`` and ``~/.pgpass`` files say where and who."""

    backend: str = "sqlite"
    dsn_file: str | None = None
    connect_timeout: float = 10.0
    # How long a coordinator's lease on a rollover runs (None: the engine's default, 180 s,
    # longer than its longest call). A lease of a crashed holder on another host is taken
    # over only once it has run out: a shorter one hands a rollover on sooner.
    lease_seconds: float | None = None


@dataclass(frozen=True)
class Config:
    source: str
    providers: dict[str, ProviderConfig]
    services: dict[str, ServiceConfig]
    resolvers: tuple[str, ...] = ()
    state_dir: str = DEFAULT_STATE_DIR
    safety_factor: float = 2.0
    warnings: tuple[str, ...] = ()
    on_event: list[str] | str | None = None  # run on failure and completion
    concurrency: int = DEFAULT_CONCURRENCY  # services a tick advances at once
    tick_seconds: float = DEFAULT_TICK_SECONDS  # a tick begins no service after this; 0: no limit
    state: StateConfig = field(default_factory=StateConfig)
    imap: ImapSettings | None = None  # where `rollover tlsrpt ingest --imap` reads reports

    def service(self, name: str) -> ServiceConfig:
        if name not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise ConfigError(f"{self.source}: services.{name}: no such service (known: {known})")
        return self.services[name]


ProviderParser = Callable[[Section, list[str]], Any]


MAX_CONFIG_BYTES = 4 * 1024 * 1024


# ``cache(text, parse)``: the document of ``text``, kept from an earlier ``parse()`` or parsed
# now (rollover.edges.configcache.cached_document).
DocumentCache = Callable[[str, Callable[[], object]], object]


def load_config(
    path: str,
    provider_parsers: Callable[[str], ProviderParser | None],
    *,
    cache: DocumentCache | None = None,
    provider_settings: bool = True,
) -> Config:
    """Read and validate ``path``. ``provider_parsers(type)`` gives an adapter's validator;
    ``cache(text)``, where given, keeps the parsed document of the text."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such configuration file (give --config or set ROLLOVER_CONFIG)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; refusing to read it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return config_from_text(
        text, path, provider_parsers, cache=cache, provider_settings=provider_settings
    )


def config_from_text(
    text: str,
    path: str,
    provider_parsers: Callable[[str], ProviderParser | None],
    *,
    cache: DocumentCache | None = None,
    provider_settings: bool = True,
) -> Config:
    """Parse YAML text (safe loader: no tags, aliases shared, not copied) and validate it.
    libyaml's safe loader where PyYAML has it (about 6 times faster on a large fleet's
    configuration), the pure-Python one otherwise: the same documents either way."""

    def parse() -> object:
        return yaml_document(text, path)

    raw = cache(text, parse) if cache is not None else parse()
    return parse_config(
        raw if raw is not None else {},
        path,
        provider_parsers,
        provider_settings=provider_settings,
    )


def yaml_document(text: str, path: str) -> object:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader, C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None


def parse_config(
    raw: object,
    source: str,
    provider_parsers: Callable[[str], ProviderParser | None],
    *,
    provider_settings: bool = True,
) -> Config:
    top = Section(raw, "", source)
    warnings: list[str] = []
    providers: dict[str, ProviderConfig] = {}
    provider_section = top.section("providers")
    if provider_section is not None:
        for name in provider_section.raw:
            entry = provider_section.required_section(str(name))
            kind = entry.text("type", required=True)
            parser = provider_parsers(kind)
            if parser is None:
                raise entry.fail(
                    "type",
                    f"unknown provider type {kind!r} (built in: rfc2136, zonefile, "
                    "route53, powerdns, cloudflare, desec; others register the "
                    "'rollover.providers' "
                    "entry point)",
                )
            if provider_settings:
                settings = parser(entry, warnings)
            else:  # an agent's host holds no DNS credentials: the providers are not its own
                settings = None
                entry.seen.update(str(key) for key in entry.raw)
            entry.finish()
            providers[str(name)] = ProviderConfig(str(name), kind, settings)
    resolvers = tuple(top.strings("resolvers"))
    _check_servers(top, "resolvers", resolvers)
    state_dir = top.text("state_dir", DEFAULT_STATE_DIR)
    safety_factor = top.number("safety_factor", 2.0, low=1.0)
    on_event = top.command("on_event", shell_key="on_event_shell")
    concurrency = top.integer("concurrency", DEFAULT_CONCURRENCY, low=1, high=MAX_CONCURRENCY)
    tick_seconds = top.number("tick_seconds", DEFAULT_TICK_SECONDS, low=0.0)
    state = _state(top, warnings)
    imap = _imap(top, warnings)
    services: dict[str, ServiceConfig] = {}
    service_section = top.section("services")
    if service_section is not None:
        for name in service_section.raw:
            entry = service_section.required_section(str(name))
            service = _service(str(name), entry, providers)
            for one in _per_member(service):
                if one.name in services:
                    raise service_section.fail(
                        one.name,
                        "named twice (a key-per-member pool's members are SERVICE@MEMBER)",
                    )
                services[one.name] = one
    top.finish()
    config = Config(
        source,
        providers,
        services,
        resolvers,
        state_dir,
        safety_factor,
        tuple(warnings),
        on_event,
        concurrency,
        tick_seconds,
        state,
        imap,
    )
    _check_lease(config)
    return config


def _imap(top: Section, warnings: list[str]) -> ImapSettings | None:
    """``imap:``: the mailbox TLS-RPT reports arrive in (``rollover tlsrpt ingest --imap``)."""
    section = top.section("imap")
    if section is None:
        return None
    from rollover.tlsrpt.settings import parse_imap  # it imports this module: not at the top

    return parse_imap(section, warnings)


def _state(top: Section, warnings: list[str]) -> StateConfig:
    section = top.section("state")
    if section is None:
        return StateConfig()
    backend = section.text("backend", "sqlite")
    if backend not in STATE_BACKENDS:
        raise section.fail("backend", f"{backend!r}: use one of {', '.join(STATE_BACKENDS)}")
    dsn_file = section.text("dsn_file")
    if dsn_file is not None:
        if backend != "postgresql":
            raise section.fail("dsn_file", "only for backend: postgresql")
        check_secret_file(dsn_file, section.key("dsn_file"), section.source, warnings)
    connect_timeout = min(section.number("connect_timeout", 10.0, low=0.5), 300.0)
    lease = section.get("lease_seconds", (int, float))
    lease_seconds = None if lease is None else section.number("lease_seconds", 0.0, low=20.0)
    section.finish()
    return StateConfig(backend, dsn_file, connect_timeout, lease_seconds)


def _check_lease(config: Config) -> None:
    """A lease must outlast the longest call made under it (it is renewed before each): a
    reload or a probe of every service, and the provider wait (the engine keeps that to half
    the lease)."""
    lease = config.state.lease_seconds
    if lease is None:
        return
    for service in config.services.values():
        longest = [("probe.timeout", service.probe.timeout)]
        if service.deploy is not None:
            longest.append(("deploy.reload_timeout", service.deploy.reload_timeout))
        for key, seconds in longest:
            if 2 * seconds > lease:
                raise ConfigError(
                    f"{config.source}: services.{service.name}.{key}: {seconds:g} s is more "
                    f"than half of state.lease_seconds ({lease:g} s): a lease must outlast "
                    "every call made under it"
                )


def _check_servers(section: Section, name: str, servers: tuple[str, ...]) -> None:
    from rollover.core.addresses import parse_server

    for i, server in enumerate(servers):
        try:
            parse_server(server)
        except InputError as exc:
            raise ConfigError(f"{section.source}: {section.key(name)}[{i}]: {exc}") from None


def _service(name: str, entry: Section, providers: dict[str, ProviderConfig]) -> ServiceConfig:
    host = entry.text("host", required=True)
    try:
        normalize_host(host)
    except InputError as exc:
        raise entry.fail("host", str(exc)) from None
    port = entry.integer("port", 25, low=1, high=65535)
    proto = entry.text("proto", "tcp")
    provider = entry.text("provider", required=True)
    if provider not in providers:
        known = ", ".join(sorted(providers)) or "none"
        raise entry.fail("provider", f"no provider named {provider!r} (known: {known})")
    params: list[TlsaParams] = []
    for i, text in enumerate(entry.strings("records", ["3 1 1"])):
        try:
            params.append(parse_params(text))
        except InputError as exc:
            raise ConfigError(f"{entry.source}: {entry.key('records')}[{i}]: {exc}") from None
    if not params:
        raise entry.fail("records", "must list at least one parameter set")
    ttl = entry.integer("ttl", 300, low=0, high=2147483647)
    authoritative = tuple(entry.strings("authoritative"))
    _check_servers(entry, "authoritative", authoritative)
    resolvers = tuple(entry.strings("resolvers"))
    _check_servers(entry, "resolvers", resolvers)
    deploy = _deploy(entry)
    probe = ProbeConfig()
    probe_section = entry.section("probe")
    if probe_section is not None:
        connect = tuple(probe_section.strings("connect"))
        starttls = probe_section.text("starttls")
        if starttls is not None and starttls not in ("smtp", "imap", "pop3", "xmpp", "none"):
            raise probe_section.fail("starttls", "use smtp, imap, pop3, xmpp or none")
        probe = ProbeConfig(connect, starttls, probe_section.number("timeout", 10.0, low=0.1))
        probe_section.finish()
    acme_lineage, acme_domain = _pair(entry, "acme", ("lineage", "domain"), None)
    next_algorithm, next_path = _pair(entry, "next_key", ("algorithm", "path"), "ec-p256")
    if next_algorithm not in (
        None,
        "ec-p256",
        "ec-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "ed25519",
    ):
        raise entry.fail(
            "next_key.algorithm", "use ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519"
        )
    trust_anchors = tuple(entry.strings("trust_anchors"))
    observe_via = entry.text("observe_via", "dns")
    if observe_via not in ("dns", "provider"):
        raise entry.fail("observe_via", "use dns or provider")
    tlsa_owner = _name(entry, "tlsa_owner")
    staged = _staged(entry)
    pool, members = _pool(entry, deploy)
    if members:
        if probe.connect:
            raise entry.fail("probe.connect", "a pool's addresses are its members' connect lists")
        # Every address of every member is probed: the cut-over waits for all of them.
        probe = replace(probe, connect=tuple(a for m in members for a in m.connect))
    cutover_timeout = _cutover_timeout(entry)
    entry.finish()
    return ServiceConfig(
        name,
        host,
        port,
        proto,
        provider,
        tuple(dict.fromkeys(params)),
        ttl,
        authoritative,
        resolvers,
        deploy,
        probe,
        observe_via,
        acme_lineage,
        acme_domain,
        next_algorithm,
        next_path,
        trust_anchors,
        tlsa_owner,
        staged,
        pool,
        members,
        cutover_timeout,
    )


def _cutover_timeout(entry: Section) -> float:
    seconds = entry.number("cutover_timeout", 300.0, low=30.0)
    if seconds > 7 * 86400:
        raise entry.fail("cutover_timeout", f"{seconds:g} s is more than 7 days")
    return seconds


def _deploy(entry: Section) -> DeployConfig | None:
    deploy = None
    deploy_section = entry.section("deploy")
    if deploy_section is not None:
        deploy = DeployConfig(
            chain=deploy_section.text("chain", required=True),
            key=deploy_section.text("key", required=True),
            reload=deploy_section.command("reload"),
            reload_timeout=deploy_section.number("reload_timeout", 60.0, low=0.1),
        )
        deploy_section.finish()
    return deploy


def _per_member(service: ServiceConfig) -> list[ServiceConfig]:
    """A ``key-per-member`` pool is one service per member, ``SERVICE@MEMBER``: each member's
    key has its own association in the one RRset at the pool's owner name, and each member's
    renewal is a rollover of its own association, at its own addresses, deployed by its
    agent. The others' associations are theirs (the RRset is shared, as with ``tlsa_owner``),
    and kept matching what they present all through."""
    if service.pool != "key-per-member":
        return [service]
    return [
        replace(
            service,
            name=f"{service.name}@{member.name}",
            members=(member,),
            probe=replace(service.probe, connect=member.connect),
        )
        for member in service.members
    ]


def _pool(
    entry: Section, deploy: DeployConfig | None
) -> tuple[str | None, tuple[MemberConfig, ...]]:
    """``pool`` and ``members``: several servers behind one name, each deployed by its agent."""
    import re

    raw = entry.get("members", list)
    pool = entry.text("pool")
    if raw is None:
        if pool is not None:
            raise entry.fail("pool", "needs members")
        return None, ()
    pool = pool or "shared-key"
    if pool not in POOL_SHAPES:
        raise entry.fail("pool", f"{pool!r}: use one of {', '.join(POOL_SHAPES)}")
    if not isinstance(raw, list) or not raw:
        raise entry.fail("members", "list at least one member")
    members: list[MemberConfig] = []
    for i, item in enumerate(raw):
        member = Section(item, entry.key(f"members[{i}]"), entry.source)
        name = member.text("name", required=True)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            raise member.fail("name", f"{name!r}: letters, digits, '.', '_', '-'")
        if any(m.name == name for m in members):
            raise member.fail("name", f"{name!r} is listed twice")
        connect = tuple(member.strings("connect"))
        if not connect:
            raise member.fail("connect", "list the addresses this member serves")
        _check_servers(member, "connect", connect)
        for address in connect:
            if any(address in m.connect for m in members):
                raise member.fail("connect", f"{address} is another member's too")
        member_deploy = _deploy(member)
        if member_deploy is None and deploy is None:
            raise member.fail("deploy", "give the member a deploy (or the service one)")
        member.finish()
        members.append(MemberConfig(name, connect, member_deploy))
    return pool, tuple(members)


def _staged(entry: Section) -> tuple[str, str] | None:
    """``staged: {chain, key}``: where the next chain and key are dropped (``start --all``)."""
    chain, key = _pair(entry, "staged", ("chain", "key"), None)
    if chain is None and key is None:
        return None
    if chain is None or key is None:
        raise entry.fail("staged", "give both chain and key")
    return chain, key


def _name(entry: Section, key: str) -> str | None:
    """An optional DNS name (underscore labels allowed, as in ``_dane.example.com``)."""
    value = entry.text(key)
    if value is not None:
        try:
            normalize_host(value)
        except InputError as exc:
            raise entry.fail(key, str(exc)) from None
    return None if value is None else str(value)


def _pair(
    entry: Section, name: str, keys: tuple[str, str], first_default: str | None
) -> tuple[str | None, str | None]:
    """An optional sub-mapping of two optional strings (``acme``, ``next_key``)."""
    section = entry.section(name)
    if section is None:
        return None, None
    first = section.text(keys[0], first_default)
    second = section.text(keys[1])
    section.finish()
    return first, second


def check_secret_file(path: str, key: str, source: str, warnings: list[str]) -> None:
    """A secret must be readable; warn when group or others may read it too."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{source}: {key}: {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: {key}: {path}: {exc.strerror or exc}") from None
    if not Path(path).is_file():
        raise ConfigError(f"{source}: {key}: {path}: not a regular file")
    if st.st_mode & 0o077:
        warnings.append(
            f"{key}: {path} is readable by group or others "
            f"(mode {st.st_mode & 0o777:o}); chmod 600 it"
        )
