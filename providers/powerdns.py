"""PowerDNS Authoritative through its HTTP API (``type: powerdns``), with the standard library.

What the API offers, from the PowerDNS documentation (docs/http-api/zone.rst, endpoint-zones.rst)
and its source (pdns/ws-auth.cc, ``patchZone``), and what this adapter makes of it:

- **Writes** are RRset-level: ``PATCH /api/v1/servers/{server_id}/zones/{zone_id}`` with
  ``rrsets`` entries of ``changetype`` ``REPLACE`` (the whole RRset: ``ttl`` and ``records``) or
  ``DELETE``. One PATCH runs in one backend transaction (``startTransaction`` ...
  ``commitTransaction``; any error aborts all of it), so :meth:`PowerDNSProvider.apply_many`
  sends several owner names of one zone in one PATCH and they change together or not at all.
- **No conditional write.** PowerDNS 4.x has no precondition, ETag or If-Match on a PATCH (the
  ``PRUNE``/``EXTEND`` changetypes of 5.x are conditional per record, not per RRset). So each
  change is *read, write, read back*: the RRset is read again right before the PATCH and must
  still be exactly ``change.before`` (records and TTL), else :class:`ConflictError` and nothing
  is sent; after the PATCH it is read back and must be exactly ``change.after``, else
  :class:`ConflictError` saying that this change was written and then changed by another
  writer: nothing is restored or rewritten on anyone's behalf.

  **The race window that remains**: another writer's change to the *same* RRset that lands
  between that last read and the PATCH's transaction (one HTTP round trip, milliseconds) is
  replaced without notice; one that lands after it is detected by the read-back. PowerDNS 4.7's
  ``X-PDNS-Old-Serial`` header cannot narrow this further (it reports the serial after the
  change, checked against 4.7.3). Where that window matters, write through RFC 2136 instead
  (``type: rfc2136`` against the same server, with ``dnsupdate=yes``): PowerDNS checks update
  prerequisites itself, a true compare-and-swap.
- **Disabled records** (``"disabled": true``) are not served and not part of the RRset read; they
  are sent back untouched with every REPLACE, so another party's disabled records survive.
- **Content** goes in PowerDNS's exact presentation form, ``"3 1 1 <lower-case hex>"``: PowerDNS
  re-renders what it parses and refuses content that differs (``Not in expected format``), so
  hex broken by spaces is a 422; and it does not check digest lengths, so the records this
  adapter adds are validated here first (SHA2-256 32 bytes, SHA2-512 64, RFC 6698 section 2.1;
  RFC 7671 section 5). Records already in the RRset are sent back exactly as PowerDNS gave them.
- **In effect**: the PATCH's ``204`` comes after the commit, and PowerDNS purges its caches for
  the zone. With ``SOA-EDIT-API`` set the response carries ``X-PDNS-New-Serial``; :meth:`wait`
  then waits until the zone's serial has reached it and the RRset reads back as intended. Zones
  without ``SOA-EDIT-API`` keep their serial on API changes (no header): the read-back alone.
- **Rectify**: a DNSSEC zone needs its ordering data fixed after a change ("rectify"). PowerDNS
  does it inside the PATCH when the zone's ``API-RECTIFY`` metadata is 1, or absent with
  ``default-api-rectify=yes`` (the default). Otherwise, for a signed zone, this adapter calls
  ``PUT .../zones/{zone_id}/rectify`` right after the change (``rectify: false`` turns that off);
  that is a second request, so signed denial-of-existence answers near the new name may be stale
  for that moment.
- **DNSSEC**: :meth:`dnssec_signing` is the zone's ``dnssec`` field, no ``PRESIGNED`` metadata
  (a presigned zone only serves stored signatures: PowerDNS would sign nothing written here),
  and at least one active key in ``cryptokeys``.
- **Errors** are one line: 401 (the API key from ``api_key_file`` refused), 404 (no such zone, or
  no such ``server_id``), 422 (PowerDNS's own message), unreachable, timeout. Reads are retried
  (``retries``, with backoff); a PATCH only when the connection was refused (nothing was sent):
  after a timeout its outcome is unknown and the error says to read again. The key is sent in the
  ``X-API-Key`` header only; it is never in an error, a log or a receipt.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollover.config import Section, check_secret_file
from rollover.core.association import Association, parse_association
from rollover.core.params import MTYPE_DIGEST_SIZE
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, InputError, ProviderError
from rollover.ports import Receipt

BATCH_RRSETS = 100  # RRsets per PATCH: far inside PowerDNS's webserver-max-bodysize (2 MB)
MAX_MESSAGE = 300  # characters of a server message kept in an error
_LABEL_OK = re.compile(r"^[A-Za-z0-9.-]$")


@dataclass(frozen=True)
class PowerDNSSettings:
    api_url: str
    api_key: str = field(repr=False)
    api_key_file: str = ""
    server_id: str = "localhost"
    zone: str | None = None
    timeout: float = 10.0
    retries: int = 3
    wait_timeout: float = 60.0
    rectify: bool = True


def parse_settings(section: Section, warnings: list[str]) -> PowerDNSSettings:
    api_url = section.text("api_url", required=True)
    try:
        base = _split_url(api_url)
    except InputError as exc:
        raise section.fail("api_url", str(exc)) from None
    if base[0] == "http" and not _is_loopback(base[1]):
        warnings.append(
            f"{section.key('api_url')}: {api_url} is plain HTTP to another host: the API key "
            "crosses the network unencrypted; use https"
        )
    key_file = section.text("api_key_file", required=True)
    check_secret_file(key_file, section.key("api_key_file"), section.source, warnings)
    api_key = read_api_key(key_file, f"{section.source}: {section.key('api_key_file')}")
    server_id = section.text("server_id", "localhost")
    if "/" in server_id or "?" in server_id:
        raise section.fail("server_id", "must be a bare server id (such as localhost)")
    zone = section.text("zone")
    if zone is not None:
        zone = _absolute(zone)
    settings = PowerDNSSettings(
        api_url=api_url,
        api_key=api_key,
        api_key_file=key_file,
        server_id=server_id,
        zone=zone,
        timeout=section.number("timeout", 10.0, low=0.1),
        retries=section.integer("retries", 3, low=1, high=10),
        wait_timeout=section.number("wait_timeout", 60.0, low=1.0),
        rectify=section.flag("rectify", True),
    )
    section.finish()
    return settings


def create(name: str, settings: PowerDNSSettings) -> PowerDNSProvider:
    return PowerDNSProvider(name, settings)


def read_api_key(path: str, where: str) -> str:
    """The first line of the file, stripped; the key itself is never put in a message."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(65536)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable text"
        raise ConfigError(f"{where}: {path}: {reason}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{where}: {path} is empty (it must hold the API key)")
    if len(lines) > 1:
        raise ConfigError(f"{where}: {path} holds more than one line (only the API key)")
    key = lines[0]
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in key):
        raise ConfigError(f"{where}: {path}: the API key has spaces or non-ASCII characters")
    return key


