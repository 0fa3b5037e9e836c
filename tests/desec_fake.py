"""A strict local deSEC API (``/api/v1``) on 127.0.0.1, in a thread of the test process.

deSEC cannot run here, so this implements the part of its API the adapter uses, as deSEC
documents and implements it (docs: https://desec.readthedocs.io, source: github.com/desec-io/
desec-stack at d7ccaf7, ``docs/`` and ``api/desecapi/``), refusing what deSEC refuses:

- **Auth** (``docs/auth/tokens.rst``, ``desecapi/authentication.py``: DRF TokenAuthentication):
  ``Authorization: Token <secret>``; no header -> 401 "Authentication credentials were not
  provided."; unknown token -> 401 "Invalid token." with ``WWW-Authenticate: Token``. A token
  whose scoping policy denies writing a domain -> 403 "Insufficient token permissions."
  (``permissions.TokenHasRRsetPermission``, raised by ``validators.PermissionValidator``).
- **Domains** (``docs/dns/domains.rst``): ``GET /domains/`` (keys omitted; ``?owns_qname=``:
  the longest-suffix domain or ``[]``), ``GET /domains/{name}/`` with ``keys`` (``dnskey``,
  ``ds`` with digest types 2 and 4, ``managed``) and ``minimum_ttl``; a domain not owned -> 404
  "Not found.".
- **RRsets** (``docs/dns/rrsets.rst``): ``GET .../rrsets/`` (``type``/``subname`` filters;
  DNSSEC types refused with 403 "You cannot tinker with the X RRset."; more than ``page_size``
  results need ``cursor=``, else 400 "Pagination required..." with a ``Link`` header, as
  ``desecapi/pagination.py``), ``GET .../rrsets/{subname}/{type}/`` (``@`` and the ``...``
  suffix for the apex; 404 when absent), bulk ``POST`` (new RRsets only: "Another RRset with
  the same subdomain and type exists for this domain. (Try modifying it.)"), bulk ``PATCH`` and
  ``PUT`` (``records: []`` deletes), each bulk request validated whole and applied atomically or
  not at all ("Atomicity"), errors as a list with ``{}`` for the good items ("Input
  validation"). Single-RRset writes at the detail endpoint are not implemented (405): the
  adapter sends bulk requests only.
- **Validation** (``desecapi/serializers/records.py``, ``models/records.py``): ``ttl`` an integer
  in ``minimum_ttl``..86400 (Django's "Ensure this value is greater than or equal to N." /
  "less than or equal to 86400."); ``type`` uppercase and manageable ("The tlsa RR set type is
  currently unsupported.", "You cannot tinker with the SOA RR set. It is managed
  automatically."); records strings; TLSA content parsed the way deSEC's dnspython 2.8 does
  (three 8-bit integers, then hex: odd or non-hex -> "Cannot parse hexadecimal or base64
  record contents"; no digest-length check, as 2.8 has none) and canonicalized to lowercase hex
  without spaces; duplicates "Duplicate: records must be semantically unique"; the same RRset
  twice in one request "Same subname and type as in position(s) N, but must be unique."; CNAME
  exclusivity ("RRset with conflicting type present at same subname: database (CNAME). (No
  other RRsets are allowed alongside CNAME.)", rrsets.rst "CNAME record").
  Other types are stored as given (foreign records only).
- **Throttling** (``docs/rate-limits.rst``; ``api/api/settings.py`` DEFAULT_THROTTLE_RATES;
  ``desecapi/throttling.py`` ScopedRatesThrottle): sliding windows, every rate of a scope
  enforced at once; reads ``dns_api_cheap`` 10/s, 50/min per account; RRset writes
  ``dns_api_per_domain_expensive`` 2/s, 15/min, 100/h, 300/d per domain; ``user`` 2000/d.
  Each token is an account of its own here.
  Checked after authentication and the domain's existence, before validation (DRF's
  ``APIView.initial``), so a rejected write still counts. Throttled: 429, ``Retry-After``
  (whole seconds, DRF's ``Throttled``), body "Request was throttled. Expected available in N
  seconds."; a throttled request is not counted. Rates and the clock are configurable.
- **Faults** for the tests: a foreign edit after a read or just after a write (either counted
  only when deSEC answered it, not throttled), or just before a write; an
  injected answer (status, body, headers: deSEC's 429 "Too many concurrent requests." carries no
  ``Retry-After``, ``exceptions.ConcurrencyException``); the connection dropped before or after
  applying; a delay longer than the client's timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

BASE = "/api/v1"
MAX_TTL = 86400
AUTOMATIC = {"DNSKEY", "DS", "CDNSKEY", "CDS", "NSEC3PARAM", "RRSIG"}
UNMANAGEABLE = {"SOA", "RRSIG", "NSEC3PARAM", "NSEC", "NSEC3", "OPT", "TSIG"}
MANAGEABLE = {
    "A", "AAAA", "AFSDB", "APL", "CAA", "CDNSKEY", "CDS", "CERT", "CNAME", "DHCID", "DNAME",
    "DNSKEY", "DLV", "DS", "EUI48", "EUI64", "HINFO", "HTTPS", "KX", "L32", "L64", "LOC", "LP",
    "MX", "NAPTR", "NID", "NS", "OPENPGPKEY", "PTR", "RP", "SMIMEA", "SPF", "SRV", "SSHFP",
    "SVCB", "TLSA", "TXT", "URI",
}  # fmt: skip
DESEC_RATES: dict[str, list[tuple[int, float]]] = {
    "dns_api_cheap": [(10, 1), (50, 60)],
    "dns_api_per_domain_expensive": [(2, 1), (15, 60), (100, 3600), (300, 86400)],
    "user": [(2000, 86400)],
}


@dataclass
class FakeDomain:
    name: str
    minimum_ttl: int = 3600
    keys: list[dict[str, Any]] = field(default_factory=list)
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    published: str = ""


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    at: float


@dataclass
class Fault:
    kind: str  # edit | status | drop | delay
    method: str | None = None  # GET, POST, PATCH, PUT; None: any
    when: str = "before"  # edit: after-read | before-write | after-write; drop: before | after
    times: int = 1
    skip: int = 0  # matching requests to let through first
    domain: str | None = None
    subname: str | None = None
    ttl: int | None = None
    records: list[str] | None = None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class Reject(Exception):  # noqa: N818 (an answer, not a failure)
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_keys(domain: str) -> list[dict[str, Any]]:
    """One managed CSK, as deSEC shows it: DNSKEY 257 3 13, DS digest types 2 and 4."""
    public = base64.b64encode(os.urandom(64)).decode()
    text = f"257 3 13 {public}"
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
    name = dns.name.from_text(domain)
    ds = [dns.dnssec.make_ds(name, rdata, alg).to_text() for alg in ("SHA256", "SHA384")]
    return [{"dnskey": text, "ds": ds, "flags": 257, "keytype": "csk", "managed": True}]


def tlsa_canonical(content: str) -> str:
    """deSEC's ``RR.canonical_presentation_format`` for TLSA with dnspython 2.8: errors worded
    as deSEC words them."""
    tokens = content.split()
    numbers = []
    for token in tokens[:3]:
        if not token.isdigit():
            raise ValueError("Record content for type TLSA malformed: expecting an integer")
        if int(token) > 255:
            raise ValueError(
                f"Record content for type TLSA malformed: {int(token)} is not an unsigned "
                "8-bit integer"
            )
        numbers.append(int(token))
    if len(numbers) < 3:
        raise ValueError("Record content for type TLSA malformed: expecting an integer")
    rest = "".join(tokens[3:])
    if not rest:
        raise ValueError("Record content for type TLSA malformed: expecting another identifier")
    try:
        data = binascii.unhexlify(rest.encode())
    except (binascii.Error, ValueError):
        raise ValueError("Cannot parse hexadecimal or base64 record contents") from None
    return f"{numbers[0]} {numbers[1]} {numbers[2]} {data.hex()}"


class DesecFake:
    """The fake service; ``start()`` serves it, ``stop()`` shuts it down and joins the thread."""

    def __init__(
        self,
        *,
        rates: dict[str, list[tuple[int, float]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        page_size: int = 500,
    ) -> None:
        self.rates = {k: list(v) for k, v in (DESEC_RATES if rates is None else rates).items()}
        self.clock = clock
        self.page_size = page_size
        self.domains: dict[str, FakeDomain] = {}
        self.tokens: dict[str, set[str] | None] = {}  # secret -> writable domains (None: all)
        self.log: list[Logged] = []
        self.faults: list[Fault] = []
        self._history: dict[tuple[str, str, str, float], list[float]] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up and inspection ---------------------------------------------------------------
    def add_domain(self, name: str, minimum_ttl: int = 3600, *, keys: bool = True) -> FakeDomain:
        stamp = now_iso()
        domain = FakeDomain(name, minimum_ttl, make_keys(name) if keys else [], {}, stamp, stamp)
        with self._lock:
            self.domains[name] = domain
        return domain

    def add_token(self, secret: str, writable: set[str] | None = None) -> None:
        self.tokens[secret] = writable

    def set_rrset(
        self, domain: str, subname: str, ttl: int, records: list[str], rrtype: str = "TLSA"
    ) -> None:
        """Another party's edit (through deSEC's web interface, say): no validation here."""
        with self._lock:
            zone = self.domains[domain]
            if not records:
                zone.rrsets.pop((subname, rrtype), None)
                return
            stamp = now_iso()
            old = zone.rrsets.get((subname, rrtype), {})
            zone.rrsets[(subname, rrtype)] = {
                "ttl": ttl,
                "records": list(records),
                "created": old.get("created", stamp),
                "touched": stamp,
            }

    def rrset(self, domain: str, subname: str, rrtype: str = "TLSA") -> tuple[int, set[str]] | None:
        with self._lock:
            found = self.domains[domain].rrsets.get((subname, rrtype))
            return None if found is None else (found["ttl"], set(found["records"]))

    def writes(self, domain: str | None = None) -> list[Logged]:
        """Write requests that reached the RRset endpoints (any answer)."""
        return [
            e
            for e in self.log
            if e.method != "GET"
            and "/rrsets/" in e.path
            and (domain is None or f"/domains/{domain}/" in e.path)
        ]

    def applied(self, domain: str | None = None) -> list[Logged]:
        return [e for e in self.writes(domain) if 200 <= e.status < 300]

    def inject(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def pending(self) -> int:
        with self._lock:
            return sum(f.times for f in self.faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    # -- serving -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{BASE}"

    def start(self) -> DesecFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                fake._handle(self)

            def do_POST(self) -> None:
                fake._handle(self)

            def do_PATCH(self) -> None:
                fake._handle(self)

            def do_PUT(self) -> None:
                fake._handle(self)

            def do_DELETE(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> DesecFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        method = request.command
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = ValueError
        fault = self._match(method, path)
        if fault is not None and not (fault.kind == "edit" and fault.when != "before-write"):
            fault = fault if self._consume(fault) else None
        if fault is not None and fault.kind == "delay":
            self._stopping.wait(fault.seconds)
        if fault is not None and fault.kind == "drop" and fault.when == "before":
            self._record(method, path, query, payload, 0)
            request.close_connection = True
            return
        headers: dict[str, str] = {}
        with self._lock:
            if fault is not None and fault.kind == "status":
                status, body, headers = fault.status, fault.body, dict(fault.headers)
            else:
                if fault is not None and fault.kind == "edit" and fault.when == "before-write":
                    self._apply_edit(fault)
                try:
                    status, body, headers = self._route(request, method, path, query, payload)
                except Reject as exc:
                    status, body, headers = exc.status, exc.body, exc.headers
                # after a read or a write that deSEC answered (a throttled one is none)
                after = fault is not None and fault.kind == "edit" and fault.when != "before-write"
                if after and fault is not None and 200 <= status < 300 and self._consume(fault):
                    self._apply_edit(fault)
            self._record(method, path, query, payload, status)
        if fault is not None and fault.kind == "drop":
            request.close_connection = True
            return
        data = b"" if body is None else json.dumps(body).encode()
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        if data:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _record(self, method: str, path: str, query: Any, payload: Any, status: int) -> None:
        body = None if payload is ValueError else payload
        self.log.append(Logged(method, path, query, body, status, self.clock()))

    def _match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times <= 0:
                    continue
                if fault.method is not None and fault.method != method:
                    continue
                if fault.kind == "edit":
                    reading = fault.when == "after-read"
                    if reading != (method == "GET") or "/rrsets/" not in path:
                        continue
                    if fault.domain is not None and f"/domains/{fault.domain}/" not in path:
                        continue
                return fault
        return None

    def _consume(self, fault: Fault) -> bool:
        """True when ``fault`` fires now (its ``skip`` spent); used up after ``times``."""
        with self._lock:
            if fault.skip > 0:
                fault.skip -= 1
                return False
            fault.times -= 1
            self.faults = [f for f in self.faults if f.times > 0]
            return True

    def _apply_edit(self, fault: Fault) -> None:
        assert fault.domain is not None
        assert fault.subname is not None
        self.set_rrset(fault.domain, fault.subname, fault.ttl or 3600, fault.records or [])

    # -- the API -----------------------------------------------------------------------------
    def _route(
        self,
        request: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        payload: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        if not path.startswith(BASE + "/"):
            raise Reject(404, {"detail": "Not found."})
        account, writable = self._authenticate(request.headers.get("Authorization"))
        parts = [p for p in path[len(BASE) :].split("/") if p]
        if parts == ["domains"] and method == "GET":
            self._throttle("dns_api_cheap", "", account)
            return 200, self._list_domains(query), {}
        if len(parts) < 2 or parts[0] != "domains":
            raise Reject(404, {"detail": "Not found."})
        domain = self.domains.get(parts[1])
        if domain is None:
            raise Reject(404, {"detail": "Not found."})
        if len(parts) == 2:
            if method != "GET":
                raise Reject(405, {"detail": f'Method "{method}" not allowed.'})
            self._throttle("dns_api_cheap", "", account)
            return 200, self._domain_json(domain, keys=True), {}
        if parts[2] != "rrsets" or len(parts) not in (3, 5):
            raise Reject(404, {"detail": "Not found."})
        if method == "GET":
            self._throttle("dns_api_cheap", "", account)
            if len(parts) == 5:
                return 200, self._get_rrset(domain, parts[3], parts[4]), {}
            return self._list_rrsets(domain, query)
        if len(parts) == 5:
            raise Reject(405, {"detail": f'Method "{method}" not allowed.'})
        if method not in ("POST", "PATCH", "PUT"):
            raise Reject(405, {"detail": f'Method "{method}" not allowed.'})
        self._throttle("dns_api_per_domain_expensive", domain.name, account)
        if payload is ValueError:
            raise Reject(400, {"detail": "JSON parse error"})
        return self._write(domain, method, payload, writable)

    def _authenticate(self, header: str | None) -> tuple[str, set[str] | None]:
        """(the account, the domains it may write); each token is an account of its own."""
        if not header:
            raise Reject(
                401,
                {"detail": "Authentication credentials were not provided."},
                {"WWW-Authenticate": "Token"},
            )
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "token" or secret.strip() not in self.tokens:
            raise Reject(401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Token"})
        return secret.strip(), self.tokens[secret.strip()]

    def _throttle(self, scope: str, bucket: str, account: str) -> None:
        """DRF's sliding windows (ScopedRatesThrottle), then the ``user`` rate, per account;
        429 with the longest wait of those that failed."""
        now = self.clock()
        waits = []
        for name, key in ((scope, bucket), ("user", "")):
            rates = self.rates.get(name, [])
            histories = []
            failed = False
            for number, duration in rates:
                history = self._history.setdefault((account, name, key, duration), [])
                while history and history[-1] <= now - duration:
                    history.pop()
                if len(history) >= number:
                    waits.append(duration - (now - history[-1]))
                    failed = True
                    break
                histories.append(history)
            if not failed:
                for history in histories:
                    history.insert(0, now)
        if waits:
            wait = math.ceil(max(waits))
            unit = "second" if wait == 1 else "seconds"
            raise Reject(
                429,
                {"detail": f"Request was throttled. Expected available in {wait} {unit}."},
                {"Retry-After": f"{wait:d}"},
            )

    def _list_domains(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        names = sorted(self.domains)
        if "owns_qname" in query:
            qname = query["owns_qname"][0].rstrip(".").lower()
            covering = [n for n in names if qname == n or qname.endswith("." + n)]
            names = sorted(covering, key=len, reverse=True)[:1]
        return [self._domain_json(self.domains[n], keys=False) for n in names]

    @staticmethod
    def _domain_json(domain: FakeDomain, *, keys: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "created": domain.created,
            "minimum_ttl": domain.minimum_ttl,
            "name": domain.name,
            "published": domain.published,
            "touched": domain.published,
        }
        if keys:
            body["keys"] = domain.keys
        return body

    @staticmethod
    def _rrset_json(domain: FakeDomain, key: tuple[str, str]) -> dict[str, Any]:
        subname, rrtype = key
        data = domain.rrsets[key]
        return {
            "created": data["created"],
            "domain": domain.name,
            "subname": subname,
            "name": f"{subname}.{domain.name}." if subname else f"{domain.name}.",
            "records": list(data["records"]),
            "ttl": data["ttl"],
            "type": rrtype,
            "touched": data["touched"],
        }

    def _get_rrset(self, domain: FakeDomain, subname: str, rrtype: str) -> dict[str, Any]:
        if subname == "@":
            subname = ""
        elif subname.endswith("..."):
            subname = subname[:-3].rstrip(".")
        if (subname, rrtype) not in domain.rrsets:
            raise Reject(404, {"detail": "Not found."})
        return self._rrset_json(domain, (subname, rrtype))

    def _list_rrsets(
        self, domain: FakeDomain, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        keys = sorted(domain.rrsets)
        if "type" in query:
            wanted = query["type"][0]
            if wanted in AUTOMATIC:
                raise Reject(403, {"detail": f"You cannot tinker with the {wanted} RRset."})
            keys = [k for k in keys if k[1] == wanted]
        if "subname" in query:
            keys = [k for k in keys if k[0] == query["subname"][0]]
        items = [self._rrset_json(domain, k) for k in keys]
        if len(items) <= self.page_size:
            return 200, items, {}
        plain = {k: v[0] for k, v in query.items() if k != "cursor"}
        link = f"{BASE}/domains/{domain.name}/rrsets/?"
        first = f'<http://127.0.0.1{link}{urlencode({**plain, "cursor": ""})}>; rel="first"'
        if "cursor" not in query:
            detail = (
                f"Pagination required. You can query up to {self.page_size} items at a time "
                f"({len(items)} total). Please use the `first` page link (see Link header)."
            )
            return 400, {"detail": detail}, {"Link": first}
        start = int(query["cursor"][0] or 0)
        page = items[start : start + self.page_size]
        links = [first]
        if start + self.page_size < len(items):
            cursor = str(start + self.page_size)
            links.append(
                f'<http://127.0.0.1{link}{urlencode({**plain, "cursor": cursor})}>; rel="next"'
            )
        return 200, page, {"Link": ", ".join(links)}

    def _write(
        self, domain: FakeDomain, method: str, payload: Any, writable: set[str] | None
    ) -> tuple[int, Any, dict[str, str]]:
        bulk = isinstance(payload, list)
        if method != "POST" and not bulk:
            raise Reject(
                400,
                {
                    "non_field_errors": [
                        f"Expected a list of items but got {type(payload).__name__}."
                    ]
                },
            )
        items = payload if bulk else [payload]
        if writable is not None and domain.name not in writable:
            raise Reject(403, {"detail": "Insufficient token permissions."})
        errors: list[dict[str, Any]] = [{} for _ in items]
        validated: list[tuple[tuple[str, str], int | None, list[str] | None]] = []
        positions: dict[tuple[Any, Any], list[int]] = {}
        for i, item in enumerate(items):
            if isinstance(item, dict):
                positions.setdefault((item.get("subname"), item.get("type")), []).append(i)
        for i, item in enumerate(items):
            try:
                validated.append(self._validate(domain, method, item, bulk))
            except Reject as exc:
                errors[i] = exc.body
                continue
            key = (item.get("subname"), item.get("type"))
            others = [p for p in positions.get(key, []) if p != i]
            if others:
                errors[i] = {
                    "non_field_errors": [
                        f"Same subname and type as in position(s) {', '.join(map(str, others))}, "
                        "but must be unique."
                    ]
                }
        if any(errors):
            raise Reject(400, errors if bulk else errors[0])
        stamp = now_iso()
        out = []
        for key, ttl, records in validated:  # all valid: applied together, atomically
            old = domain.rrsets.get(key)
            if records == []:
                domain.rrsets.pop(key, None)
                continue
            assert old is not None or (ttl is not None and records is not None)
            domain.rrsets[key] = {
                "ttl": ttl if ttl is not None else old["ttl"],  # type: ignore[index]
                "records": records if records is not None else old["records"],  # type: ignore[index]
                "created": old["created"] if old else stamp,
                "touched": stamp,
            }
            out.append(self._rrset_json(domain, key))
        domain.published = stamp
        status = 201 if method == "POST" else 200
        return status, out if bulk else out[0], {}

    def _validate(
        self, domain: FakeDomain, method: str, item: Any, bulk: bool
    ) -> tuple[tuple[str, str], int | None, list[str] | None]:
        if not isinstance(item, dict):
            raise Reject(
                400, {"non_field_errors": f"Expected a dictionary, but got {type(item).__name__}."}
            )
        errors: dict[str, list[str]] = {}
        subname = item.get("subname")
        if subname is None:
            if bulk:
                errors["subname"] = ["This field is required."]
            subname = ""
        elif not isinstance(subname, str):
            errors["subname"] = [f"Expected a string, but got {type(subname).__name__}."]
        rrtype = item.get("type")
        if not isinstance(rrtype, str):
            errors["type"] = ["This field is required."]
        elif rrtype not in MANAGEABLE:
            errors["type"] = [
                f"You cannot tinker with the {rrtype} RR set. It is managed automatically."
                if rrtype in UNMANAGEABLE
                else f"The {rrtype} RR set type is currently unsupported."
            ]
        if errors:
            raise Reject(400, errors)
        key = (str(subname), str(rrtype))
        exists = key in domain.rrsets
        records = item.get("records")
        deleting = records == [] and method != "POST"
        creating = not exists and not deleting
        if method == "POST" and exists:
            raise Reject(
                400,
                {
                    "non_field_errors": [
                        "Another RRset with the same subdomain and type exists for this "
                        "domain. (Try modifying it.)"
                    ]
                },
            )
        if not deleting:
            others = {t for (sub, t) in domain.rrsets if sub == key[0] and t != key[1]}
            clash = {"CNAME"} & others if key[1] != "CNAME" else others
            if clash:
                raise Reject(
                    400,
                    {
                        "non_field_errors": [
                            "RRset with conflicting type present at same subname: database "
                            f"({', '.join(sorted(clash))}). (No other RRsets are allowed "
                            "alongside CNAME.)"
                        ]
                    },
                )
        needs_all = method in ("POST", "PUT") or (method == "PATCH" and creating)
        ttl = item.get("ttl")
        if ttl is None:
            if needs_all and not deleting:
                errors["ttl"] = ["This field is required."]
        elif isinstance(ttl, bool) or not isinstance(ttl, int):
            errors["ttl"] = ["A valid integer is required."]
        elif ttl > MAX_TTL:
            errors["ttl"] = [f"Ensure this value is less than or equal to {MAX_TTL}."]
        elif ttl < domain.minimum_ttl:
            errors["ttl"] = [f"Ensure this value is greater than or equal to {domain.minimum_ttl}."]
        canonical: list[str] | None = None
        if records is None:
            if needs_all:
                errors["records"] = ["This field is required."]
        elif not isinstance(records, list):
            errors["records"] = ['Expected a list of items but got type "str".']
        elif method == "POST" and not records:
            errors["records"] = ["This field must not be empty when using POST."]
        else:
            canonical = []
            for value in records:
                if not isinstance(value, str):
                    errors["records"] = ["Must be a string."]
                    break
                try:
                    canonical.append(tlsa_canonical(value) if rrtype == "TLSA" else value)
                except ValueError as exc:
                    errors["non_field_errors"] = [str(exc)]
                    break
            if not errors and len(set(canonical)) != len(canonical):
                errors["non_field_errors"] = ["Duplicate: records must be semantically unique"]
        if errors:
            raise Reject(400, errors)
        return key, ttl if isinstance(ttl, int) else None, canonical
