"""RFC 8460 (SMTP TLS Reporting) aggregate reports: the model and its validation.

Pure: bytes (or an already decoded JSON object) in, a :class:`Report` or an
:class:`~rollover.errors.InputError` out; no files, sockets or clock. The error is one line naming
the origin and the JSON path of the first problem::

    reports/x.json: policies[0].summary.total-failure-session-count: not a non-negative integer

What is checked is the report schema of RFC 8460 section 4.4, field by field as sections 4.1 to
4.3 describe them. Where large senders deviate in ways that lose no meaning, the report is read
and the deviation recorded in :attr:`Report.deviations` rather than the report refused:

- ``mx-host`` is a string in the RFC's schema and example, a JSON array in the erratum (EID 6241)
  and in what Google sends; some senders used the key ``mx-host-pattern``. All three are read into
  :attr:`PolicyResult.mx_hosts`. Microsoft omits it.
- Microsoft sends ``date-range`` date-times without a UTC offset (``2023-01-10T00:00:00``), which
  RFC 3339 section 5.6 does not allow; they are read as UTC.
- ``policy-string`` as one string instead of an array of strings.
- Optional failure-detail fields given as empty strings (seen in the wild) count as absent.
- ``failure-error-code``, the name Appendix B's example uses for section 4.4's
  ``failure-reason-code``, is read as that.

Result types outside the registry (section 4.3 and the IANA "STARTTLS Validation Result Types"
registry) are kept as sent; :attr:`FailureDetail.registered` tells them apart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from rollover.errors import InputError

#: Section 4.3.1 (negotiation failures) and 4.3.2 (policy failures), as the IANA registry lists
#: them.
REGISTERED_RESULT_TYPES = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)
#: Section 4.3.2.1: the failures that mean senders could not use the DANE TLSA policy.
DANE_RESULT_TYPES = frozenset({"tlsa-invalid", "dnssec-invalid", "dane-required"})
#: Section 4.2 ``policy-type``.
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")
#: The key :func:`report_json` keeps :attr:`Report.deviations` under (not an RFC 8460 field;
#: readers of the RFC ignore it).
DEVIATIONS_KEY = "x-rollover-deviations"

# RFC 3339 section 5.6 date-time; the offset is optional here only to read what Microsoft sends.
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?"
)
_MAX_QUOTED = 60

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FailureDetail:
    """One ``failure-details`` entry (section 4.4). Host names are lower case without a final
    dot and addresses in their compressed form, so that they compare with what rollover knows."""

    result_type: str
    sending_mta_ip: str | None
    receiving_mx_hostname: str | None
    receiving_mx_helo: str | None
    receiving_ip: str | None
    failed_session_count: int
    additional_information: str | None
    failure_reason_code: str | None

    @property
    def registered(self) -> bool:
        """False for a result type outside section 4.3 and the IANA registry (kept as sent)."""
        return self.result_type in REGISTERED_RESULT_TYPES

    @property
    def dane(self) -> bool:
        """A DANE policy failure (section 4.3.2.1): the early warning of a broken rollover."""
        return self.result_type in DANE_RESULT_TYPES


@dataclass(frozen=True)
class PolicyResult:
    """One ``policies`` entry: the policy the sender applied and what came of it."""

    policy_type: str
    policy_domain: str
    policy_strings: tuple[str, ...]
    mx_hosts: tuple[str, ...]
    successful: int
    failed: int
    failures: tuple[FailureDetail, ...]


@dataclass(frozen=True)
class Report:
    """A validated RFC 8460 report. ``start`` and ``end`` are aware UTC datetimes."""

    organization_name: str
    contact_info: str
    report_id: str
    start: datetime
    end: datetime
    policies: tuple[PolicyResult, ...]
    deviations: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """What de-duplicates reports: ``report-id``, which section 4.1 requires to be unique per
        report (a re-sent or re-ingested report carries the same one)."""
        return self.report_id

    @property
    def failed_sessions(self) -> int:
        return sum(policy.failed for policy in self.policies)

    @property
    def successful_sessions(self) -> int:
        return sum(policy.successful for policy in self.policies)


def parse_report(data: bytes, origin: str) -> Report:
    """Decode and validate one report (UTF-8 JSON, RFC 8460 section 4.4).

    Raises :class:`InputError` naming ``origin`` and the JSON path of the first problem.
    """
    try:
        document = json.loads(data)
    except RecursionError:
        raise InputError(f"{one_line(origin)}: not JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise InputError(f"{one_line(origin)}: not JSON: not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError, and integers too long to convert
        raise InputError(f"{one_line(origin)}: not JSON: {one_line(str(exc))}") from None
    return _Parser(origin).report(document)


def report_from_json(document: object, origin: str = "stored report") -> Report:
    """The inverse of :func:`report_json`: a report from its JSON object (validated again)."""
    return _Parser(origin).report(document)


def report_json(report: Report) -> dict[str, object]:
    """The normalized report as a JSON-ready object: itself an RFC 8460 report (``mx-host`` as the
    erratum's array, date-times in UTC with ``Z``), plus :data:`DEVIATIONS_KEY` when the original
    deviated. ``report_from_json(report_json(r)) == r``."""
    document: dict[str, object] = {
        "organization-name": report.organization_name,
        "date-range": {
            "start-datetime": _format_time(report.start),
            "end-datetime": _format_time(report.end),
        },
        "contact-info": report.contact_info,
        "report-id": report.report_id,
        "policies": [_policy_json(policy) for policy in report.policies],
    }
    if report.deviations:
        document[DEVIATIONS_KEY] = list(report.deviations)
    return document


def report_digest(report: Report) -> str:
    """SHA-256 of the canonical normalized JSON: two reports with one ``report-id`` but different
    content (a sender that reuses ids) have different digests."""
    canonical = json.dumps(report_json(report), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def one_line(text: str, limit: int = 200) -> str:
    """``text`` safe for a one-line message: control characters escaped, length bounded."""
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def _policy_json(policy: PolicyResult) -> dict[str, object]:
    entry: dict[str, object] = {
        "policy": {
            "policy-type": policy.policy_type,
            "policy-string": list(policy.policy_strings),
            "policy-domain": policy.policy_domain,
            "mx-host": list(policy.mx_hosts),
        },
        "summary": {
            "total-successful-session-count": policy.successful,
            "total-failure-session-count": policy.failed,
        },
    }
    if policy.failures:
        entry["failure-details"] = [_failure_json(failure) for failure in policy.failures]
    return entry


def _failure_json(failure: FailureDetail) -> dict[str, object]:
    fields: dict[str, object | None] = {
        "result-type": failure.result_type,
        "sending-mta-ip": failure.sending_mta_ip,
        "receiving-mx-hostname": failure.receiving_mx_hostname,
        "receiving-mx-helo": failure.receiving_mx_helo,
        "receiving-ip": failure.receiving_ip,
        "failed-session-count": failure.failed_session_count,
        "additional-information": failure.additional_information,
        "failure-reason-code": failure.failure_reason_code,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _format_time(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _render(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _quote(value: object) -> str:
    return one_line(json.dumps(value, ensure_ascii=False), _MAX_QUOTED)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


class _Parser:
    """Section 4.4, one field at a time; :meth:`fail` builds the one-line error."""

    def __init__(self, origin: str) -> None:
        self.origin = one_line(origin)
        self.deviations: list[str] = []

    def fail(self, path: Path, problem: str) -> InputError:
        where = _render(path)
        prefix = f"{self.origin}: {where}" if where else self.origin
        return InputError(f"{prefix}: {problem}")

    # -- the document --------------------------------------------------------------------------
    def report(self, document: object) -> Report:
        top = self.obj(document, ())
        organization_name = self.text(top, "organization-name", (), empty=False)
        date_range = self.obj(self.need(top, "date-range", ()), ("date-range",))
        start = self.time(date_range, "start-datetime", ("date-range",))
        end = self.time(date_range, "end-datetime", ("date-range",))
        if end < start:
            raise self.fail(("date-range",), "end-datetime is before start-datetime")
        contact_info = self.text(top, "contact-info", ())
        report_id = self.text(top, "report-id", (), empty=False)
        policies = self.array(self.need(top, "policies", ()), ("policies",))
        results = tuple(self.policy(entry, ("policies", i)) for i, entry in enumerate(policies))
        stored = top.get(DEVIATIONS_KEY)
        if isinstance(stored, list) and all(isinstance(item, str) for item in stored):
            self.deviations[:0] = [item for item in stored if item not in self.deviations]
        return Report(
            organization_name=organization_name,
            contact_info=contact_info,
            report_id=report_id,
            start=start,
            end=end,
            policies=results,
            deviations=tuple(self.deviations),
        )

    def policy(self, value: object, path: Path) -> PolicyResult:
        entry = self.obj(value, path)
        policy_path = (*path, "policy")
        policy = self.obj(self.need(entry, "policy", path), policy_path)
        policy_type = self.text(policy, "policy-type", policy_path)
        if policy_type not in POLICY_TYPES:
            raise self.fail(
                (*policy_path, "policy-type"),
                f"{_quote(policy_type)} is not one of {', '.join(POLICY_TYPES)}",
            )
        summary_path = (*path, "summary")
        summary = self.obj(self.need(entry, "summary", path), summary_path)
        details = entry.get("failure-details")
        failures: tuple[FailureDetail, ...] = ()
        if details is not None:
            details_path = (*path, "failure-details")
            failures = tuple(
                self.failure(item, (*details_path, i))
                for i, item in enumerate(self.array(details, details_path))
            )
        return PolicyResult(
            policy_type=policy_type,
            policy_domain=_host(self.text(policy, "policy-domain", policy_path, empty=False)),
            policy_strings=self.policy_strings(policy, policy_path),
            mx_hosts=self.mx_hosts(policy, policy_path),
            successful=self.count(summary, "total-successful-session-count", summary_path),
            failed=self.count(summary, "total-failure-session-count", summary_path),
            failures=failures,
        )

    def failure(self, value: object, path: Path) -> FailureDetail:
        detail = self.obj(value, path)
        mx = self.optional(detail, "receiving-mx-hostname", path)
        helo = self.optional(detail, "receiving-mx-helo", path)
        return FailureDetail(
            result_type=self.text(detail, "result-type", path, empty=False),
            sending_mta_ip=self.address(detail, "sending-mta-ip", path),
            receiving_mx_hostname=_host(mx) if mx is not None else None,
            receiving_mx_helo=helo,
            receiving_ip=self.address(detail, "receiving-ip", path),
            failed_session_count=self.count(detail, "failed-session-count", path),
            additional_information=self.optional(detail, "additional-information", path),
            failure_reason_code=self.optional(detail, "failure-reason-code", path)
            or self.optional(detail, "failure-error-code", path),
        )

    # -- fields --------------------------------------------------------------------------------
    def obj(self, value: object, path: Path) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.fail(path, f"not a JSON object ({_kind(value)})")
        return value

    def array(self, value: object, path: Path) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(path, f"not a JSON array ({_kind(value)})")
        return value

    def need(self, obj: Mapping[str, object], key: str, path: Path) -> object:
        if key not in obj or obj[key] is None:
            raise self.fail((*path, key), "missing (required by RFC 8460 section 4.4)")
        return obj[key]

    def text(self, obj: Mapping[str, object], key: str, path: Path, *, empty: bool = True) -> str:
        value = self.need(obj, key, path)
        if not isinstance(value, str):
            raise self.fail((*path, key), f"not a string ({_kind(value)})")
        if not empty and not value.strip():
            raise self.fail((*path, key), "empty")
        return value

    def optional(self, obj: Mapping[str, object], key: str, path: Path) -> str | None:
        value = obj.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail((*path, key), f"not a string ({_kind(value)})")
        return value

    def count(self, obj: Mapping[str, object], key: str, path: Path) -> int:
        value = self.need(obj, key, path)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail((*path, key), "not a non-negative integer")
        return value

    def address(self, obj: Mapping[str, object], key: str, path: Path) -> str | None:
        value = self.optional(obj, key, path)
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise self.fail((*path, key), f"{_quote(value)} is not an IP address") from None

    def time(self, obj: Mapping[str, object], key: str, path: Path) -> datetime:
        value = self.text(obj, key, path)
        match = _DATE_TIME.fullmatch(value.strip())
        if match is None:
            raise self.fail((*path, key), f"{_quote(value)} is not an RFC 3339 date-time")
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        fraction, offset = match.group(7), match.group(8)
        if offset is None:
            self.deviations.append(f"{_render((*path, key))}: no UTC offset (read as UTC)")
            zone = UTC
        elif offset in "Zz":
            zone = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise self.fail((*path, key), f"{_quote(value)} is not an RFC 3339 date-time")
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        # RFC 3339 allows a leap second (:60); datetime does not, and a second makes no odds here.
        second = min(second, 59)
        micros = int((fraction[1:] + "000000")[:6]) if fraction else 0
        try:
            moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=zone)
        except ValueError:
            raise self.fail((*path, key), f"{_quote(value)} is not an RFC 3339 date-time") from None
        return moment.astimezone(UTC)

    def policy_strings(self, policy: Mapping[str, object], path: Path) -> tuple[str, ...]:
        value = policy.get("policy-string")
        if value is None:
            return ()
        if isinstance(value, str):
            self.deviations.append(f"{_render((*path, 'policy-string'))}: a string, not an array")
            return (value,)
        items = self.array(value, (*path, "policy-string"))
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail((*path, "policy-string", i), f"not a string ({_kind(item)})")
        return tuple(str(item) for item in items)

    def mx_hosts(self, policy: Mapping[str, object], path: Path) -> tuple[str, ...]:
        """``mx-host`` as the RFC's string or the erratum's array, or ``mx-host-pattern``."""
        key = "mx-host" if policy.get("mx-host") is not None else "mx-host-pattern"
        value = policy.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (_host(value),) if value.strip() else ()
        items = self.array(value, (*path, key))
        hosts = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail((*path, key, i), f"not a string ({_kind(item)})")
            if item.strip():
                hosts.append(_host(item))
        return tuple(hosts)