# -- names and content ----------------------------------------------------------------------
def _absolute(name: str) -> str:
    text = name.strip().lower()
    return text if text.endswith(".") else text + "."


def zone_id(zone: str) -> str:
    """The API's zone id for a zone name (``apiZoneNameToId`` in pdns/ws-api.cc): letters,
    digits, ``.`` and ``-`` as they are, every other byte ``=XX``; the root is ``=2E``."""
    name = _absolute(zone)
    if name == ".":
        return "=2E"
    return "".join(c if _LABEL_OK.match(c) else f"={ord(c):02X}" for c in name)


def content(association: Association) -> str:
    """The record content PowerDNS accepts and returns: ``usage selector mtype hex``, the hex
    lower-case and unbroken (pdns/rcpgenerator.cc ``xfrHexBlob`` writes it so, and the API
    refuses content that does not read back identically)."""
    params = association.params
    return f"{params.usage} {params.selector} {params.mtype} {association.hex}"


def validate(association: Association) -> str:
    """``content(association)``, after the checks PowerDNS does not make: each field one octet,
    data present, and the digest length its matching type fixes (RFC 6698 section 2.1)."""
    params = association.params
    for label, value in (
        ("certificate usage", params.usage),
        ("selector", params.selector),
        ("matching type", params.mtype),
    ):
        if not 0 <= value <= 255:
            raise ProviderError(f"TLSA {label} {value} does not fit in one octet")
    if not association.data:
        raise ProviderError(f"TLSA {params}: the association data is empty")
    size = MTYPE_DIGEST_SIZE.get(params.mtype)
    if size is not None and len(association.data) != size:
        raise ProviderError(
            f"TLSA {params}: {len(association.data)} bytes of association data, matching "
            f"type {params.mtype} needs {size} (refused here: PowerDNS does not check)"
        )
    return content(association)


