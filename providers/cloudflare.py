"""Cloudflare adapter: the official ``cloudflare`` SDK (v4+), imported only when this adapter is
used, against the API v4 (``api_url`` for tests and compatible services).

- The API token comes from ``api_token_file`` (else ``$CLOUDFLARE_API_TOKEN``); it is read
  when the first request is made, held only by the SDK client, and never printed, logged or
  put in an error. Only ``Authorization: Bearer`` is sent: a Global API key or e-mail the SDK
  would pick up from the environment (``CLOUDFLARE_API_KEY``, ``CLOUDFLARE_EMAIL``) is dropped.
  The minimal token: Zone → Zone → Read and Zone → DNS → Edit, for the zone only
  (https://developers.cloudflare.com/fundamentals/api/reference/permissions/; the endpoints
  accept "Zone Read" for the zone list, "DNS Read"/"DNS Write" for records and DNSSEC, "DNS
  Write" for the batch).
- The zone is found by name (``zone``, else the longest suffix of the owner name that the
  token can see), through ``GET /zones?name=``.
- TLSA records are individual records with structured ``data`` (usage, selector,
  matching_type, certificate); the certificate comes back upper-case, so records are compared
  as parsed rdata, never as strings.
- An RRset change is one ``POST /zones/{id}/dns_records/batch``: deletes (by record id) for the
  removed associations, patches (TTL only) for the kept ones whose TTL changes, posts for the
  added, which Cloudflare executes in one database transaction: all or nothing
  (https://developers.cloudflare.com/dns/manage-dns-records/how-to/batch-record-changes/).
  Propagation to the edge is not atomic (same page): ``wait`` allows ``propagation_seconds``.
- Compare-and-swap, emulated (the API has no conditional write): read the RRset, refuse
  (ConflictError, nothing written) unless it is exactly ``change.before``, send the batch, read
  it back, and raise ConflictError when the read-back is not exactly ``change.after``; nothing
  is restored then, so the other writer's edit is kept. The race window is the time between
  the read and the batch's commit (one round trip plus the batch itself). Within it, a
  concurrent delete of a record this batch deletes or patches, or a concurrent add of a record
  it posts, makes Cloudflare refuse the whole batch (81044 "Record does not exist", 81058 "An
  identical record already exists"): nothing written. Any other concurrent edit (another
  record added, a kept record deleted) lands beside this one and is caught by the read-back:
  then this change was written, the other kept, and the next tick starts from what is there.
  An edit after the read-back is not this change's concern.
- TTL: 60..86400 s (``minimum_ttl`` 30 for an Enterprise zone; lower only for a compatible
  service). A TTL of 1 means "automatic" to Cloudflare (300 s for records that are not
  proxied): rollover computes its waits from the TTL, so it never sends 1, and reads a
  foreign record's 1 as 300 (https://developers.cloudflare.com/dns/manage-dns-records/reference/ttl/).
- Rate limits: 1,200 requests per five minutes per user, then 429 with ``retry-after``
  (https://developers.cloudflare.com/fundamentals/api/reference/limits/). The SDK's own retries
  are off; here a 429 is waited out (``retry-after``, at most ``rate_limit_wait`` s at a
  time) and server errors and dropped connections of reads are retried with backoff,
  ``max_attempts`` requests per call in all, then a one-line error. A batch whose outcome is
  unknown (connection lost, timeout, server error) is read back: done if the RRset is the
  intended one, sent again only if it is still exactly the one read.
- DNSSEC (SigningAware): ``GET /zones/{id}/dnssec`` ``status``: ``active`` is signing and the
  DS is in place; ``pending`` (DS not yet seen at the parent), ``disabled``,
  ``pending-disabled`` and ``error`` are not
  (https://developers.cloudflare.com/api/resources/dns/subresources/dnssec/methods/get/).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from rollover.config import Section, check_secret_file
from rollover.core.association import Association, parse_association
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, InputError, ProviderError
from rollover.ports import Receipt

DEFAULT_API = "https://api.cloudflare.com/client/v4"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"  # noqa: S105 (the variable's name, not a secret)
AUTO_TTL = 1  # "automatic" to Cloudflare: never sent
AUTO_TTL_SECONDS = 300  # what an automatic TTL means for a record that is not proxied
MAX_TTL = 86400
PER_PAGE = 100
MAX_PAGES = 50
COMMENT = "rollover: DANE TLSA"
PERMISSIONS = "Zone → Zone → Read and Zone → DNS → Edit for the zone"
BAD_TOKEN_CODES = frozenset({6003, 6111, 6100, 6101, 6102, 6103, 9103, 9106, 9109, 1000})
UNKNOWN_ZONE_CODES = frozenset({7003, 7000, 1001})
CONFLICT_CODES = frozenset({81044, 81058})


@dataclass(frozen=True)
class CloudflareSettings:
    api_token_file: str | None = None
    zone: str | None = None  # absolute, lower case
    api_url: str = DEFAULT_API
    timeout: float = 30.0
    max_attempts: int = 5
    rate_limit_wait: float = 60.0
    propagation_seconds: float = 30.0
    minimum_ttl: int = 60
    batch_limit: int = 200


def parse_settings(section: Section, warnings: list[str]) -> CloudflareSettings:
    token_file = section.text("api_token_file")
    if token_file is not None:
        check_secret_file(token_file, section.key("api_token_file"), section.source, warnings)
    elif not os.environ.get(TOKEN_ENV):
        warnings.append(
            f"{section.key('api_token_file')}: not set and ${TOKEN_ENV} is not set here; "
            "the provider needs one of them when it runs"
        )
    zone = section.text("zone")
    if zone is not None:
        zone = zone.strip().lower().rstrip(".") + "."
        if zone == "." or " " in zone:
            raise section.fail("zone", f"{zone!r} is not a zone name")
    api_url = section.text("api_url", DEFAULT_API).rstrip("/")
    problem = _url_problem(api_url)
    if problem:
        raise section.fail("api_url", problem)
    return CloudflareSettings(
        api_token_file=token_file,
        zone=zone,
        api_url=api_url,
        timeout=section.number("timeout", 30.0, low=1.0),
        max_attempts=section.integer("max_attempts", 5, low=1, high=20),
        rate_limit_wait=section.number("rate_limit_wait", 60.0, low=0.0),
        propagation_seconds=section.number("propagation_seconds", 30.0, low=0.0),
        minimum_ttl=section.integer("minimum_ttl", 60, low=2, high=MAX_TTL),
        batch_limit=section.integer("batch_limit", 200, low=1, high=3500),
    )


def _url_problem(url: str) -> str | None:
    """The token travels with every request: https, or plain http to loopback only."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            return (
                "plain http is allowed to a loopback address only (the token would travel in clear)"
            )
    return None


