"""deSEC adapter (https://desec.io): the RRset API, token from a file, stdlib HTTP only.

What the deSEC documentation says, and what this adapter does about it (docs: desec.readthedocs.io,
source: github.com/desec-io/desec-stack ``docs/``):

- **Write unit.** RRsets under ``/domains/{name}/rrsets/`` (``dns/rrsets.rst``). Every change,
  one service's or a zone's batch (:meth:`DesecProvider.apply_many`), goes out as *one* bulk
  request, which deSEC applies atomically: "either all given RRsets are accepted and published
  in (or deleted from) the DNS, or none of them are" (rrsets.rst, "Bulk Operations: Atomicity").
  ``PATCH`` with ``records: []`` deletes an RRset in the same request.
- **Compare-and-swap.** deSEC has no conditional write (no version or ETag on an RRset). When
  every RRset of the change is new, the request is a bulk ``POST``, which deSEC refuses when an
  RRset with that subname and type exists ("With POST, only new RRsets are acceptable"): a native
  "does not exist" prerequisite, nothing written. Otherwise it is emulated: read the RRsets again
  just before the write (records *and* TTL must still be ``change.before``, else
  :class:`ConflictError`, nothing written), send the bulk ``PATCH``, then read back: anything but
  exactly the intended RRset (records and the TTL really published) is a :class:`ConflictError`
  and nothing is restored, so another writer's edit is never undone silently.
  **The race window** is the time between that last read and the moment deSEC applies the
  ``PATCH`` (one round trip, milliseconds): an edit by someone else landing exactly inside it is
  overwritten and cannot be detected, since the read-back then shows exactly the intended RRset.
  An edit before the last read is refused; one after the write is reported by the read-back.
- **TTL.** The smallest TTL deSEC accepts is the domain's ``minimum_ttl`` (``dns/domains.rst``,
  usually 3600); the largest is 86400 (rrsets.rst, ``ttl``). A TTL below the minimum is raised to
  it (the receipt's change carries the TTL really published, checked by the read-back, and
  :meth:`DesecProvider.published_ttl` says it beforehand); one above 86400 is refused.
- **Rate limits** (``rate-limits.rst``; ``api/api/settings.py`` ``DEFAULT_THROTTLE_RATES``): RRset
  writes 2/s, 15/min, 100/h and 300/day per domain (``dns_api_per_domain_expensive``), reads
  10/s and 50/min per account (``dns_api_cheap``), sliding windows; a throttled request gets
  ``429`` with ``Retry-After`` (seconds) and was not processed. This adapter waits the
  ``Retry-After`` and sends again, up to ``max_wait`` seconds in all per request, then fails in
  one line; nothing was written then. One bulk request per zone and tick keeps writes low.
- **DNSSEC.** deSEC signs every domain; the domain's ``keys`` (DNSKEY and DS values, rrsets.rst
  "Domain Field Reference") are what the parent must publish. :meth:`dnssec_signing` is True when
  the domain has keys; :meth:`delegation_ds` gives their DS values to check the parent against.
- **Auth.** ``Authorization: Token <secret>`` (rrsets.rst examples); 401 is a bad token, 403 a
  token without write permission for the domain ("Insufficient token permissions."), 404 a domain
  not in the account (rrsets.rst: "domains that don't exist or you don't own").
- **Zone.** ``zone`` in the settings, else deSEC's own longest-suffix lookup
  ``GET /domains/?owns_qname=<name>`` (domains.rst, "Identifying the Responsible Domain").
- **Transport.** :mod:`http.client`, one connection per request, no redirects followed (a
  redirect would carry the token elsewhere), HTTPS with the system's CA store; plain HTTP only
  to a loopback address (tests). The token is sent in the header only and never appears in an
  error, a log line or the receipt. TLSA data goes out as ``"u s m <lowercase hex>"``; deSEC
  parses it with dnspython 2.8, which does not check digest lengths, so added records are
  checked here first (RFC 7671 section 5).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from rollover.config import Section, check_secret_file
from rollover.core.association import Association, normalize_host, parse_association
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, InputError, ProviderError
from rollover.ports import Receipt

DEFAULT_API_URL = "https://desec.io/api/v1"
MAX_TTL = 86400  # rrsets.rst, "ttl": the maximum value is 86400 (one day)
MAX_BODY = 8 * 1024 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{8,1024}$")
_AVAILABLE = re.compile(r"available in (\d+(?:\.\d+)?) second")
_LINK_NEXT = re.compile(r"<([^>]*)>\s*;\s*rel=\"?next\"?")


@dataclass(frozen=True)
class DesecSettings:
    token_file: str
    token: str = field(repr=False)
    zone: str | None = None
    api_url: str = DEFAULT_API_URL
    timeout: float = 15.0
    max_wait: float = 60.0
    retries: int = 3


def parse_settings(section: Section, warnings: list[str]) -> DesecSettings:
    token_file = section.text("token_file", required=True)
    key = section.key("token_file")
    check_secret_file(token_file, key, section.source, warnings)
    token = read_token(token_file, f"{section.source}: {key}")
    zone = section.text("zone")
    if zone is not None:
        try:
            zone = normalize_host(zone).rstrip(".")
        except InputError as exc:
            raise section.fail("zone", str(exc)) from None
    api_url = section.text("api_url", DEFAULT_API_URL)
    problem = api_url_problem(api_url)
    if problem:
        raise section.fail("api_url", problem)
    max_wait = section.number("max_wait", 60.0, low=0.0)
    if max_wait > 86400:
        raise section.fail("max_wait", f"{max_wait:g} is above 86400 (one day)")
    return DesecSettings(
        token_file=token_file,
        token=token,
        zone=zone,
        api_url=api_url.rstrip("/"),
        timeout=section.number("timeout", 15.0, low=0.1),
        max_wait=max_wait,
        retries=section.integer("retries", 3, low=1, high=10),
    )


def create(name: str, settings: DesecSettings) -> DesecProvider:
    return DesecProvider(name, settings)


def read_token(path: str, where: str) -> str:
    """The token: the file's one line (surrounding whitespace ignored). Never echoed."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable ASCII text"
        raise ConfigError(f"{where}: {path}: {reason}") from None
    token = text.strip()
    if not _TOKEN.match(token):
        raise ConfigError(
            f"{where}: {path} does not hold a deSEC token (one line of letters, digits and "
            "-_.~+/=, as deSEC issues them)"
        )
    return token