def _split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of ``api_url``; ``/api/v1`` is added by the adapter."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https"):
        raise InputError(f"{url!r}: use an http:// or https:// URL")
    if not parsed.hostname:
        raise InputError(f"{url!r}: no host")
    if parsed.username or parsed.password:
        raise InputError("no credentials in the URL: put the API key in api_key_file")
    if parsed.query or parsed.fragment:
        raise InputError(f"{url!r}: no query or fragment")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise InputError(f"{url!r}: bad port") from None
    path = parsed.path.rstrip("/")
    path = path.removesuffix("/api/v1")
    return parsed.scheme, parsed.hostname, port, path


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serial_reached(serial: int, target: int) -> bool:
    """RFC 1982 serial arithmetic: ``serial`` is ``target`` or after it."""
    return serial == target or 0 < (serial - target) % (1 << 32) < (1 << 31)


@dataclass(frozen=True)
class _Current:
    """An RRset as the API has it: served records (content as PowerDNS wrote it), their TTL,
    the disabled ones, and the zone's serial in the same answer."""

    records: dict[Association, str]
    ttl: int | None
    disabled: tuple[dict[str, Any], ...]
    serial: int | None

    def rrset(self, owner: str) -> TlsaRRset:
        return TlsaRRset(owner, self.ttl if self.records else None, frozenset(self.records))


@dataclass(frozen=True)
class _Zone:
    name: str
    id: str