def create(name: str, settings: CloudflareSettings) -> CloudflareProvider:
    return CloudflareProvider(name, settings)


def cf_name(owner: str) -> str:
    """Cloudflare's form of a name: lower case, no trailing dot."""
    return owner.lower().rstrip(".")


def dns_name(name: str) -> str:
    return name.lower().rstrip(".") + "."


@dataclass(frozen=True)
class _Record:
    id: str
    association: Association
    ttl: int  # as stored (1: automatic)

    @property
    def effective_ttl(self) -> int:
        return AUTO_TTL_SECONDS if self.ttl == AUTO_TTL else self.ttl


@dataclass(frozen=True)
class _Zone:
    id: str
    name: str  # absolute, lower case
    status: str


class _UnknownOutcomeError(Exception):
    """A batch whose outcome is not known (the reply was lost)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class CloudflareProvider:
    def __init__(
        self,
        name: str,
        settings: CloudflareSettings,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = settings
        self._client = client
        self._sleep = sleep
        self._zones: dict[str, _Zone] = {}  # owner -> zone
        self._by_name: dict[str, _Zone] = {}  # zone name -> zone

    # -- client ----------------------------------------------------------------------------
    def _token(self) -> str:
        path = self.settings.api_token_file
        if path is not None:
            try:
                with open(path, encoding="utf-8") as handle:
                    token = handle.read(4096).strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not readable text"
                raise ProviderError(f"{self.name}: api_token_file {path}: {reason}") from None
            if not token or any(c.isspace() for c in token):
                raise ProviderError(
                    f"{self.name}: api_token_file {path}: expected one API token on one line"
                )
            return token
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ProviderError(
                f"{self.name}: no API token: set api_token_file, or ${TOKEN_ENV} "
                f"(a token with {PERMISSIONS})"
            )
        return token

    @property
    def client(self) -> Any:
        if self._client is None:
            import cloudflare
            import httpx

            client = cloudflare.Cloudflare(
                api_token=self._token(),
                base_url=self.settings.api_url,
                max_retries=0,  # retried here, where a batch's outcome is checked first
                timeout=httpx.Timeout(
                    self.settings.timeout, connect=min(10.0, self.settings.timeout)
                ),
            )
            client.api_key = None  # never the Global API key from $CLOUDFLARE_API_KEY
            client.api_email = None
            self._client = client
        return self._client

    # -- calls -----------------------------------------------------------------------------
    def _call(
        self, what: str, zone: str | None, fn: Callable[[], Any], *, write: bool = False
    ) -> Any:
        """One API request (``fn``), retried within ``max_attempts``: a 429 after its
        retry-after, a server error or lost connection of a read with backoff. For a write
        (``write``), an outcome that is not known raises _UnknownOutcomeError instead of a retry."""
        import cloudflare

        delay = 0.5
        for attempt in range(1, self.settings.max_attempts + 1):
            last = attempt == self.settings.max_attempts
            try:
                return fn()
            except cloudflare.RateLimitError as exc:
                wait = _retry_after(exc.response, delay)
                if last or wait > self.settings.rate_limit_wait:
                    raise ProviderError(
                        f"{self.name}: {what}: rate-limited by Cloudflare (HTTP 429: 1,200 "
                        f"requests per 5 minutes per user); retry after {wait:g} s; gave up "
                        f"after {attempt} attempt{'s' if attempt > 1 else ''}"
                    ) from None
                self._sleep(wait)
                delay = min(delay * 2, 8.0)
            except cloudflare.APITimeoutError:
                if write:
                    raise _UnknownOutcomeError(
                        f"timed out after {self.settings.timeout:g} s"
                    ) from None
                if last:
                    raise ProviderError(
                        f"{self.name}: {what}: the Cloudflare API did not answer within "
                        f"{self.settings.timeout:g} s ({attempt} attempts)"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            except cloudflare.APIConnectionError as exc:
                cause = _cause(exc)
                if write:
                    raise _UnknownOutcomeError(f"connection lost: {cause}") from None
                if last:
                    raise ProviderError(
                        f"{self.name}: {what}: cannot reach the Cloudflare API at "
                        f"{_host(self.settings.api_url)}: {cause} ({attempt} attempts)"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            except cloudflare.InternalServerError as exc:
                if write:
                    raise _UnknownOutcomeError(
                        f"HTTP {exc.status_code}: {_messages(exc.body)}"
                    ) from None
                if last:
                    raise ProviderError(
                        f"{self.name}: {what}: Cloudflare server error HTTP {exc.status_code}"
                        f" ({_messages(exc.body)}); gave up after {attempt} attempts"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            except cloudflare.APIStatusError as exc:
                raise self._error(what, zone, exc.status_code, exc.body) from None
            except cloudflare.APIResponseValidationError:
                raise ProviderError(
                    f"{self.name}: {what}: the Cloudflare API answered something unexpected"
                ) from None
            except cloudflare.APIError as exc:
                raise ProviderError(f"{self.name}: {what}: {type(exc).__name__}") from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _error(
        self, what: str, zone: str | None, status: int, body: object
    ) -> ProviderError | ConflictError:
        codes = _codes(body)
        message = _messages(body)
        where = f" for zone {zone.rstrip('.')}" if zone else ""
        if status == 401 or codes & BAD_TOKEN_CODES:
            return ProviderError(
                f"{self.name}: {what}: Cloudflare rejected the API token ({message}); check "
                f"api_token_file or ${TOKEN_ENV}"
            )
        if status == 403:
            return ProviderError(
                f"{self.name}: {what}: permission denied{where} ({message}): the token needs "
                f"{PERMISSIONS}"
            )
        if codes & UNKNOWN_ZONE_CODES or status == 404:
            return ProviderError(
                f"{self.name}: {what}: Cloudflare does not know the zone{where} ({message})"
            )
        if codes & CONFLICT_CODES:
            return ConflictError(
                f"{self.name}: {what}: the TLSA RRset changed since it was read (Cloudflare: "
                f"{message}); the batch was refused whole, nothing was changed"
            )
        return ProviderError(
            f"{self.name}: {what}: Cloudflare refused it (HTTP {status}: {message})"
        )

    # -- zones -----------------------------------------------------------------------------
    def zone_for(self, owner: str) -> str:
        return self._zone(owner).name

    def _zone(self, owner: str) -> _Zone:
        owner = dns_name(owner)
        if owner in self._zones:
            return self._zones[owner]
        if self.settings.zone is not None:
            wanted = self.settings.zone
            if not (owner == wanted or owner.endswith("." + wanted)):
                raise ConfigError(f"{self.name}: {owner} is not in zone {wanted}")
            found = self._lookup(wanted)
            if found is None:
                raise ProviderError(
                    f"{self.name}: no zone named {wanted.rstrip('.')} is visible to this "
                    f"token (unknown zone, or the token lacks Zone → Zone → Read for it)"
                )
        else:
            found = None
            labels = owner.rstrip(".").split(".")
            for i in range(len(labels) - 1):
                if labels[i].startswith("_"):
                    continue  # a zone is a host name: _25._tcp.* never is one
                found = self._lookup(".".join(labels[i:]) + ".")
                if found is not None:
                    break
            if found is None:
                raise ProviderError(
                    f"{self.name}: no zone visible to this token holds {owner} (set zone; the "
                    f"token needs {PERMISSIONS})"
                )
        self._zones[owner] = found
        return found

    def _lookup(self, name: str) -> _Zone | None:
        if name in self._by_name:
            return self._by_name[name]
        page = self._call(
            f"zone lookup of {name.rstrip('.')}",
            name,
            lambda: self.client.zones.list(name=cf_name(name), per_page=50),
        )
        zones = [_as_dict(z) for z in (page.result or [])]
        zones = [z for z in zones if dns_name(str(z.get("name", ""))) == name]
        if len(zones) > 1:
            active = [z for z in zones if z.get("status") == "active"]
            if len(active) != 1:
                ids = ", ".join(str(z.get("id")) for z in zones)
                raise ProviderError(
                    f"{self.name}: several zones named {name.rstrip('.')} are visible to this "
                    f"token ({ids}); scope the token to one of them"
                )
            zones = active
        if not zones:
            return None
        zone = _Zone(str(zones[0]["id"]), name, str(zones[0].get("status", "")))
        self._by_name[name] = zone
        return zone

    def dnssec_signing(self, owner: str) -> bool:
        """Signing, and the DS in place: the zone active at Cloudflare and its DNSSEC status
        ``active`` (``pending`` waits for the DS at the registrar)."""
        zone = self._zone(owner)
        result = self._call(
            "DNSSEC status",
            zone.name,
            lambda: self.client.dns.dnssec.get(zone_id=zone.id),
        )
        status = str(_as_dict(result).get("status") or "")
        return zone.status == "active" and status == "active"

    # -- records ---------------------------------------------------------------------------
    def _records(self, owner: str) -> list[_Record]:
        owner = dns_name(owner)
        zone = self._zone(owner)
        records: list[_Record] = []
        for number in range(1, MAX_PAGES + 1):
            page = self._call(
                f"read of {owner} TLSA",
                zone.name,
                partial(self._list_page, zone.id, owner, number),
            )
            items = [_as_dict(r) for r in (page.result or [])]
            for item in items:
                if dns_name(str(item.get("name", ""))) != owner or item.get("type") != "TLSA":
                    continue  # the filter is the server's; checked here all the same
                records.append(self._parse(owner, item))
            info = _as_dict(page.result_info) if page.result_info is not None else {}
            total = info.get("total_pages")
            if len(items) < PER_PAGE or (isinstance(total, int) and number >= total):
                return records
        raise ProviderError(f"{self.name}: {owner}: more than {MAX_PAGES * PER_PAGE} TLSA records")

    def _list_page(self, zone_id: str, owner: str, number: int) -> Any:
        return self.client.dns.records.list(
            zone_id=zone_id,
            name={"exact": cf_name(owner)},
            type="TLSA",
            page=number,
            per_page=PER_PAGE,
        )

    def _parse(self, owner: str, item: dict[str, Any]) -> _Record:
        data = item.get("data")
        try:
            if isinstance(data, dict) and data.get("certificate") is not None:
                fields = [data.get(k) for k in ("usage", "selector", "matching_type")]
                numbers = [_integral(v) for v in fields]
                text = (
                    " ".join(str(n) for n in numbers)
                    + " "
                    + "".join(str(data["certificate"]).split())
                )
            else:
                text = str(item.get("content") or "")
            association = parse_association(text)
            ttl = _integral(item.get("ttl"))
        except (InputError, ValueError, TypeError) as exc:
            raise ProviderError(
                f"{self.name}: {owner}: unparseable TLSA record {item.get('id')}: {exc}"
            ) from None
        return _Record(str(item["id"]), association, ttl)

    def read(self, owner: str) -> TlsaRRset:
        owner = dns_name(owner)
        return _rrset(owner, self._records(owner))

    # -- changes ---------------------------------------------------------------------------
    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        return self.apply_many([change])[0]

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """Several owner names of one zone in one batch request (one transaction)."""
        changes = [c for c in changes if not c.is_noop]
        if not changes:
            return []
        zones = {self._zone(c.owner).id for c in changes}
        if len(zones) != 1:
            raise ProviderError(f"{self.name}: one batch can only touch one zone")
        if len({dns_name(c.owner) for c in changes}) != len(changes):
            raise ProviderError(f"{self.name}: two changes to one owner name in one batch")
        zone = self._zone(changes[0].owner)
        for change in changes:
            self._check_ttl(change)
        current = {dns_name(c.owner): self._records(c.owner) for c in changes}  # the read
        for change in changes:
            now = _rrset(dns_name(change.owner), current[dns_name(change.owner)])
            if now.records != change.before.records or (
                change.before.exists and now.ttl != change.before.ttl
            ):
                raise ConflictError(
                    f"{self.name}: the TLSA RRset at {change.owner} changed since it was read "
                    f"({_describe(now)} instead of {_describe(change.before)}); nothing was "
                    "changed"
                )
        batch = _batch(changes, current)
        size = sum(len(v) for v in batch.values())
        if size > self.settings.batch_limit:
            raise ProviderError(
                f"{self.name}: the batch would hold {size} operations, more than Cloudflare "
                f"takes in one ({self.settings.batch_limit}; 200 on the Free plan)"
            )
        what = f"batch for {', '.join(c.owner for c in changes)}"
        result: Any = None
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                result = self._call(
                    what,
                    zone.name,
                    lambda: self.client.dns.records.batch(zone_id=zone.id, **batch),
                    write=True,
                )
                break
            except _UnknownOutcomeError as exc:
                # The reply was lost: what did Cloudflare commit? All of it or none of it.
                after = {dns_name(c.owner): self.read(c.owner) for c in changes}
                if all(_same(after[dns_name(c.owner)], c.after) for c in changes):
                    break
                if all(_same(after[dns_name(c.owner)], c.before) for c in changes) and (
                    attempt < self.settings.max_attempts
                ):
                    self._sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
                    continue
                if all(_same(after[dns_name(c.owner)], c.before) for c in changes):
                    raise ProviderError(
                        f"{self.name}: {what}: {exc.what}; nothing was changed; gave up "
                        f"after {attempt} attempts"
                    ) from None
                raise ConflictError(
                    f"{self.name}: {what}: {exc.what}, and the RRset read back is neither the "
                    "one read nor the intended one (another writer?); nothing was restored"
                ) from None
        for change in changes:  # the read-back
            now = self.read(change.owner)
            if not _same(now, change.after):
                raise ConflictError(
                    f"{self.name}: after the batch the TLSA RRset at {change.owner} is "
                    f"{_describe(now)}, not the intended {_describe(change.after)}: another "
                    "writer changed it between the read and the write; nothing was restored"
                )
        change_id = _change_id(zone.id, result, batch)
        return [Receipt(self.name, change_id, c, zone.name) for c in changes]

    def _check_ttl(self, change: Change) -> None:
        """Never 1 ("automatic": rollover's waits are computed from the TTL it publishes)."""
        if not change.after.exists:
            return
        ttl = change.after.ttl
        low = self.settings.minimum_ttl
        if ttl is None or not low <= ttl <= MAX_TTL:
            raise ProviderError(
                f"{self.name}: {change.owner}: TTL {ttl} is outside Cloudflare's "
                f"{low}..{MAX_TTL} s (1 would mean 'automatic', which rollover never sends: "
                "its waits are computed from the TTL); set the service's ttl to at least "
                f"{low}"
            )

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """The batch is committed when it returns; the edge is given ``propagation_seconds``
        (Cloudflare reports no completion), then the RRset is read back once more."""
        if receipt.change_id == "noop":
            return
        self._sleep(max(0.0, min(self.settings.propagation_seconds, timeout)))
        now = self.read(receipt.change.owner)
        if now.records != receipt.change.after.records:
            raise ConflictError(
                f"{self.name}: after batch {receipt.change_id} the TLSA RRset at "
                f"{receipt.change.owner} is not the intended one (another writer?)"
            )


def _rrset(owner: str, records: list[_Record]) -> TlsaRRset:
    """Every record's TTL should be the same (RFC 2181 section 5.2); where they differ the
    longest is the RRset's, the one caches may hold longest."""
    if not records:
        return TlsaRRset(owner)
    ttl = max(r.effective_ttl for r in records)
    return TlsaRRset(owner, ttl, frozenset(r.association for r in records))


def _same(now: TlsaRRset, wanted: TlsaRRset) -> bool:
    if now.records != wanted.records:
        return False
    return not wanted.exists or now.ttl == wanted.ttl


def _batch(changes: Sequence[Change], current: dict[str, list[_Record]]) -> dict[str, Any]:
    deletes: list[dict[str, Any]] = []
    patches: list[dict[str, Any]] = []
    posts: list[dict[str, Any]] = []
    for change in changes:
        owner = dns_name(change.owner)
        ttl = change.after.ttl
        for record in current[owner]:
            if record.association not in change.after.records:
                deletes.append({"id": record.id})
            elif record.ttl != ttl:
                patches.append(
                    {"id": record.id, "name": cf_name(owner), "type": "TLSA", "ttl": ttl}
                )
        for association in sorted(change.added):
            posts.append(
                {
                    "name": cf_name(owner),
                    "type": "TLSA",
                    "ttl": ttl,
                    "comment": COMMENT,
                    "data": {
                        "usage": association.params.usage,
                        "selector": association.params.selector,
                        "matching_type": association.params.mtype,
                        "certificate": association.hex,
                    },
                }
            )
    batch: dict[str, Any] = {}
    if deletes:
        batch["deletes"] = deletes
    if patches:
        batch["patches"] = patches
    if posts:
        batch["posts"] = posts
    return batch


def _change_id(zone_id: str, result: Any, batch: dict[str, Any]) -> str:
    """Cloudflare gives a batch no id: the ids it touched, hashed, name it in the history."""
    ids: list[str] = []
    body = _as_dict(result) if result is not None else {}
    for key in ("deletes", "patches", "puts", "posts"):
        for item in body.get(key) or batch.get(key) or []:
            ids.append(str(_as_dict(item).get("id", "")))
    digest = hashlib.sha256("\n".join([zone_id, *ids]).encode()).hexdigest()[:16]
    return f"batch-{digest}"


def _describe(rrset: TlsaRRset) -> str:
    if not rrset.exists:
        return "no TLSA records"
    count = len(rrset.records)
    return f"{count} record{'s' if count != 1 else ''} (TTL {rrset.ttl})"


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if hasattr(value, "to_dict"):
        result = value.to_dict()
        return result if isinstance(result, dict) else {}
    if hasattr(value, "model_dump"):
        result = value.model_dump()
        return result if isinstance(result, dict) else {}
    return {}


def _integral(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _codes(body: object) -> set[int]:
    codes: set[int] = set()
    if isinstance(body, dict):
        for entry in body.get("errors") or []:
            if isinstance(entry, dict):
                for item in (entry, *(entry.get("error_chain") or [])):
                    if isinstance(item, dict) and isinstance(item.get("code"), int):
                        codes.add(item["code"])
    return codes


def _messages(body: object) -> str:
    """Cloudflare's own words, one line: ``code: message`` of each error and its chain."""
    parts: list[str] = []
    if isinstance(body, dict):
        for entry in body.get("errors") or []:
            if not isinstance(entry, dict):
                continue
            for item in (entry, *(entry.get("error_chain") or [])):
                if isinstance(item, dict):
                    text = " ".join(str(item.get("message", "")).split())[:300]
                    parts.append(f"{item.get('code')}: {text}")
    return "; ".join(parts) or "no error message"


def _retry_after(response: Any, default: float) -> float:
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None else str(exc)
    return " ".join(text.split())[:200] or type(cause or exc).__name__


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


__all__ = ["CloudflareProvider", "CloudflareSettings", "create", "parse_settings"]