def api_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the API's base: HTTPS, or plain HTTP to loopback only (the token
    would otherwise cross the network in clear); no credentials, query or fragment in it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    del port
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "use an https:// URL"
    if parts.username or parts.password or parts.query or parts.fragment:
        return "give the base URL only (no credentials, query or fragment)"
    if parts.scheme == "http" and not _loopback(parts.hostname):
        return "plain http:// only to a loopback address (the token must not travel in clear)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DomainInfo:
    name: str  # without the final dot, as deSEC spells it
    minimum_ttl: int
    keys: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    text: str


class _NoAnswerError(Exception):
    """The request got no answer; ``sent`` when it may have reached deSEC."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class DesecProvider:
    """One deSEC account (one token). Domains and zone lookups are cached per instance."""

    def __init__(
        self,
        name: str,
        settings: DesecSettings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = settings
        self._sleep = sleep
        parts = urlsplit(settings.api_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._label = parts.netloc
        self._domains: dict[str, DomainInfo] = {}
        self._zones: dict[str, str] = {}
        self.requests = 0  # HTTP requests sent (tests and logs)

    # -- transport -------------------------------------------------------------------------
    def _send(self, method: str, path: str, payload: Any = None) -> Answer:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {
            "Authorization": f"Token {self.settings.token}",
            "Accept": "application/json",
            "User-Agent": "rollover (DANE TLSA)",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.settings.timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.settings.timeout)
        sent = False
        try:
            try:
                conn.connect()
            except TimeoutError:
                raise _NoAnswerError(
                    f"no connection within {self.settings.timeout:g} s", sent=False
                ) from None
            except ssl.SSLError as exc:
                raise _NoAnswerError(f"TLS failed: {exc.reason or exc}", sent=False) from None
            except OSError as exc:
                raise _NoAnswerError(f"{exc.strerror or exc}", sent=False) from None
            self.requests += 1
            try:
                sent = True
                conn.request(method, self._base + path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read(MAX_BODY)
            except TimeoutError:
                raise _NoAnswerError(
                    f"no answer within {self.settings.timeout:g} s", sent=sent
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise _NoAnswerError(f"connection lost ({reason})", sent=sent) from None
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body, text)

    def _call(self, method: str, path: str, payload: Any = None, *, what: str) -> Answer:
        """One request, throttling waited out (``Retry-After``, ``max_wait`` in all) and, for a
        request that cannot have changed anything (a read, or one that never left), transport
        failures and 5xx retried ``retries`` times with backoff. A write that may have reached
        deSEC without an answer raises :class:`_NoAnswerError` with ``sent`` (the caller reads)."""
        waited = 0.0
        failures = 0
        delay = 0.5
        write = method not in ("GET", "HEAD")
        while True:
            try:
                answer = self._send(method, path, payload)
            except _NoAnswerError as exc:
                failures += 1
                if write and exc.sent:
                    raise
                if failures >= self.settings.retries:
                    raise ProviderError(
                        self._clean(
                            f"{self.name}: deSEC at {self._label} unreachable while {what}: "
                            f"{exc.reason} ({failures} attempts)"
                        )
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if answer.status == 429:
                pause = max(retry_after(answer), 0.5)  # never a busy loop on "0"
                if waited + pause > self.settings.max_wait:
                    raise ProviderError(
                        self._clean(
                            f"{self.name}: deSEC rate limit: {what} throttled "
                            f"(Retry-After {pause:g} s; waited {waited:g} s, max_wait "
                            f"{self.settings.max_wait:g} s); nothing was changed, the next "
                            "advance tries again"
                        )
                    )
                self._sleep(pause)
                waited += pause
                continue
            if answer.status >= 500 and not write:
                failures += 1
                if failures < self.settings.retries:
                    self._sleep(delay)
                    delay = min(delay * 2, 8.0)
                    continue
            return answer

    def _clean(self, text: str) -> str:
        """One line, bounded, and never the token (belt and braces: nothing should carry it)."""
        line = " ".join(text.replace(self.settings.token, "[token]").split())
        return line if len(line) <= 500 else line[:497] + "..."

    def _fail(self, answer: Answer, what: str, domain: str | None = None) -> ProviderError:
        detail = _message(answer)
        if answer.status == 401:
            text = (
                f"{self.name}: deSEC rejected the token in {self.settings.token_file} "
                f"(401: {detail}); is it valid, and allowed from this address?"
            )
        elif answer.status == 403:
            text = (
                f"{self.name}: deSEC refused {what} (403: {detail}); the token needs write "
                f"permission for {domain or 'the domain'} (perm_write in its scoping policy)"
            )
        elif answer.status == 404:
            text = (
                f"{self.name}: deSEC has no domain {domain or ''} in this account, or the "
                f"token may not see it (404: {detail})"
            )
        elif answer.status == 400:
            text = f"{self.name}: deSEC rejected {what}: {detail}"
        else:
            text = f"{self.name}: deSEC answered {answer.status} while {what}: {detail}"
        return ProviderError(self._clean(text))

    # -- domains ---------------------------------------------------------------------------
    def zone_for(self, owner: str) -> str:
        return self._locate(owner)[0] + "."

    def _locate(self, owner: str) -> tuple[str, str]:
        """(domain, subname) for ``owner``."""
        name = owner.rstrip(".").lower()
        domain = self._zones.get(name)
        if domain is None:
            if self.settings.zone is not None:
                domain = self.settings.zone
                if not (name == domain or name.endswith("." + domain)):
                    raise ConfigError(f"{self.name}: {owner} is not in zone {domain}")
            else:
                domain = self._lookup(name)
            self._zones[name] = domain
        subname = "" if name == domain else name[: -len(domain) - 1]
        return domain, subname

    def _lookup(self, name: str) -> str:
        """deSEC's longest-suffix domain of the account for ``name`` (``owns_qname``)."""
        what = f"looking up the domain of {name}."
        answer = self._call("GET", "/domains/?" + urlencode({"owns_qname": name}), what=what)
        if answer.status != 200:
            raise self._fail(answer, what)
        found = [d.get("name") for d in answer.body or [] if isinstance(d, dict)]
        if not found or not isinstance(found[0], str):
            raise ProviderError(
                f"{self.name}: no domain in this deSEC account holds {name}. (set zone, or "
                "check that the token may see the domain)"
            )
        return found[0].rstrip(".").lower()

    def domain(self, domain: str) -> DomainInfo:
        """The domain's ``minimum_ttl`` and ``keys`` (GET /domains/{name}/), cached."""
        if domain not in self._domains:
            what = f"reading domain {domain}"
            answer = self._call("GET", f"/domains/{quote(domain, safe='')}/", what=what)
            if answer.status != 200 or not isinstance(answer.body, dict):
                raise self._fail(answer, what, domain)
            body = answer.body
            try:
                minimum = int(body.get("minimum_ttl", 3600))
            except (TypeError, ValueError):
                raise ProviderError(
                    f"{self.name}: deSEC gave domain {domain} an unreadable minimum_ttl"
                ) from None
            keys = tuple(k for k in body.get("keys") or [] if isinstance(k, dict))
            self._domains[domain] = DomainInfo(domain, minimum, keys)
        return self._domains[domain]

    def minimum_ttl(self, owner: str) -> int:
        return self.domain(self._locate(owner)[0]).minimum_ttl

    def published_ttl(self, owner: str, ttl: int) -> int:
        """The TTL deSEC will publish for ``ttl`` at ``owner``: raised to the domain's
        ``minimum_ttl`` (the engine waits on this one, not the configured one)."""
        return max(ttl, self.minimum_ttl(owner))

    def dnssec_signing(self, owner: str) -> bool:
        """deSEC signs every domain; True when the domain has keys (it always should)."""
        return bool(self.domain(self._locate(owner)[0]).keys)

    def delegation_ds(self, owner: str) -> frozenset[str]:
        """The DS values of the domain's keys: what the parent zone must publish."""
        info = self.domain(self._locate(owner)[0])
        return frozenset(
            " ".join(str(ds).split()).lower()
            for key in info.keys
            for ds in key.get("ds") or []
            if isinstance(ds, str)
        )

    # -- records ---------------------------------------------------------------------------
    def read(self, owner: str) -> TlsaRRset:
        domain, subname = self._locate(owner)
        self.domain(domain)  # a missing domain is an error, not an absent RRset
        return self._read_one(domain, subname, _owner(owner))

    def _rrset_path(self, domain: str, subname: str) -> str:
        sub = quote(subname or "@", safe="._-*")
        return f"/domains/{quote(domain, safe='')}/rrsets/{sub}/TLSA/"

    def _read_one(self, domain: str, subname: str, owner: str) -> TlsaRRset:
        what = f"reading {owner} TLSA"
        answer = self._call("GET", self._rrset_path(domain, subname), what=what)
        if answer.status == 404:
            return TlsaRRset(owner)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self._fail(answer, what, domain)
        return self._rrset(owner, answer.body)

    def _rrset(self, owner: str, body: dict[str, Any]) -> TlsaRRset:
        values = body.get("records") or []
        try:
            records = frozenset(parse_association(str(v)) for v in values)
        except InputError as exc:
            raise ProviderError(
                self._clean(f"{self.name}: {owner}: unreadable TLSA: {exc}")
            ) from None
        if not records:
            return TlsaRRset(owner)
        ttl = body.get("ttl")
        return TlsaRRset(owner, int(ttl) if isinstance(ttl, int) else None, records)

    def _read_many(self, domain: str, owners: dict[str, str]) -> dict[str, TlsaRRset]:
        """The TLSA RRsets at ``owners`` (subname -> owner): one GET for one owner, else the
        domain's TLSA list (``?type=TLSA``, paginated by ``cursor``, rrsets.rst "Pagination")."""
        if len(owners) == 1:
            ((subname, owner),) = owners.items()
            return {subname: self._read_one(domain, subname, owner)}
        found = {s: TlsaRRset(o) for s, o in owners.items()}
        what = f"listing the TLSA RRsets of {domain}"
        query: dict[str, str] = {"type": "TLSA", "cursor": ""}
        for _page in range(1000):
            path = f"/domains/{quote(domain, safe='')}/rrsets/?{urlencode(query)}"
            answer = self._call("GET", path, what=what)
            if answer.status != 200 or not isinstance(answer.body, list):
                raise self._fail(answer, what, domain)
            for item in answer.body:
                if isinstance(item, dict) and item.get("subname") in owners:
                    subname = str(item["subname"])
                    found[subname] = self._rrset(owners[subname], item)
            cursor = _next_cursor(answer.headers.get("link", ""))
            if cursor is None:
                return found
            query["cursor"] = cursor
        raise ProviderError(f"{self.name}: deSEC's TLSA list of {domain} does not end")

    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        return self.apply_many([change])[0]

    def apply_many(self, changes: Sequence[Change]) -> list[Receipt]:
        """Every change of one domain in one atomic bulk request (a ``POST`` when every RRset
        is new, else a ``PATCH``), guarded by a read just before and a read back after; one
        receipt per change, in order (no-ops included)."""
        pending = [c for c in changes if not c.is_noop]
        if not pending:
            return [Receipt(self.name, "noop", c) for c in changes]
        located = [self._locate(c.owner) for c in pending]
        domains = {d for d, _s in located}
        if len(domains) != 1:
            raise ProviderError(f"{self.name}: one deSEC bulk request can only touch one domain")
        (domain,) = domains
        subnames = [s for _d, s in located]
        if len(set(subnames)) != len(subnames):
            raise ProviderError(f"{self.name}: two changes at the same owner name in one batch")
        info = self.domain(domain)
        intended = [self._intended(c, info) for c in pending]
        owners = dict(zip(subnames, (_owner(c.owner) for c in pending), strict=True))
        names = ", ".join(owners.values())

        current = self._read_many(domain, owners)
        moved = [
            c.owner
            for c, s in zip(pending, subnames, strict=True)
            if not _same(current[s], c.before)
        ]
        if moved:
            raise ConflictError(
                f"{self.name}: the TLSA RRset at {', '.join(moved)} changed since it was read; "
                "nothing was changed, read it again"
            )
        creating = all(not c.before.exists for c in pending)
        method = "POST" if creating else "PATCH"
        items = [_item(s, want) for s, want in zip(subnames, intended, strict=True)]
        what = f"the TLSA change at {names}"
        path = f"/domains/{quote(domain, safe='')}/rrsets/"
        note = ""
        try:
            answer = self._call(method, path, items, what=what)
        except _NoAnswerError as exc:
            answer = None
            note = f"the answer was lost ({exc.reason})"
        if answer is not None and not 200 <= answer.status < 300:
            if answer.status == 400 and creating and _exists_already(answer):
                raise ConflictError(
                    f"{self.name}: a TLSA RRset at {names} was created by someone else since "
                    "it was read (deSEC refused the creation); nothing was changed"
                )
            if answer.status < 500:
                raise self._fail(answer, what, domain)
            note = f"deSEC answered {answer.status}"

        after = self._read_many(domain, owners)
        wrong = [
            want.owner
            for want, s in zip(intended, subnames, strict=True)
            if not _same(after[s], want)
        ]
        if note:
            if not wrong:
                note = f"applied ({note})"
            elif all(_same(after[s], c.before) for c, s in zip(pending, subnames, strict=True)):
                raise ProviderError(
                    self._clean(
                        f"{self.name}: {what}: {note}; deSEC still holds the RRsets as before "
                        "(not applied, or not yet): the next advance reads them again"
                    )
                )
        if wrong:
            raise ConflictError(
                f"{self.name}: after the write the TLSA RRset at {', '.join(wrong)} is not the "
                "intended one (another writer at the same time?); left as it is, read it again"
            )
        stamp = _touched(answer) if answer is not None else ""
        receipts = {
            id(c): self._receipt(c, want, f"desec:{domain}:{stamp or 'verified'}", note, domain)
            for c, want in zip(pending, intended, strict=True)
        }
        return [receipts.get(id(c), Receipt(self.name, "noop", c)) for c in changes]

    def _receipt(
        self, change: Change, want: TlsaRRset, change_id: str, note: str, domain: str
    ) -> Receipt:
        """The receipt carries the change as deSEC holds it (the TTL really published)."""
        detail = note
        if want.exists and change.after.ttl is not None and want.ttl != change.after.ttl:
            raised = f"TTL {change.after.ttl} raised to {want.ttl} (minimum_ttl of {domain})"
            detail = f"{detail}; {raised}" if detail else raised
        return Receipt(self.name, change_id, Change(change.before, want), detail)

    def _intended(self, change: Change, info: DomainInfo) -> TlsaRRset:
        """``change.after`` as deSEC will hold it: TTL raised to ``minimum_ttl``; refused when
        above 86400 or when an added record is malformed (deSEC does not check lengths)."""
        after = change.after
        bad = sorted(a for a in change.added if not a.is_well_formed())
        if bad:
            raise ProviderError(
                f"{self.name}: {change.owner}: refusing to publish malformed TLSA {bad[0]} "
                "(the digest length does not match the matching type)"
            )
        if not after.exists:
            return TlsaRRset(after.owner)
        ttl = after.ttl if after.ttl is not None else info.minimum_ttl
        if ttl > MAX_TTL:
            raise ProviderError(
                f"{self.name}: {change.owner}: TTL {ttl} is above deSEC's maximum of {MAX_TTL}"
            )
        return TlsaRRset(after.owner, max(ttl, info.minimum_ttl), after.records)

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """deSEC publishes a write before it answers (domains.rst, ``published``: "we publish
        record modifications immediately"), and :meth:`apply_many` has read the RRset back:
        in effect already, nothing to poll."""
        del receipt, timeout