class _Answer:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class PowerDNSProvider:
    """One PowerDNS server's API; every request carries the key in ``X-API-Key``."""

    def __init__(
        self,
        name: str,
        settings: PowerDNSSettings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = settings
        self._sleep = sleep
        self._scheme, self._host, self._port, self._prefix = _split_url(settings.api_url)
        self._label = f"{self._scheme}://{self._host}:{self._port}{self._prefix}"
        self._zones: dict[str, _Zone] = {}
        self._rectify: dict[str, bool] = {}

    # -- transport -------------------------------------------------------------------------
    def _path(self, tail: str) -> str:
        server = urllib.parse.quote(self.settings.server_id, safe="")
        return f"{self._prefix}/api/v1/servers/{server}{tail}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.settings.timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.settings.timeout)

    def _once(self, method: str, path: str, body: Any) -> _Answer:
        headers = {
            "X-API-Key": self.settings.api_key,
            "Accept": "application/json",
            "User-Agent": "rollover",
        }
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        try:
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            raw = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            status = response.status
        finally:
            connection.close()
        parsed: Any = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
        return _Answer(status, answer_headers, parsed)

    def _request(self, method: str, tail: str, body: Any = None, *, what: str) -> _Answer:
        """One API call; reads retried with backoff on network errors and 5xx answers, a write
        only when nothing can have reached the server (connection refused)."""
        path = self._path(tail)
        write = method not in ("GET", "HEAD")
        delay = 0.5
        last = ""
        for attempt in range(self.settings.retries):
            if attempt:
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            try:
                answer = self._once(method, path, body)
            except ConnectionRefusedError:
                last = "connection refused"
                continue
            except TimeoutError:
                last = f"timed out after {self.settings.timeout:g} s"
                if write:
                    raise ProviderError(self._unknown(what, last)) from None
                continue
            except ssl.SSLError as exc:
                raise ProviderError(
                    f"{self.name}: {self._label}: TLS failed: {exc.reason or exc}"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "strerror", None) or exc or type(exc).__name__
                last = f"connection failed: {reason}"
                if write:
                    raise ProviderError(self._unknown(what, last)) from None
                continue
            if answer.status >= 500 and not write:
                last = f"HTTP {answer.status} {self._message(answer)}".strip()
                continue
            return answer
        raise ProviderError(
            f"{self.name}: cannot reach the PowerDNS API at {self._label}: {last} "
            f"({self.settings.retries} attempts)"
        )

    def _unknown(self, what: str, reason: str) -> str:
        return (
            f"{self.name}: {what} at {self._label}: {reason}; the change may still have been "
            "applied: read the RRset again before retrying"
        )

    def _message(self, answer: _Answer) -> str:
        body = answer.body
        text = body.get("error", "") if isinstance(body, dict) else str(body or "")
        text = " ".join(str(text).split())
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "***")
        return text[:MAX_MESSAGE]

    def _fail(self, answer: _Answer, what: str, zone: str | None = None) -> ProviderError:
        status = answer.status
        message = self._message(answer)
        if status == 401:
            return ProviderError(
                f"{self.name}: the PowerDNS API at {self._label} refused the API key from "
                f"{self.settings.api_key_file or 'api_key_file'} (401 Unauthorized)"
            )
        if status == 403:
            return ProviderError(
                f"{self.name}: the PowerDNS API at {self._label} refused this client (403: "
                "is its address in webserver-allow-from?)"
            )
        if status == 404:
            where = f"zone {zone}" if zone else "the resource"
            return ProviderError(
                f"{self.name}: {where} not found at PowerDNS server "
                f"{self.settings.server_id!r} ({self._label}, 404)"
            )
        if status == 422:
            return ProviderError(f"{self.name}: PowerDNS refused {what}: {message} (422)")
        return ProviderError(
            f"{self.name}: {what} failed at {self._label}: HTTP {status} {message}".rstrip()
        )

    def _get(self, tail: str, *, what: str, zone: str | None = None) -> Any:
        answer = self._request("GET", tail, what=what)
        if answer.status != 200:
            raise self._fail(answer, what, zone)
        return answer.body

    # -- zones -----------------------------------------------------------------------------
    def zone_for(self, owner: str) -> str:
        return self._zone(owner).name

    def _zone(self, owner: str) -> _Zone:
        owner = _absolute(owner)
        if owner in self._zones:
            return self._zones[owner]
        if self.settings.zone is not None:
            zone = self.settings.zone
            if not (owner == zone or owner.endswith("." + zone)):
                raise ConfigError(f"{self.name}: {owner} is not in zone {zone}")
            found = _Zone(zone, zone_id(zone))
        else:
            found = self._lookup_zone(owner)
        self._zones[owner] = found
        return found

    def _lookup_zone(self, owner: str) -> _Zone:
        """The longest zone at the server that ``owner`` is in (``GET .../zones?zone=NAME``
        for each suffix, longest first: one small answer each, never the whole list)."""
        labels = owner.rstrip(".").split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:]) + "."
            query = urllib.parse.urlencode({"zone": candidate})
            found = self._get(f"/zones?{query}", what=f"looking up zone {candidate}")
            for entry in found if isinstance(found, list) else []:
                if isinstance(entry, dict) and _absolute(str(entry.get("name", ""))) == candidate:
                    return _Zone(candidate, str(entry.get("id") or zone_id(candidate)))
        raise ProviderError(
            f"{self.name}: no zone at PowerDNS server {self.settings.server_id!r} holds {owner}"
        )

    def _zone_info(self, zone: _Zone) -> dict[str, Any]:
        info = self._get(
            f"/zones/{zone.id}?rrsets=false", what=f"reading zone {zone.name}", zone=zone.name
        )
        if not isinstance(info, dict):
            raise ProviderError(f"{self.name}: zone {zone.name}: unexpected answer from PowerDNS")
        return info

    def _metadata(self, zone: _Zone) -> dict[str, list[str]]:
        entries = self._get(
            f"/zones/{zone.id}/metadata", what=f"reading metadata of {zone.name}", zone=zone.name
        )
        kinds: dict[str, list[str]] = {}
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                kinds[str(entry.get("kind", "")).upper()] = [
                    str(v) for v in entry.get("metadata", []) or []
                ]
        return kinds

    def dnssec_signing(self, owner: str) -> bool:
        """PowerDNS signs the zone itself: ``dnssec`` true, not PRESIGNED, an active key."""
        zone = self._zone(owner)
        if not self._zone_info(zone).get("dnssec"):
            return False
        if self._metadata(zone).get("PRESIGNED", ["0"])[:1] == ["1"]:
            return False
        keys = self._get(
            f"/zones/{zone.id}/cryptokeys", what=f"reading keys of {zone.name}", zone=zone.name
        )
        return any(isinstance(k, dict) and k.get("active") for k in keys or [])

    def _must_rectify(self, zone: _Zone) -> bool:
        """Whether this adapter rectifies after a change: a signed, not presigned zone that
        PowerDNS will not rectify itself (API-RECTIFY 0, or unset and default-api-rectify no)."""
        if not self.settings.rectify:
            return False
        if zone.id not in self._rectify:
            info = self._zone_info(zone)
            needed = False
            if info.get("dnssec") and not info.get("api_rectify"):
                meta = self._metadata(zone)
                if meta.get("PRESIGNED", ["0"])[:1] != ["1"]:
                    setting = meta.get("API-RECTIFY", [])[:1]
                    needed = setting == ["0"] or (not setting and not self._default_rectify())
            self._rectify[zone.id] = needed
        return self._rectify[zone.id]

    def _default_rectify(self) -> bool:
        """The server's ``default-api-rectify`` (yes unless set otherwise)."""
        answer = self._request("GET", "/config", what="reading the server configuration")
        if answer.status != 200 or not isinstance(answer.body, list):
            return True
        for item in answer.body:
            if isinstance(item, dict) and item.get("name") == "default-api-rectify":
                return str(item.get("value", "yes")).lower() in ("yes", "true", "1", "")
        return True

    # -- records ---------------------------------------------------------------------------
    def _current(self, zone: _Zone, owner: str) -> _Current:
        """The served TLSA records at ``owner`` (``rrset_name``/``rrset_type``: a small answer;
        PowerDNS leaves disabled records out of it)."""
        query = urllib.parse.urlencode({"rrset_name": owner, "rrset_type": "TLSA"})
        info = self._get(f"/zones/{zone.id}?{query}", what=f"reading {owner} TLSA", zone=zone.name)
        return self._parse(info, zone)[1].get(owner, _Current({}, None, (), None))

    def _whole(self, zone: _Zone) -> tuple[int | None, dict[str, _Current]]:
        """Every TLSA RRset of the zone, disabled records included: only the whole zone's
        listing has them (pdns/ws-auth.cc ``fillZone`` lists with disabled records, a lookup
        by name does not)."""
        info = self._get(f"/zones/{zone.id}", what=f"reading zone {zone.name}", zone=zone.name)
        return self._parse(info, zone)

    def _parse(self, info: Any, zone: _Zone) -> tuple[int | None, dict[str, _Current]]:
        if not isinstance(info, dict):
            raise ProviderError(f"{self.name}: zone {zone.name}: unexpected answer from PowerDNS")
        serial = info.get("serial")
        found: dict[str, _Current] = {}
        for rrset in info.get("rrsets", []) or []:
            if not isinstance(rrset, dict) or rrset.get("type") != "TLSA":
                continue
            owner = _absolute(str(rrset.get("name", "")))
            records: dict[Association, str] = {}
            disabled: list[dict[str, Any]] = []
            for record in rrset.get("records", []) or []:
                text = str(record.get("content", ""))
                if record.get("disabled"):
                    disabled.append({"content": text, "disabled": True})
                    continue
                try:
                    records[parse_association(text)] = text
                except InputError as exc:
                    raise ProviderError(
                        f"{self.name}: {owner}: unparseable TLSA content: {exc}"
                    ) from None
            ttl = int(rrset.get("ttl", 0)) if rrset.get("records") else None
            found[owner] = _Current(
                records,
                ttl,
                tuple(sorted(disabled, key=lambda r: r["content"])),
                int(serial) if isinstance(serial, int) else None,
            )
        return (int(serial) if isinstance(serial, int) else None), found

    def read(self, owner: str) -> TlsaRRset:
        owner = _absolute(owner)
        return self._current(self._zone(owner), owner).rrset(owner)

    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        return self.apply_many([change])[0]

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """Several owner names of one zone in one PATCH, which PowerDNS applies in one
        transaction; more than ``BATCH_RRSETS`` go in several PATCHes. Every RRset is checked
        against its ``before`` right before, and read back after."""
        pending = [c for c in changes if not c.is_noop]
        if not pending:
            return [Receipt(self.name, "noop", c) for c in changes]
        zones = {self._zone(c.owner).id: self._zone(c.owner) for c in pending}
        if len(zones) != 1:
            raise ProviderError(f"{self.name}: one PATCH can only touch one zone")
        (zone,) = zones.values()
        receipts: dict[int, Receipt] = {}
        for start in range(0, len(pending), BATCH_RRSETS):
            chunk = pending[start : start + BATCH_RRSETS]
            for change, receipt in zip(chunk, self._patch(zone, chunk), strict=True):
                receipts[id(change)] = receipt
        return [receipts.get(id(c), Receipt(self.name, "noop", c)) for c in changes]

    def _patch(self, zone: _Zone, changes: Sequence[Change]) -> list[Receipt]:
        owners = [_absolute(c.owner) for c in changes]
        if len(set(owners)) != len(owners):
            raise ProviderError(f"{self.name}: two changes to one owner name in one PATCH")
        rrsets: list[dict[str, Any]] = []
        kept_disabled: dict[str, tuple[dict[str, Any], ...]] = {}
        empty = _Current({}, None, (), None)
        _serial, now = self._whole(zone)
        for owner, change in zip(owners, changes, strict=True):
            current = now.get(owner, empty)
            if not _same(current.rrset(owner), change.before):
                raise ConflictError(
                    f"{self.name}: the TLSA RRset at {owner} changed since it was read; "
                    "nothing was changed, read it again"
                )
            disabled = tuple(
                r for r in current.disabled if _parsed(r["content"]) not in change.after.records
            )
            kept_disabled[owner] = disabled
            try:
                rrsets.append(self._rrset(owner, change, current, disabled))
            except ProviderError as exc:
                raise ProviderError(f"{self.name}: {owner}: {exc}") from None
        what = f"the change of {', '.join(owners)}"
        answer = self._request("PATCH", f"/zones/{zone.id}", {"rrsets": rrsets}, what=what)
        if answer.status not in (200, 204):
            raise self._fail(answer, what, zone.name)
        new_serial = answer.headers.get("x-pdns-new-serial", "")
        change_id = f"serial>={new_serial}" if new_serial.isdigit() else "read-back"
        detail = ""
        if self._must_rectify(zone):
            rectified = self._request(
                "PUT", f"/zones/{zone.id}/rectify", what=f"rectifying {zone.name}"
            )
            if rectified.status != 200:
                raise self._fail(rectified, f"rectifying {zone.name} after the change", zone.name)
            detail = "rectified"
        _serial, written = self._whole(zone)
        for owner, change in zip(owners, changes, strict=True):
            after = written.get(owner, empty)
            if not _same(after.rrset(owner), change.after) or (
                after.disabled != kept_disabled[owner]
            ):
                raise ConflictError(
                    f"{self.name}: the TLSA RRset at {owner} was written, then changed by "
                    "another writer before it could be read back; nothing was restored: "
                    "read it again"
                )
        return [Receipt(self.name, change_id, c, detail) for c in changes]

    def _rrset(
        self,
        owner: str,
        change: Change,
        current: _Current,
        disabled: tuple[dict[str, Any], ...],
    ) -> dict[str, Any]:
        if not change.after.exists and not disabled:
            return {"name": owner, "type": "TLSA", "changetype": "DELETE"}
        records = [
            {"content": current.records.get(a) or validate(a), "disabled": False}
            for a in sorted(change.after.records)
        ]
        ttl = change.after.ttl if change.after.exists else current.ttl
        if ttl is None:
            raise ProviderError("a TLSA RRset needs a TTL")
        return {
            "name": owner,
            "type": "TLSA",
            "changetype": "REPLACE",
            "ttl": int(ttl),
            "records": records + [dict(r) for r in disabled],
        }

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """In effect: the zone's serial has reached ``X-PDNS-New-Serial`` (when PowerDNS gave
        one) and the RRset reads back as intended."""
        if receipt.change_id == "noop":
            return
        owner = _absolute(receipt.change.owner)
        zone = self._zone(owner)
        target = receipt.change_id.removeprefix("serial>=")
        limit = min(timeout, self.settings.wait_timeout)
        deadline = time.monotonic() + limit
        delay = 0.2
        while True:
            current = self._current(zone, owner)
            reached = (
                not target.isdigit()
                or current.serial is None
                or _serial_reached(current.serial, int(target))
            )
            if reached:
                if _same(current.rrset(owner), receipt.change.after):
                    return
                raise ConflictError(
                    f"{self.name}: after the change the RRset at {owner} is not the intended "
                    "one (another writer?); nothing was restored"
                )
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"{self.name}: change at {owner} not in effect after {limit:g} s "
                    f"(serial {current.serial}, waiting for {target})"
                )
            self._sleep(delay)
            delay = min(delay * 1.5, 5.0)


def _same(found: TlsaRRset, wanted: TlsaRRset) -> bool:
    """The records are exactly the wanted ones, and so is the TTL where one is wanted."""
    if found.records != wanted.records:
        return False
    return not wanted.exists or wanted.ttl is None or found.ttl == wanted.ttl


def _parsed(text: str) -> Association | None:
    try:
        return parse_association(text)
    except InputError:
        return None


__all__ = [
    "PowerDNSProvider",
    "PowerDNSSettings",
    "content",
    "create",
    "parse_settings",
    "validate",
    "zone_id",
]
