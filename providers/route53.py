"""Route 53 adapter: exact where the service is unforgiving.

- boto3 is imported only when this adapter is used. Credentials and region come from boto3's
  standard chain (environment, shared config ``profile``, instance or container role); they are
  never printed or stored.
- Compare-and-swap: a DELETE of the exact current RRset (values and TTL, as Route 53 returned
  them) plus a CREATE of the new one, in one change batch, which Route 53 applies atomically; a
  DELETE that no longer matches (or a CREATE over an RRset someone else created) fails with
  InvalidChangeBatch and becomes :class:`ConflictError`.
- Values are presentation strings (``"3 1 1 <hex>"``), compared as parsed rdata, never as strings.
- Waiting: GetChange until INSYNC (bounded), then read back.
- Throttling (5 requests/s per account) and PriorRequestNotComplete: botocore's standard retry
  mode, then a retry here with backoff, ``max_attempts`` requests per call in all (botocore's
  own retries counted, from ``RetryAttempts``); a clear error when attempts run out.
- Limits checked before sending: 1,000 ResourceRecord elements per batch (UPSERT counts twice)
  and 32,000 characters of values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rollover.config import Section
from rollover.core.association import Association, parse_association
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, InputError, ProviderError
from rollover.ports import Receipt

MAX_RECORDS = 1000
MAX_VALUE_CHARS = 32000
RETRYABLE = frozenset(
    {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"}
)
PERMISSION = {
    "ChangeResourceRecordSets": "route53:ChangeResourceRecordSets",
    "ListResourceRecordSets": "route53:ListResourceRecordSets",
    "GetChange": "route53:GetChange",
    "GetDNSSEC": "route53:GetDNSSEC",
    "ListHostedZonesByName": "route53:ListHostedZonesByName",
    "GetHostedZone": "route53:GetHostedZone",
}
_OCTAL = re.compile(r"\\(\d{3})")


@dataclass(frozen=True)
class Route53Settings:
    hosted_zone_id: str | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    wait_timeout: float = 300.0
    private_zone: bool = False
    max_attempts: int = 5


def parse_settings(section: Section, warnings: list[str]) -> Route53Settings:
    del warnings
    zone_id = section.text("hosted_zone_id")
    if zone_id is not None:
        zone_id = zone_id.rsplit("/", 1)[-1]
    return Route53Settings(
        hosted_zone_id=zone_id,
        profile=section.text("profile"),
        region=section.text("region"),
        endpoint_url=section.text("endpoint_url"),
        wait_timeout=section.number("wait_timeout", 300.0, low=1.0),
        private_zone=section.flag("private_zone", False),
        max_attempts=section.integer("max_attempts", 5, low=1, high=20),
    )


def create(name: str, settings: Route53Settings) -> Route53Provider:
    return Route53Provider(name, settings)


def route53_name(name: str) -> str:
    """Route 53 returns names lowercase with special characters as ``\\NNN`` octal escapes."""
    text = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), name)
    return text.lower() if text.endswith(".") else text.lower() + "."


def make_client(settings: Route53Settings) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        profile_name=settings.profile, region_name=settings.region or "us-east-1"
    )
    config = Config(
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        connect_timeout=10,
        read_timeout=30,
    )
    return session.client("route53", endpoint_url=settings.endpoint_url, config=config)


class Route53Provider:
    def __init__(
        self,
        name: str,
        settings: Route53Settings,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = settings
        self._client = client
        self._sleep = sleep
        self._zones: dict[str, tuple[str, str]] = {}  # owner -> (zone id, zone name)
        self._raw: dict[str, tuple[int | None, tuple[str, ...]]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    # -- calls -----------------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One API call, errors mapped to one line; throttling retried with backoff."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        method = getattr(self.client, _snake(operation))
        delay = 0.5
        attempts = 0  # requests sent, botocore's own retries included
        while True:
            try:
                return method(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                attempts += 1 + int(retried or 0)
                if code in RETRYABLE and attempts < self.settings.max_attempts:
                    self._sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                raise self._error(operation, code, message, attempts) from None
            except NoCredentialsError:
                raise ProviderError(
                    f"{self.name}: no AWS credentials found (environment, "
                    "shared config profile, or instance role)"
                ) from None
            except EndpointConnectionError as exc:
                raise ProviderError(
                    f"{self.name}: cannot reach the Route 53 endpoint: {exc}"
                ) from None
            except BotoCoreError as exc:
                raise ProviderError(f"{self.name}: {operation} failed: {exc}") from None

    def _error(
        self, operation: str, code: str, message: str, attempts: int = 1
    ) -> ProviderError | ConflictError:
        if code in RETRYABLE:
            return ProviderError(
                f"{self.name}: {operation} throttled by Route 53 ({code}); "
                f"gave up after {attempts} attempts"
            )
        if code == "NoSuchHostedZone":
            return ProviderError(
                f"{self.name}: hosted zone "
                f"{self.settings.hosted_zone_id or ''} does not exist "
                f"({message})".replace("  ", " ")
            )
        if code in ("AccessDenied", "AccessDeniedException"):
            return ProviderError(
                f"{self.name}: access denied: the credentials lack "
                f"{PERMISSION.get(operation, 'route53:' + operation)}"
            )
        if code == "InvalidChangeBatch":
            if re.search(r"do not match|already exists|but it was not found", message):
                return ConflictError(
                    f"{self.name}: the TLSA RRset changed since it was read "
                    f"(Route 53: {message}); nothing was changed"
                )
            return ProviderError(f"{self.name}: Route 53 rejected the change: {message}")
        return ProviderError(f"{self.name}: {operation} failed: {code} {message}".strip())

    # -- zones -----------------------------------------------------------------------------
    def zone_for(self, owner: str) -> str:
        return self._zone(owner)[1]

    def _zone(self, owner: str) -> tuple[str, str]:
        owner = route53_name(owner)
        if owner in self._zones:
            return self._zones[owner]
        if self.settings.hosted_zone_id is not None:
            zone = self._call("GetHostedZone", Id=self.settings.hosted_zone_id)["HostedZone"]
            name = route53_name(zone["Name"])
            if not (owner == name or owner.endswith("." + name)):
                raise ConfigError(
                    f"{self.name}: {owner} is not in hosted zone {name} "
                    f"({self.settings.hosted_zone_id})"
                )
            found = (self.settings.hosted_zone_id, name)
        else:
            found = self._lookup_zone(owner)
        self._zones[owner] = found
        return found

    def _lookup_zone(self, owner: str) -> tuple[str, str]:
        """The longest-suffix hosted zone of the wanted kind (public unless private_zone)."""
        labels = owner.rstrip(".").split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:]) + "."
            page = self._call("ListHostedZonesByName", DNSName=candidate, MaxItems="20")
            matches = [
                z
                for z in page.get("HostedZones", [])
                if route53_name(z["Name"]) == candidate
                and bool(z.get("Config", {}).get("PrivateZone")) == self.settings.private_zone
            ]
            if len(matches) > 1:
                ids = ", ".join(z["Id"].rsplit("/", 1)[-1] for z in matches)
                raise ConfigError(
                    f"{self.name}: several hosted zones named {candidate} ({ids}); "
                    "set hosted_zone_id"
                )
            if matches:
                return matches[0]["Id"].rsplit("/", 1)[-1], candidate
        kind = "private" if self.settings.private_zone else "public"
        raise ProviderError(f"{self.name}: no {kind} hosted zone holds {owner}")

    def dnssec_signing(self, owner: str) -> bool:
        """GetDNSSEC: whether Route 53 signs the zone (ServeSignature SIGNING)."""
        zone_id, _name = self._zone(owner)
        status = self._call("GetDNSSEC", HostedZoneId=zone_id).get("Status", {})
        return str(status.get("ServeSignature", "")).upper() == "SIGNING"

    # -- records ---------------------------------------------------------------------------
    def read(self, owner: str) -> TlsaRRset:
        owner = route53_name(owner)
        zone_id, _name = self._zone(owner)
        page = self._call(
            "ListResourceRecordSets",
            HostedZoneId=zone_id,
            StartRecordName=owner,
            StartRecordType="TLSA",
            MaxItems="1",
        )
        for rrset in page.get("ResourceRecordSets", [])[:1]:
            if route53_name(rrset["Name"]) != owner or rrset["Type"] != "TLSA":
                break
            if "SetIdentifier" in rrset:
                raise ProviderError(
                    f"{self.name}: {owner} TLSA uses a routing policy; "
                    "rollover manages simple RRsets only"
                )
            values = tuple(r["Value"] for r in rrset.get("ResourceRecords", []))
            try:
                records = frozenset(parse_association(v) for v in values)
            except InputError as exc:
                raise ProviderError(
                    f"{self.name}: {owner}: unparseable TLSA value: {exc}"
                ) from None
            ttl = int(rrset["TTL"]) if "TTL" in rrset else None
            self._raw[owner] = (ttl, values)
            return TlsaRRset(owner, ttl, records)
        self._raw[owner] = (None, ())
        return TlsaRRset(owner)

    def change_batch(self, changes: Sequence[Change]) -> dict[str, Any]:
        """The exact ChangeBatch for ``changes`` (one hosted zone), checked against the limits."""
        entries: list[dict[str, Any]] = []
        for change in changes:
            owner = route53_name(change.owner)
            if change.before.exists:
                ttl, values = self._raw.get(owner, (None, ()))
                parsed = frozenset(parse_association(v) for v in values)
                if parsed != change.before.records or ttl is None:
                    # Not what was read through this adapter: the DELETE must be exact.
                    ttl = change.before.ttl
                    values = tuple(str(a) for a in sorted(change.before.records))
                entries.append(_entry("DELETE", owner, ttl, values))
            if change.after.exists:
                entries.append(
                    _entry(
                        "CREATE",
                        owner,
                        change.after.ttl,
                        tuple(str(a) for a in sorted(change.after.records)),
                    )
                )
        _check_limits(entries)
        return {"Comment": "rollover: DANE TLSA change", "Changes": entries}

    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        return self.apply_many([change])[0]

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """Several owner names in one hosted zone, one atomic change batch."""
        changes = [c for c in changes if not c.is_noop]
        if not changes:
            return []
        zones = {self._zone(c.owner)[0] for c in changes}
        if len(zones) != 1:
            raise ProviderError(f"{self.name}: one change batch can only touch one hosted zone")
        batch = self.change_batch(changes)
        info = self._call("ChangeResourceRecordSets", HostedZoneId=zones.pop(), ChangeBatch=batch)[
            "ChangeInfo"
        ]
        change_id = str(info["Id"]).rsplit("/", 1)[-1]
        return [Receipt(self.name, change_id, c, str(info.get("Status", ""))) for c in changes]

    def wait(self, receipt: Receipt, timeout: float) -> None:
        if receipt.change_id == "noop":
            return
        deadline = time.monotonic() + min(timeout, self.settings.wait_timeout)
        delay = 1.0
        while True:
            status = self._call("GetChange", Id=receipt.change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                break
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"{self.name}: change {receipt.change_id} still {status} "
                    f"after {min(timeout, self.settings.wait_timeout):g} s"
                )
            self._sleep(delay)
            delay = min(delay * 1.5, 10.0)
        current = self.read(receipt.change.owner)
        if current.records != receipt.change.after.records:
            raise ConflictError(
                f"{self.name}: after change {receipt.change_id} the RRset at "
                f"{receipt.change.owner} is not the intended one (another "
                "writer?)"
            )


def _entry(action: str, owner: str, ttl: int | None, values: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Action": action,
        "ResourceRecordSet": {
            "Name": owner,
            "Type": "TLSA",
            "TTL": int(ttl if ttl is not None else 300),
            "ResourceRecords": [{"Value": v} for v in values],
        },
    }


def _check_limits(entries: list[dict[str, Any]]) -> None:
    """Route 53's batch limits: 1,000 ResourceRecord elements (UPSERT twice), 32,000 chars."""
    count = 0
    chars = 0
    for entry in entries:
        records = entry["ResourceRecordSet"]["ResourceRecords"]
        weight = 2 if entry["Action"] == "UPSERT" else 1
        count += weight * len(records)
        chars += weight * sum(len(r["Value"]) for r in records)
    if count > MAX_RECORDS or chars > MAX_VALUE_CHARS:
        raise ProviderError(
            f"change batch too large for Route 53: {count} ResourceRecord "
            f"elements (max {MAX_RECORDS}), {chars} characters of values (max "
            f"{MAX_VALUE_CHARS})"
        )


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower().replace("d_n_s_s_e_c", "dnssec")


__all__ = ["Association", "Route53Provider", "Route53Settings", "create", "parse_settings"]