def retry_after(answer: Answer) -> float:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date, RFC 9110 section 10.2.3), else
    deSEC's body ("Expected available in N seconds"), else one second."""
    value = answer.headers.get("retry-after", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    match = _AVAILABLE.search(answer.text)
    return float(match.group(1)) if match else 1.0


def _message(answer: Answer) -> str:
    """deSEC's own words: ``detail``, or the field errors of a (bulk) validation error."""
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    parts: list[str] = []
    if isinstance(body, list):
        for i, item in enumerate(body):
            if isinstance(item, dict) and item:
                parts.append(f"item {i}: {_fields(item)}")
    elif isinstance(body, dict):
        parts.append(_fields(body))
    if parts:
        return "; ".join(parts)
    return answer.text.strip()[:200] or f"HTTP {answer.status}"


def _fields(errors: dict[str, Any]) -> str:
    out = []
    for key, value in errors.items():
        text = _flat(value)
        out.append(text if key == "non_field_errors" else f"{key}: {text}")
    return "; ".join(out)


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return _fields(value)
    if isinstance(value, list):
        return " ".join(_flat(v) for v in value)
    return str(value)


def _exists_already(answer: Answer) -> bool:
    return "same subdomain and type exists" in answer.text


def _touched(answer: Answer) -> str:
    body = answer.body
    items = body if isinstance(body, list) else [body]
    stamps = [str(i["touched"]) for i in items if isinstance(i, dict) and i.get("touched")]
    return max(stamps, default="")


def _next_cursor(link: str) -> str | None:
    """The ``cursor`` of the ``rel="next"`` link; only its cursor is used, never its host."""
    match = _LINK_NEXT.search(link)
    if match is None:
        return None
    cursor = parse_qs(urlsplit(match.group(1)).query, keep_blank_values=True).get("cursor")
    return cursor[0] if cursor else None


def _item(subname: str, want: TlsaRRset) -> dict[str, Any]:
    if not want.exists:
        return {"subname": subname, "type": "TLSA", "records": []}
    return {
        "subname": subname,
        "type": "TLSA",
        "ttl": want.ttl,
        "records": [str(a) for a in sorted(want.records)],
    }


def _same(seen: TlsaRRset, expected: TlsaRRset) -> bool:
    """Exactly ``expected``: the records, and the TTL when it exists and is known."""
    if seen.records != expected.records:
        return False
    return not expected.exists or expected.ttl is None or seen.ttl == expected.ttl


def _owner(owner: str) -> str:
    name = owner.lower()
    return name if name.endswith(".") else name + "."


__all__ = [
    "Association",
    "DesecProvider",
    "DesecSettings",
    "create",
    "parse_settings",
    "retry_after",
]
