"""A strict local stand-in for the Cloudflare API v4 (the parts the adapter uses), on loopback.

Started by a test in a thread (``FakeCloudflare(...).start()``), stopped by ``stop()`` (server
shutdown, socket closed, thread joined). It answers only 127.0.0.1. What it implements, and the
Cloudflare documentation each behaviour comes from:

- The envelope ``{success, errors, messages, result, result_info}`` and page-number pagination
  (``page``, ``per_page``; ``result_info`` with ``page, per_page, count, total_count,
  total_pages``): https://developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/ and
  the list endpoints' reference pages. ``per_page`` outside the documented range (zones 5..50,
  DNS records 5..5,000,000) is refused.
- ``GET /zones?name=``: https://developers.cloudflare.com/api/resources/zones/methods/list/ .
  A token sees only the zones it holds "Zone Read" for (tokens are scoped to zones:
  https://developers.cloudflare.com/fundamentals/api/reference/permissions/); others are left
  out of the list, as if they did not exist.
- ``GET /zones/{id}/dns_records?name.exact=&type=`` (DNS Read or DNS Write):
  https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/ .
  TLSA records are individual records whose ``data`` is ``{usage, selector, matching_type,
  certificate}``; ``content`` is the formatted form. The certificate comes back upper-case
  (what the real API returns, kubernetes-sigs/external-dns PR 6616), so a client must compare
  parsed data, never strings.
- ``POST /zones/{id}/dns_records/batch`` (DNS Write): deletes, patches, puts, posts, executed in
  that order in one database transaction: any failing operation fails all and nothing changes
  (https://developers.cloudflare.com/dns/manage-dns-records/how-to/batch-record-changes/ and
  the batch method's reference page). At most 200 operations per batch (the Free plan's limit,
  same page). An identical record (same name, type and data) is refused with 81058 ("An
  identical record already exists."), a delete or patch of an unknown id with 81044 ("Record
  does not exist.") - codes as the real service answers them in public reports.
- TTL: 1 means automatic, else 60..86400 (30..86400 on an Enterprise zone): the ``ttl`` field's
  reference text and https://developers.cloudflare.com/dns/manage-dns-records/reference/ttl/ ;
  refused with 9021 ("TTL must be between 60 and 86400 seconds, or 1 for Automatic.").
- TLSA data validated: usage 0..3, selector 0..1, matching_type 0..2 (RFC 6698 section 7), the
  certificate a non-empty even-length hex string (of 32/64 bytes for matching types 1/2);
  missing fields as "usage is a required data field." (400, code 1004 "DNS Validation Error"
  with the detail in ``error_chain``; external-dns PR 6616 quotes these messages).
- ``GET /zones/{id}/dnssec`` (DNS Read or DNS Write): ``status`` one of active, pending,
  disabled, pending-disabled, error:
  https://developers.cloudflare.com/api/resources/dns/subresources/dnssec/methods/get/ .
- Authentication: ``Authorization: Bearer <token>`` only
  (https://developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/). A missing or
  malformed header: 400, 6003 "Invalid request headers" with 6111 "Invalid format for
  Authorization header" in ``error_chain``; an unknown token: 403, 9109 "Invalid access
  token"; a token without the permission an endpoint accepts: 403, 10000 "Authentication
  error" (codes as reported publicly: cert-manager PR 4465, favonia/cloudflare-ddns issue 897).
  An unknown zone id: 400, 7003 "Could not route to ..., perhaps your object identifier is
  invalid?" and 7000 "No route for that URI" (cloudflare/cloudflare-go issue 118).
- Rate limits: 1,200 requests per five minutes per user, then every call is refused with 429
  for the rest of the window, with ``retry-after`` in seconds
  (https://developers.cloudflare.com/fundamentals/api/reference/limits/). ``limit(count,
  window)`` sets a smaller budget for tests.

Fault injection for tests: ``inject(kind, action, times)`` where kind is ``zones``,
``records``, ``batch``, ``dnssec`` or ``any`` and action one of ``429`` (with
``retry_after``), ``500``, ``drop`` (the connection closed before anything is done),
``drop-after`` (a batch applied, then the connection closed: the reply is lost), ``delay:S``
(answer after S seconds: a client timeout); and ``before_batch(fn)``: ``fn(fake)`` runs once
just before the next batch is applied (another writer's edit between the client's read and its
write). ``edit_*`` methods change records directly, as the dashboard or another tool would.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/client/v4"
ZONE_READ = "Zone Read"
DNS_READ = "DNS Read"
DNS_WRITE = "DNS Write"
ALL = frozenset({ZONE_READ, DNS_READ, DNS_WRITE})
BATCH_LIMIT = 200
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{40}$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
DIGEST = {1: 32, 2: 64}


def new_token() -> str:
    return secrets.token_urlsafe(30)[:40]


@dataclass
class Token:
    permissions: frozenset[str] = ALL
    zones: frozenset[str] | None = None  # zone names it applies to; None: all zones

    def allows(self, zone: Zone, *accepted: str) -> bool:
        if self.zones is not None and zone.name not in self.zones:
            return False
        return any(p in self.permissions for p in accepted)


@dataclass
class Zone:
    id: str
    name: str
    status: str = "active"
    dnssec: str = "active"
    min_ttl: int = 60  # 30 on an Enterprise zone
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    action: str
    times: int


class RefusedError(Exception):
    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors


def _error(code: int, message: str, chain: list[tuple[int, str]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "message": message}
    if chain:
        entry["error_chain"] = [{"code": c, "message": m} for c, m in chain]
    return entry


def _validation(message: str) -> RefusedError:
    return RefusedError(400, [_error(1004, "DNS Validation Error", [(9101, message)])])


class FakeCloudflare:
    """The API's state (tokens, zones, records) behind a loopback HTTP server."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.zones: dict[str, Zone] = {}
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.retry_after = 1
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.batches: list[tuple[float, dict[str, Any]]] = []  # applied batches, with time
        self._hooks: list[Callable[[FakeCloudflare], object]] = []
        self._budget: tuple[int, float] | None = None
        self._window: list[float] = []
        self._blocked_until = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------
    def add_token(
        self, permissions: frozenset[str] = ALL, zones: frozenset[str] | None = None
    ) -> str:
        token = new_token()
        self.tokens[token] = Token(frozenset(permissions), zones)
        return token

    def add_zone(self, name: str, **kwargs: Any) -> Zone:
        zone = Zone(secrets.token_hex(16), name.rstrip(".").lower(), **kwargs)
        self.zones[zone.id] = zone
        return zone

    def zone(self, name: str) -> Zone:
        return next(z for z in self.zones.values() if z.name == name.rstrip(".").lower())

    def limit(self, count: int, window: float) -> None:
        """At most ``count`` requests per ``window`` seconds, then 429 for a whole window."""
        self._budget = (count, window)
        self._window = []
        self._blocked_until = 0.0

    def inject(self, kind: str, action: str, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(kind, action, times))

    def before_batch(self, hook: Callable[[FakeCloudflare], object]) -> None:
        with self.lock:
            self._hooks.append(hook)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self._hooks.clear()

    def pending(self) -> int:
        with self.lock:
            return sum(f.times for f in self.faults) + len(self._hooks)

    # -- direct edits (the dashboard, another tool) ---------------------------------------
    def edit_add(
        self, zone: str, name: str, rdata: str, ttl: int = 300, comment: str | None = None
    ) -> str:
        usage, selector, mtype, cert = rdata.split()
        with self.lock:
            z = self.zone(zone)
            record = self._record(
                z,
                {
                    "name": name,
                    "type": "TLSA",
                    "ttl": ttl,
                    "comment": comment,
                    "data": {
                        "usage": int(usage),
                        "selector": int(selector),
                        "matching_type": int(mtype),
                        "certificate": cert,
                    },
                },
            )
            self._check_identical(z, record, z.records)
            z.records[record["id"]] = record
            return str(record["id"])

    def edit_delete(self, zone: str, name: str, certificate_hex: str | None = None) -> int:
        """Delete the TLSA records at ``name`` (those with this certificate data, if given)."""
        with self.lock:
            z = self.zone(zone)
            doomed = [
                rid
                for rid, r in z.records.items()
                if r["name"] == name.rstrip(".").lower()
                and (
                    certificate_hex is None
                    or r["data"]["certificate"].lower() == certificate_hex.lower()
                )
            ]
            for rid in doomed:
                del z.records[rid]
            return len(doomed)

    def tlsa(self, zone: str, name: str) -> list[dict[str, Any]]:
        with self.lock:
            z = self.zone(zone)
            return [_public(r) for r in z.records.values() if r["name"] == name.rstrip(".").lower()]

    # -- server ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{PREFIX}"

    def start(self) -> FakeCloudflare:
        fake = self

        class Handler(_Handler):
            api = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    # -- request handling -----------------------------------------------------------------
    def _take_fault(self, kind: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind in (kind, "any") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault.action
        return None

    def _rate_limited(self) -> int | None:
        """Seconds until the block ends, or None when the request may go through."""
        if self._budget is None:
            return None
        count, window = self._budget
        now = time.monotonic()
        with self.lock:
            if now < self._blocked_until:
                return max(1, int(self._blocked_until - now + 0.999))
            self._window = [t for t in self._window if t > now - window]
            if len(self._window) >= count:
                self._blocked_until = now + window
                return max(1, int(window + 0.999))
            self._window.append(now)
        return None

    def _authenticate(self, headers: dict[str, str]) -> Token:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme != "Bearer" or not _TOKEN.match(token):
            raise RefusedError(
                400,
                [
                    _error(
                        6003,
                        "Invalid request headers",
                        [(6111, "Invalid format for Authorization header")],
                    )
                ],
            )
        found = self.tokens.get(token)
        if found is None:
            raise RefusedError(403, [_error(9109, "Invalid access token")])
        return found

    def _zone_for(self, token: Token, zone_id: str, path: str, *accepted: str) -> Zone:
        zone = self.zones.get(zone_id)
        if zone is None:
            raise RefusedError(
                400,
                [
                    _error(
                        7003,
                        f"Could not route to {PREFIX}{path}, perhaps your object "
                        "identifier is invalid?",
                    ),
                    _error(7000, "No route for that URI"),
                ],
            )
        if not token.allows(zone, *accepted):
            raise RefusedError(403, [_error(10000, "Authentication error")])
        return zone

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        split = urlsplit(target)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        if not path.startswith(PREFIX):
            raise RefusedError(404, [_error(7000, "No route for that URI")])
        path = path[len(PREFIX) :]
        wait = self._rate_limited()
        if wait is not None:
            raise _ThrottledError(wait)
        token = self._authenticate(headers)
        parts = [p for p in path.split("/") if p]
        if method == "GET" and parts == ["zones"]:
            return self._list_zones(token, query)
        if len(parts) >= 3 and parts[0] == "zones":
            zone_id = parts[1]
            if method == "GET" and parts[2:] == ["dns_records"]:
                zone = self._zone_for(token, zone_id, path, DNS_READ, DNS_WRITE)
                return self._list_records(zone, query)
            if method == "POST" and parts[2:] == ["dns_records", "batch"]:
                zone = self._zone_for(token, zone_id, path, DNS_WRITE)
                return self._batch(zone, body)
            if method == "GET" and parts[2:] == ["dnssec"]:
                zone = self._zone_for(token, zone_id, path, DNS_READ, DNS_WRITE)
                return 200, {}, _envelope(self._dnssec(zone))
            self._zone_for(token, zone_id, path)
        raise RefusedError(
            400,
            [
                _error(
                    7003,
                    f"Could not route to {PREFIX}{path}, perhaps your object identifier "
                    "is invalid?",
                ),
                _error(7000, "No route for that URI"),
            ],
        )

    def _page(
        self, items: list[dict[str, Any]], query: dict[str, str], default: int, high: int
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", str(default)))
        except ValueError:
            raise _validation("page and per_page must be integers") from None
        if page < 1 or not 5 <= per_page <= high:
            raise RefusedError(
                400, [_error(1004, f"per_page must be between 5 and {high}, page at least 1")]
            )
        total = len(items)
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": total,
            "total_pages": max(1, -(-total // per_page)),
        }
        return 200, {}, _envelope(chunk, info)

    def _list_zones(
        self, token: Token, query: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        name = query.get("name")
        with self.lock:
            zones = [
                {
                    "id": z.id,
                    "name": z.name,
                    "status": z.status,
                    "paused": False,
                    "type": "full",
                    "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                }
                for z in sorted(self.zones.values(), key=lambda z: (z.name, z.id))
                if token.allows(z, ZONE_READ) and (name is None or z.name == name.lower())
            ]
        return self._page(zones, query, 20, 50)

    def _list_records(
        self, zone: Zone, query: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        name = query.get("name.exact", query.get("name"))
        kind = query.get("type")
        with self.lock:
            found = [
                _public(r)
                for r in sorted(zone.records.values(), key=lambda r: r["created_on"])
                if (name is None or r["name"] == name.lower().rstrip("."))
                and (kind is None or r["type"] == kind)
            ]
        return self._page(found, query, 100, 5_000_000)

    def _dnssec(self, zone: Zone) -> dict[str, Any]:
        active = zone.dnssec == "active"
        return {
            "status": zone.dnssec,
            "algorithm": "13" if active else None,
            "digest_type": "2" if active else None,
            "flags": 257 if active else None,
            "key_tag": 2371 if active else None,
            "modified_on": "2026-01-01T00:00:00Z",
        }

    # -- the batch: one transaction ------------------------------------------------------
    def _batch(self, zone: Zone, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise RefusedError(400, [_error(1012, "Request must be valid JSON")]) from None
        if not isinstance(request, dict) or set(request) - {"deletes", "patches", "puts", "posts"}:
            raise _validation("the batch body takes deletes, patches, puts and posts")
        ops = {k: request.get(k) or [] for k in ("deletes", "patches", "puts", "posts")}
        if not all(isinstance(v, list) for v in ops.values()):
            raise _validation("deletes, patches, puts and posts must be lists")
        if sum(len(v) for v in ops.values()) > BATCH_LIMIT:
            raise RefusedError(
                400, [_error(81068, f"a batch can hold at most {BATCH_LIMIT} operations")]
            )
        with self.lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook(self)
        with self.lock:
            work = {rid: dict(r) for rid, r in zone.records.items()}
            result: dict[str, list[dict[str, Any]]] = {
                "deletes": [],
                "patches": [],
                "puts": [],
                "posts": [],
            }
            for op in ops["deletes"]:
                rid = op.get("id") if isinstance(op, dict) else None
                if rid not in work:
                    raise RefusedError(400, [_error(81044, "Record does not exist.")])
                result["deletes"].append({"id": rid})
                del work[rid]
            for key in ("patches", "puts"):
                for op in ops[key]:
                    rid = op.get("id") if isinstance(op, dict) else None
                    if rid not in work:
                        raise RefusedError(400, [_error(81044, "Record does not exist.")])
                    base = dict(work[rid]) if key == "patches" else {"id": rid}
                    merged = {**base, **{k: v for k, v in op.items() if k != "id"}}
                    if key == "patches" and "data" in op:
                        merged["data"] = {**work[rid]["data"], **op["data"]}
                    record = self._record(zone, merged, rid, work[rid]["created_on"])
                    others = {k: v for k, v in work.items() if k != rid}
                    self._check_identical(zone, record, others)
                    work[rid] = record
                    result[key].append(_public(record))
            for op in ops["posts"]:
                if not isinstance(op, dict):
                    raise _validation("each post must be an object")
                record = self._record(zone, op)
                self._check_identical(zone, record, work)
                work[record["id"]] = record
                result["posts"].append(_public(record))
            zone.records = work  # the transaction commits: everything, or (raised) nothing
            self.batches.append((time.time(), request))
        return 200, {}, _envelope(result)

    def _record(
        self,
        zone: Zone,
        fields: dict[str, Any],
        rid: str | None = None,
        created: str | None = None,
    ) -> dict[str, Any]:
        """A validated TLSA record as stored; RefusedError as Cloudflare refuses a bad one."""
        allowed = {"name", "type", "ttl", "data", "comment", "tags", "proxied", "content"}
        unknown = (
            set(fields)
            - allowed
            - {
                "id",
                "created_on",
                "modified_on",
                "meta",
                "proxiable",
                "settings",
                "zone_id",
                "zone_name",
            }
        )
        if unknown:
            raise _validation(f"unknown field {sorted(unknown)[0]}")
        if fields.get("type") != "TLSA":
            raise _validation("this fake stores TLSA records only")
        name = fields.get("name")
        if not isinstance(name, str) or not name:
            raise _validation("name is required")
        name = name.lower().rstrip(".")
        if not (name == zone.name or name.endswith("." + zone.name)):
            raise RefusedError(400, [_error(9007, f"{name} is not in zone {zone.name}")])
        ttl = fields.get("ttl", 1)
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or (ttl != 1 and not zone.min_ttl <= ttl <= 86400)
        ):
            raise RefusedError(
                400,
                [
                    _error(
                        9021,
                        f"TTL must be between {zone.min_ttl} and 86400 seconds, "
                        "or 1 for Automatic.",
                    )
                ],
            )
        if fields.get("proxied"):
            raise _validation("TLSA records cannot be proxied")
        data = fields.get("data")
        if "content" in fields and fields.get("data") is None:
            # The API refuses a content string for TLSA: the structured data is required.
            data = {}
        if not isinstance(data, dict):
            raise _validation("data is required for TLSA records")
        for key in ("usage", "selector", "matching_type", "certificate"):
            if data.get(key) is None:
                raise _validation(f"{key} is a required data field.")
        usage, selector, mtype = data["usage"], data["selector"], data["matching_type"]
        for key, value, high in (
            ("usage", usage, 3),
            ("selector", selector, 1),
            ("matching_type", mtype, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise _validation(f"{key} must be an integer between 0 and {high}")
        cert = data["certificate"]
        if not isinstance(cert, str) or not _HEX.match(cert) or len(cert) % 2:
            raise _validation("certificate must be a hexadecimal string of whole bytes")
        if mtype in DIGEST and len(cert) != 2 * DIGEST[mtype]:
            raise _validation(
                f"certificate must be {DIGEST[mtype]} bytes for matching type {mtype}"
            )
        comment = fields.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 100):
            raise _validation("comment must be a string of at most 100 characters")
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
        return {
            "id": rid or secrets.token_hex(16),
            "zone_id": zone.id,
            "zone_name": zone.name,
            "name": name,
            "type": "TLSA",
            "ttl": ttl,
            "data": {
                "usage": usage,
                "selector": selector,
                "matching_type": mtype,
                "certificate": cert.upper(),
            },
            "comment": comment,
            "tags": [],
            "proxiable": False,
            "proxied": False,
            "settings": {},
            "meta": {},
            "created_on": created or now,
            "modified_on": now,
        }

    @staticmethod
    def _check_identical(
        zone: Zone, record: dict[str, Any], others: dict[str, dict[str, Any]]
    ) -> None:
        del zone
        for other in others.values():
            if (
                other["id"] != record["id"]
                and other["name"] == record["name"]
                and other["type"] == record["type"]
                and other["data"] == record["data"]
            ):
                raise RefusedError(400, [_error(81058, "An identical record already exists.")])


def _public(record: dict[str, Any]) -> dict[str, Any]:
    data = record["data"]
    content = f"{data['usage']} {data['selector']} {data['matching_type']} {data['certificate']}"
    return {**record, "content": content}


def _envelope(result: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


class _ThrottledError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class _Handler(BaseHTTPRequestHandler):
    api: FakeCloudflare
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK cost 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        kind = _kind(self.command, self.path)
        with self.api.lock:
            self.api.requests.append((self.command, urlsplit(self.path).path, headers))
        fault = self.api._take_fault(kind)
        if fault == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.startswith("delay:"):
            time.sleep(float(fault.split(":", 1)[1]))
        try:
            if fault == "429":
                raise _ThrottledError(self.api.retry_after)
            if fault == "500":
                raise RefusedError(500, [_error(10001, "Internal server error")])
            status, extra, payload = self.api.handle(self.command, self.path, headers, body)
        except _ThrottledError as exc:
            status, extra = 429, {"retry-after": str(exc.retry_after)}
            payload = {
                "success": False,
                "errors": [_error(971, "Please wait and consider throttling your request speed")],
                "messages": [],
                "result": None,
            }
        except RefusedError as exc:
            status, extra = exc.status, {}
            payload = {"success": False, "errors": exc.errors, "messages": [], "result": None}
        if fault == "drop-after":
            self.close_connection = True
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()


def _kind(method: str, target: str) -> str:
    path = urlsplit(target).path
    if path.endswith("/dns_records/batch"):
        return "batch"
    if path.endswith("/dns_records"):
        return "records"
    if path.endswith("/dnssec"):
        return "dnssec"
    if path.endswith("/zones"):
        return "zones"
    return method.lower()
