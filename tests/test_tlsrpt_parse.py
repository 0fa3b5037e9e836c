"""RFC 8460 reports: the model's validation (table-driven), the corpus, every source kind, the
limits and the gzip bomb. No servers; the IMAP source against Dovecot is test_tlsrpt_imap.py."""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pytest

from rollover.errors import InputError
from rollover.tlsrpt.report import (
    DANE_RESULT_TYPES,
    DEVIATIONS_KEY,
    REGISTERED_RESULT_TYPES,
    Report,
    parse_report,
    report_digest,
    report_from_json,
    report_json,
)
from rollover.tlsrpt.sources import Limits, gunzip_bounded, read_reports

CORPUS = Path(__file__).resolve().parent / "tlsrpt_corpus"
GOOD, BAD = CORPUS / "good", CORPUS / "bad"
MiB = 1024 * 1024

MINIMAL: dict[str, Any] = {
    "organization-name": "Sender Example",
    "date-range": {
        "start-datetime": "2026-11-29T00:00:00Z",
        "end-datetime": "2026-11-29T23:59:59Z",
    },
    "contact-info": "tlsrpt@sender.example",
    "report-id": "r-1",
    "policies": [
        {
            "policy": {
                "policy-type": "tlsa",
                "policy-string": ["_25._tcp.mx1.example.test. IN TLSA 3 1 1 aa"],
                "policy-domain": "mx1.example.test",
                "mx-host": "mx1.example.test",
            },
            "summary": {"total-successful-session-count": 10, "total-failure-session-count": 2},
            "failure-details": [
                {
                    "result-type": "tlsa-invalid",
                    "sending-mta-ip": "192.0.2.1",
                    "receiving-mx-hostname": "mx1.example.test",
                    "receiving-ip": "198.51.100.25",
                    "failed-session-count": 2,
                }
            ],
        }
    ],
}
P0 = ("policies", 0)
POLICY = (*P0, "policy")
SUMMARY = (*P0, "summary")
DETAIL = (*P0, "failure-details", 0)


def variant(path: tuple[str | int, ...], value: object = ..., *, delete: bool = False) -> bytes:
    """MINIMAL with the field at ``path`` set to ``value`` (or deleted), as JSON bytes."""
    document = copy.deepcopy(MINIMAL)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(document).encode()


def parse_error(data: bytes, origin: str = "reports/x.json") -> str:
    with pytest.raises(InputError) as caught:
        parse_report(data, origin)
    message = str(caught.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    assert message.startswith(origin.replace("\n", "\\n") + ": "), message
    return message


# -- the model: required fields, types, dates ------------------------------------------------

REQUIRED = [
    ("organization-name",),
    ("date-range",),
    ("date-range", "start-datetime"),
    ("date-range", "end-datetime"),
    ("contact-info",),
    ("report-id",),
    ("policies",),
    (*P0, "policy"),
    (*POLICY, "policy-type"),
    (*POLICY, "policy-domain"),
    (*P0, "summary"),
    (*SUMMARY, "total-successful-session-count"),
    (*SUMMARY, "total-failure-session-count"),
    (*DETAIL, "result-type"),
    (*DETAIL, "failed-session-count"),
]


def rendered(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


@pytest.mark.parametrize("path", REQUIRED, ids=rendered)
def test_each_required_field_missing_names_its_path(path: tuple[str | int, ...]) -> None:
    message = parse_error(variant(path, delete=True))
    assert (
        message == f"reports/x.json: {rendered(path)}: missing (required by RFC 8460 section 4.4)"
    )


@pytest.mark.parametrize("path", REQUIRED, ids=rendered)
def test_each_required_field_null_is_missing(path: tuple[str | int, ...]) -> None:
    assert "missing" in parse_error(variant(path, None))


WRONG = [
    (("organization-name",), 5, "not a string (a number)"),
    (("organization-name",), "  ", "empty"),
    (("report-id",), "", "empty"),
    (("contact-info",), ["a"], "not a string (an array)"),
    (("date-range",), [], "not a JSON object (an array)"),
    (("policies",), {}, "not a JSON array (an object)"),
    (P0, "x", "not a JSON object (a string)"),
    ((*POLICY, "policy-type"), "dmarc", '"dmarc" is not one of tlsa, sts, no-policy-found'),
    ((*POLICY, "policy-type"), "TLSA", "is not one of"),
    ((*POLICY, "policy-domain"), "", "empty"),
    ((*POLICY, "policy-string"), [1], "not a string (a number)"),
    ((*POLICY, "policy-string"), {}, "not a JSON array (an object)"),
    ((*POLICY, "mx-host"), 5, "not a JSON array (a number)"),
    ((*POLICY, "mx-host"), ["ok.example", None], "not a string (null)"),
    ((*SUMMARY, "total-failure-session-count"), "303", "not a non-negative integer"),
    ((*SUMMARY, "total-failure-session-count"), -1, "not a non-negative integer"),
    ((*SUMMARY, "total-failure-session-count"), 1.5, "not a non-negative integer"),
    ((*SUMMARY, "total-failure-session-count"), 2.0, "not a non-negative integer"),
    ((*SUMMARY, "total-successful-session-count"), True, "not a non-negative integer"),
    ((*P0, "failure-details"), {}, "not a JSON array (an object)"),
    (DETAIL, [], "not a JSON object (an array)"),
    ((*DETAIL, "result-type"), 7, "not a string (a number)"),
    ((*DETAIL, "failed-session-count"), -3, "not a non-negative integer"),
    ((*DETAIL, "sending-mta-ip"), "999.1.1.1", '"999.1.1.1" is not an IP address'),
    ((*DETAIL, "receiving-ip"), 5, "not a string (a number)"),
    ((*DETAIL, "receiving-mx-hostname"), False, "not a string (a boolean)"),
    ((*DETAIL, "additional-information"), {}, "not a string (an object)"),
    ((*DETAIL, "failure-reason-code"), 42, "not a string (a number)"),
]


@pytest.mark.parametrize(("path", "value", "problem"), WRONG, ids=lambda v: str(v)[:40])
def test_wrong_types_name_the_path(
    path: tuple[str | int, ...], value: object, problem: str
) -> None:
    message = parse_error(variant(path, value))
    assert message.startswith(f"reports/x.json: {rendered(path)}"), message
    assert problem in message


BAD_DATES = [
    "2026-11-29",
    "2026-11-29 00:00:00Z",
    "2026-11-29T00:00Z",
    "20261129T000000Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-29T24:00:00Z",
    "2026-11-29T00:00:00+25:00",
    "2026-11-29T00:00:00+0100",
    "yesterday",
    "",
]


@pytest.mark.parametrize("value", BAD_DATES)
def test_dates_must_be_rfc3339(value: str) -> None:
    message = parse_error(variant(("date-range", "start-datetime"), value))
    assert message.startswith("reports/x.json: date-range.start-datetime: ")
    assert "is not an RFC 3339 date-time" in message


GOOD_DATES = [
    ("2026-11-29T00:00:00Z", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-29t00:00:00z", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-29T01:30:00+01:30", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-28T19:00:00-05:00", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-29T00:00:00.25Z", datetime(2026, 11, 29, 0, 0, 0, 250000, tzinfo=UTC)),
    ("2026-11-28T23:59:60Z", datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)),  # leap second
]


@pytest.mark.parametrize(("value", "expected"), GOOD_DATES)
def test_dates_are_read_as_utc(value: str, expected: datetime) -> None:
    report = parse_report(variant(("date-range", "start-datetime"), value), "x")
    assert report.start == expected
    assert report.start.utcoffset() is not None
    assert report.start.utcoffset().total_seconds() == 0
    assert report.deviations == ()


def test_a_date_without_offset_is_read_as_utc_and_recorded() -> None:
    report = parse_report(variant(("date-range", "end-datetime"), "2026-11-29T23:59:59"), "x")
    assert report.end == datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)
    assert report.deviations == ("date-range.end-datetime: no UTC offset (read as UTC)",)


def test_end_before_start_is_refused() -> None:
    message = parse_error(variant(("date-range", "end-datetime"), "2026-11-28T00:00:00Z"))
    assert message == "reports/x.json: date-range: end-datetime is before start-datetime"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"[]", "reports/x.json: not a JSON object (an array)"),
        (b"null", "reports/x.json: not a JSON object (null)"),
        (b"", "reports/x.json: not JSON: Expecting value"),
        (b'{"a": 1,}', "reports/x.json: not JSON: Expecting property name"),
        (b'{"a": "\xff\xfe\xfa"}', "reports/x.json: not JSON: not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "reports/x.json: not JSON: nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "reports/x.json: not JSON: "),
    ],
    ids=["array", "null", "empty", "trailing-comma", "not-utf8", "deep", "huge-int"],
)
def test_documents_that_are_not_reports(data: bytes, problem: str) -> None:
    assert parse_error(data).startswith(problem)


def test_mx_host_string_array_pattern_or_absent() -> None:
    shapes: list[tuple[object, tuple[str, ...]]] = [
        ("*.mail.Example.TEST.", ("*.mail.example.test",)),
        (["mx1.example.test", "MX2.example.test."], ("mx1.example.test", "mx2.example.test")),
        ([], ()),
        ("", ()),
        (None, ()),
    ]
    for value, expected in shapes:
        report = parse_report(variant((*POLICY, "mx-host"), value), "x")
        assert report.policies[0].mx_hosts == expected, value
    absent = parse_report(variant((*POLICY, "mx-host"), delete=True), "x")
    assert absent.policies[0].mx_hosts == ()
    document = copy.deepcopy(MINIMAL)
    del document["policies"][0]["policy"]["mx-host"]
    document["policies"][0]["policy"]["mx-host-pattern"] = ["*.Example.test"]
    pattern = parse_report(json.dumps(document).encode(), "x")
    assert pattern.policies[0].mx_hosts == ("*.example.test",)


def test_optional_fields_and_normalisation() -> None:
    document = copy.deepcopy(MINIMAL)
    document["policies"][0]["policy"]["policy-domain"] = "MX1.Example.Test."
    detail = document["policies"][0]["failure-details"][0]
    detail.update(
        {
            "sending-mta-ip": "2001:DB8:abcd:0012::1",
            "receiving-ip": "",
            "receiving-mx-hostname": "Mx1.Example.Test.",
            "receiving-mx-helo": "mx1 ESMTP",
            "failure-error-code": "X509_V_ERR_CERT_HAS_EXPIRED",
            "some-future-field": {"ignored": True},
        }
    )
    del document["policies"][0]["policy"]["policy-string"]
    report = parse_report(json.dumps(document).encode(), "x")
    policy = report.policies[0]
    assert policy.policy_domain == "mx1.example.test"
    assert policy.policy_strings == ()
    failure = policy.failures[0]
    assert failure.sending_mta_ip == "2001:db8:abcd:12::1"
    assert failure.receiving_ip is None
    assert failure.receiving_mx_hostname == "mx1.example.test"
    assert failure.receiving_mx_helo == "mx1 ESMTP"
    assert failure.failure_reason_code == "X509_V_ERR_CERT_HAS_EXPIRED"
    assert failure.additional_information is None


def test_policy_string_as_one_string_is_a_deviation() -> None:
    report = parse_report(variant((*POLICY, "policy-string"), "version: STSv1"), "x")
    assert report.policies[0].policy_strings == ("version: STSv1",)
    assert report.deviations == ("policies[0].policy.policy-string: a string, not an array",)


def test_errors_stay_on_one_line_whatever_the_input() -> None:
    message = parse_error(
        variant((*POLICY, "policy-type"), "evil\nline\x1b[2J" + "x" * 500), "dir/a\nb.json"
    )
    assert message.startswith("dir/a\\nb.json: policies[0].policy.policy-type: ")
    assert "\x1b" not in message
    assert len(message) < 200


# -- the corpus -------------------------------------------------------------------------------


def test_rfc8460_appendix_b_example() -> None:
    report = parse_report((GOOD / "rfc8460-appendix-b.json").read_bytes(), "appendix-b")
    assert report.organization_name == "Company-X"
    assert report.contact_info == "sts-reporting@company-x.example"
    assert report.identity == report.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    assert (report.start, report.end) == (
        datetime(2016, 4, 1, tzinfo=UTC),
        datetime(2016, 4, 1, 23, 59, 59, tzinfo=UTC),
    )
    (policy,) = report.policies
    assert policy.policy_type == "sts"
    assert policy.policy_domain == "company-y.example"
    assert policy.mx_hosts == ("*.mail.company-y.example",)
    assert policy.policy_strings == (
        "version: STSv1",
        "mode: testing",
        "mx: *.mail.company-y.example",
        "max_age: 86400",
    )
    assert (policy.successful, policy.failed) == (5326, 303)
    assert [(f.result_type, f.failed_session_count) for f in policy.failures] == [
        ("certificate-expired", 100),
        ("starttls-not-supported", 200),
        ("validation-failure", 3),
    ]
    expired, starttls, validation = policy.failures
    assert expired.sending_mta_ip == "2001:db8:abcd:12::1"
    assert expired.receiving_ip is None
    assert starttls.receiving_ip == "203.0.113.56"
    assert starttls.additional_information is not None
    assert starttls.additional_information.startswith("https://reports.company-x.example/")
    assert validation.failure_reason_code == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    assert validation.receiving_mx_hostname == "mx-backup.mail.company-y.example"
    assert all(f.registered and not f.dane for f in policy.failures)


def test_the_appendix_as_printed_is_not_json() -> None:
    """The RFC wraps a string across two lines (a raw newline is not allowed in JSON)."""
    message = parse_error((BAD / "rfc8460-appendix-b-as-printed.json").read_bytes(), "printed")
    assert message.startswith("printed: not JSON: Invalid control character at: line 32")


def test_every_registered_result_type_and_an_unknown_one() -> None:
    report = parse_report((GOOD / "provider-dane-all-types.json").read_bytes(), "provider")
    failures = [f for policy in report.policies for f in policy.failures]
    kinds = {f.result_type for f in failures}
    assert kinds == REGISTERED_RESULT_TYPES | {"certificate-revoked"}
    assert len(REGISTERED_RESULT_TYPES) == 11
    assert {f.result_type for f in failures if not f.registered} == {"certificate-revoked"}
    assert {f.result_type for f in failures if f.dane} == DANE_RESULT_TYPES
    assert [p.policy_type for p in report.policies] == ["tlsa", "tlsa", "sts"]
    assert [p.policy_domain for p in report.policies] == [
        "mx1.example.test",
        "mx2.example.test",
        "example.test",
    ]
    assert report.failed_sessions == 57 + 14 + 9
    assert report.successful_sessions == 9120 + 4410 + 120
    for policy in report.policies:
        assert sum(f.failed_session_count for f in policy.failures) == policy.failed


def test_large_sender_shapes() -> None:
    google = parse_report((GOOD / "google-sts.json").read_bytes(), "google")
    assert google.policies[0].mx_hosts == ("mx1.example.test", "mx2.example.test")
    assert google.policies[0].failures == ()
    assert google.deviations == ()
    microsoft = parse_report((GOOD / "microsoft-sts.json").read_bytes(), "microsoft")
    assert microsoft.policies[0].mx_hosts == ()
    assert microsoft.start == datetime(2026, 11, 29, tzinfo=UTC)
    assert len(microsoft.deviations) == 2
    mailru = parse_report((GOOD / "mailru-sts.json").read_bytes(), "mailru")
    (failure,) = mailru.policies[0].failures
    assert failure.sending_mta_ip is None
    assert failure.receiving_mx_hostname is None
    assert mailru.policies[0].policy_strings == ()
    empty = parse_report((GOOD / "empty-fields.json").read_bytes(), "empty")
    assert empty.policies[0].policy_type == "no-policy-found"
    assert empty.policies[0].policy_domain == "example.test"
    assert empty.start == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)


GOOD_JSON = sorted(GOOD.glob("*.json"))


@pytest.mark.parametrize("path", GOOD_JSON, ids=lambda p: p.name)
def test_normalized_json_round_trips(path: Path) -> None:
    report = parse_report(path.read_bytes(), path.name)
    document = report_json(report)
    text = json.dumps(document)
    assert report_from_json(json.loads(text)) == report
    again = parse_report(text.encode(), "normalized")
    assert again == report
    assert report_digest(again) == report_digest(report)
    if report.deviations:
        assert document[DEVIATIONS_KEY] == list(report.deviations)
    changed = report_json(report)
    changed["organization-name"] = str(changed["organization-name"]) + " (changed)"
    assert report_digest(report_from_json(changed)) != report_digest(report)


def test_a_corrupt_stored_copy_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match=r"^stored report r-9: report-id: missing"):
        report_from_json({**json.loads(variant(("report-id",), delete=True))}, "stored report r-9")


# -- sources ----------------------------------------------------------------------------------


def ingest(
    sources: list[str] | list[Path], limits: Limits | None = None
) -> tuple[list[tuple[str, Report]], list[str]]:
    warnings: list[str] = []
    found = list(read_reports([str(s) for s in sources], limits or Limits(), warnings.append))
    for warning in warnings:
        assert "\n" not in warning, warning
        assert "\r" not in warning, warning
    return found, warnings


EXPECTED_GOOD = {
    "dane-mx1.json": ["dane-sender.example!example.test!1795996800!1796083199"],
    "dane-report.eml": ["dane-sender.example!example.test!1795996800!1796083199"],
    "empty-fields.json": ["2026-11-29T00:00:00Z_example.test"],
    "google-sts.json": ["2026-11-29T00:00:00Z_example.test"],
    "google-sts.json.gz": ["2026-11-29T00:00:00Z_example.test"],
    "json-attachment.eml": ["hosting.example-2026-11-28-example.test"],
    "maildir": [
        "2026-11-29T00:00:00Z_example.test",
        "<20261129.mx-fleet.7f3a@provider.example>",
    ],
    "mailru-sts.json": ["b28254de-7b2e-be36-bb5c-4c3b92da8b25@mail.example"],
    "microsoft-report.eml": ["134089344000000000+example.test"],
    "microsoft-sts.json": ["134089344000000000+example.test"],
    "mx-host-pattern.json": ["hosting.example-2026-11-28-example.test"],
    "provider-dane-all-types.json": ["<20261129.mx-fleet.7f3a@provider.example>"],
    "reports.mbox": [
        "b28254de-7b2e-be36-bb5c-4c3b92da8b25@mail.example",
        "2026-11-29T00:00:00Z_example.test",
        "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    ],
    "rfc8460-appendix-b.json": ["5065427c-23d3-47ca-b6e0-946ea0e8c4be"],
}


def test_every_good_corpus_source_on_its_own() -> None:
    assert sorted(p.name for p in GOOD.iterdir()) == sorted(EXPECTED_GOOD)
    for name, ids in EXPECTED_GOOD.items():
        found, warnings = ingest([GOOD / name])
        assert warnings == [], name
        assert [report.report_id for _, report in found] == ids, name
        for origin, _ in found:
            assert origin.startswith(str(GOOD / name)), origin


def test_the_good_directory_in_name_order() -> None:
    found, warnings = ingest([GOOD])
    assert warnings == []
    assert [r.report_id for _, r in found] == [
        i for name in sorted(EXPECTED_GOOD) for i in EXPECTED_GOOD[name]
    ]


def test_mailbox_origins_name_the_message() -> None:
    found, _ = ingest([GOOD / "reports.mbox"])
    assert [origin for origin, _ in found] == [
        f"{GOOD}/reports.mbox message 1 <b28254de@mail.example>, attachment "
        "mail.example!example.test!1795910400!1795996800.json",
        f"{GOOD}/reports.mbox message 2 <reporter-20261129@reporter.example>, attachment "
        "reporter.example!example.test!1795906800!1795993199.json.gz",
        f"{GOOD}/reports.mbox message 3 <5065427c@company-x.example>, attachment "
        "company-x.example!company-y.example!1459468800!1459555199.json.gz",
    ]
    maildir, _ = ingest([GOOD / "maildir"])
    assert maildir[0][0].startswith(f"{GOOD}/maildir/cur/1796083300.M1P100.corpus:2,S <")
    assert maildir[1][0].startswith(f"{GOOD}/maildir/new/1796083400.M2P100.corpus <")


EXPECTED_BAD = {
    "bad-json.json": "bad-json.json: not JSON: Expecting property name",
    "corrupt-gzip-attachment.eml": (
        "corrupt-gzip-attachment.eml <flaky-1@flaky.example>, attachment "
        "flaky.example!example.test!1795910400!1795996799.json.gz: corrupt gzip data"
    ),
    "missing-report-id.json": "missing-report-id.json: report-id: missing",
    "non-report-attachment.eml": (
        "non-report-attachment.eml <invoice-1@sender.example>: no TLS-RPT report in the message "
        "(parts: text/plain, application/pdf 'invoice.pdf')"
    ),
    "rfc8460-appendix-b-as-printed.json": "rfc8460-appendix-b-as-printed.json: not JSON:",
    "truncated.json.gz": "truncated.json.gz: truncated gzip data",
    "wrong-type.json": (
        "wrong-type.json: policies[0].summary.total-failure-session-count: "
        "not a non-negative integer"
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BAD))
def test_each_malformed_input_is_exactly_one_warning_naming_it(name: str) -> None:
    found, warnings = ingest([BAD / name])
    assert found == []
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{BAD}/{EXPECTED_BAD[name]}"), warnings[0]


def test_bad_inputs_do_not_stop_the_good_ones(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(GOOD, mixed)
    for path in BAD.iterdir():
        shutil.copy(path, mixed / f"zz-{path.name}")
    found, warnings = ingest([mixed])
    assert len(found) == sum(len(ids) for ids in EXPECTED_GOOD.values())
    assert len(warnings) == len(EXPECTED_BAD)
    assert all(str(mixed / "zz-") in warning for warning in warnings)


def test_files_are_recognised_by_content_without_a_telling_name(tmp_path: Path) -> None:
    shutil.copy(GOOD / "google-sts.json", tmp_path / "a-report")
    shutil.copy(GOOD / "google-sts.json.gz", tmp_path / "b-compressed")
    shutil.copy(GOOD / "dane-report.eml", tmp_path / "c-message")
    shutil.copy(GOOD / "reports.mbox", tmp_path / "d-mailbox")
    (tmp_path / "e-notes").write_text("just some notes\n")
    found, warnings = ingest([tmp_path])
    assert [Path(origin.split(" ")[0]).name for origin, _ in found] == [
        "a-report",
        "b-compressed",
        "c-message",
        "d-mailbox",
        "d-mailbox",
        "d-mailbox",
    ]
    assert warnings == [f"{tmp_path}/e-notes: not a TLS-RPT report, mail message or mailbox"]


def test_a_missing_source_is_an_error_before_anything_is_read(tmp_path: Path) -> None:
    reports = read_reports([str(GOOD / "google-sts.json"), str(tmp_path / "nope")], Limits(), print)
    with pytest.raises(InputError, match=r"nope: No such file or directory$"):
        next(reports)


def test_directories_skip_hidden_files_and_symlinked_directories(tmp_path: Path) -> None:
    shutil.copy(GOOD / "google-sts.json", tmp_path / "report.json")
    shutil.copy(GOOD / "dane-mx1.json", tmp_path / ".hidden.json")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    found, warnings = ingest([tmp_path])
    assert [origin for origin, _ in found] == [f"{tmp_path}/report.json"]
    assert warnings == []


def test_a_message_that_is_a_bare_report_part(tmp_path: Path) -> None:
    """Not multipart at all: the whole message is application/tlsrpt+json."""
    data = (GOOD / "google-sts.json").read_bytes()
    raw = b"From: r@sender.example\r\nContent-Type: application/tlsrpt+json\r\n\r\n" + data
    (tmp_path / "bare.eml").write_bytes(raw)
    found, warnings = ingest([tmp_path / "bare.eml"])
    assert [r.report_id for _, r in found] == ["2026-11-29T00:00:00Z_example.test"]
    assert warnings == []


def test_an_mbox_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "x.mbox").write_bytes(b"Subject: hi\n\nnot an mbox\n")
    found, warnings = ingest([tmp_path / "x.mbox"])
    assert found == []
    assert warnings == [f"{tmp_path}/x.mbox: not an mbox (it does not start with a 'From ' line)"]


# -- limits and the bomb ----------------------------------------------------------------------


def zero_bomb(gib: int = 1) -> bytes:
    """A real gzip file of ``gib`` GiB of zeros, ~1 MiB big (``gzip -t`` accepts it), built in
    ~0.2 s: deflate output for a MiB of zeros after a sync flush repeats, so one block is
    repeated instead of compressing the whole GiB."""
    zeros = bytes(MiB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH)
    steady = deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert steady == deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH)
    blocks = 1024 * gib
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    body = first + steady * (blocks - 2) + deflate.flush()
    return header + body + struct.pack("<II", crc, (blocks * MiB) & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zero_bomb()


def test_the_bomb_is_a_real_gigabyte(bomb: bytes) -> None:
    assert len(bomb) < 1.1 * MiB
    inflater = zlib.decompressobj(wbits=31)
    # Inflate the first 64 MiB in steps to show it is zeros and keeps going (not all of it).
    out = 0
    pending = bomb
    while out < 64 * MiB:
        chunk = inflater.decompress(pending, MiB)
        pending = inflater.unconsumed_tail
        assert chunk == bytes(len(chunk))
        out += len(chunk)
    assert not inflater.eof


def measure(action: Callable[[], object]) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        action()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, peak


def test_a_gzip_bomb_file_is_refused_quickly_with_bounded_memory(
    tmp_path: Path, bomb: bytes
) -> None:
    (tmp_path / "bomb.json.gz").write_bytes(bomb)
    limits = Limits()
    result: list[tuple[list[tuple[str, Report]], list[str]]] = []
    elapsed, peak = measure(lambda: result.append(ingest([tmp_path / "bomb.json.gz"], limits)))
    found, warnings = result[0]
    assert found == []
    assert warnings == [
        f"{tmp_path}/bomb.json.gz: gzip data inflates beyond {limits.decompressed_bytes} bytes "
        "(the decompressed limit); refused"
    ]
    assert elapsed < 1.0
    # The compressed file, plus at most the limit and one step of output, plus slack for the
    # bytearray's growth: nowhere near the GiB.
    assert peak < len(bomb) + 2 * limits.decompressed_bytes, peak


def test_a_gzip_bomb_attachment_is_refused(tmp_path: Path, bomb: bytes) -> None:
    message = MIMEMultipart("report", report_type="tlsrpt")
    message["Message-ID"] = "<bomb@attacker.example>"
    message.attach(MIMEText("a report, honest\n"))
    message.attach(MIMEApplication(bomb, "tlsrpt+gzip", Name="bomb.json.gz"))
    (tmp_path / "bomb.eml").write_bytes(message.as_bytes())
    elapsed, peak = measure(lambda: ingest([tmp_path / "bomb.eml"]))
    found, warnings = ingest([tmp_path / "bomb.eml"])
    assert found == []
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{tmp_path}/bomb.eml <bomb@attacker.example>, attachment ")
    assert "inflates beyond 20971520 bytes" in warnings[0]
    assert elapsed < 1.5
    assert peak < 12 * len(bomb) + 2 * Limits().decompressed_bytes, peak


def test_a_multi_member_bomb_counts_every_member() -> None:
    member = gzip.compress(bytes(MiB), compresslevel=9, mtime=0)
    with pytest.raises(Exception, match="inflates beyond 4194304 bytes"):
        gunzip_bounded(member * 64, 4 * MiB)
    assert gunzip_bounded(member * 3, 4 * MiB) == bytes(3 * MiB)


def test_gzip_edge_cases() -> None:
    data = b'{"x": 1}'
    packed = gzip.compress(data, mtime=0)
    assert gunzip_bounded(packed, 100) == data
    assert gunzip_bounded(packed + b"\0" * 16, 100) == data  # tape padding
    with pytest.raises(Exception, match="data after the end of the gzip stream"):
        gunzip_bounded(packed + b"garbage", 100)
    with pytest.raises(Exception, match="truncated gzip data"):
        gunzip_bounded(packed[:-3], 100)
    with pytest.raises(Exception, match="truncated gzip data"):
        gunzip_bounded(packed[:5], 100)
    with pytest.raises(Exception, match="inflates beyond 7 bytes"):
        gunzip_bounded(packed, 7)
    assert gunzip_bounded(packed, 8) == data


def test_size_limits_are_honoured(tmp_path: Path) -> None:
    json_size = (GOOD / "provider-dane-all-types.json").stat().st_size
    gz_size = (GOOD / "google-sts.json.gz").stat().st_size
    eml_size = (GOOD / "dane-report.eml").stat().st_size
    exact = {
        "provider-dane-all-types.json": Limits(decompressed_bytes=json_size),
        "google-sts.json.gz": Limits(compressed_bytes=gz_size),
        "dane-report.eml": Limits(message_bytes=eml_size),
    }
    for name, limits in exact.items():
        found, warnings = ingest([GOOD / name], limits)
        assert (len(found), warnings) == (1, []), name
    found, warnings = ingest(
        [GOOD / "provider-dane-all-types.json"], Limits(decompressed_bytes=json_size - 1)
    )
    assert found == []
    assert warnings == [
        f"{GOOD}/provider-dane-all-types.json: JSON over {json_size - 1} bytes (the limit); not read"
    ]
    found, warnings = ingest([GOOD / "google-sts.json.gz"], Limits(compressed_bytes=gz_size - 1))
    assert found == []
    assert warnings == [
        f"{GOOD}/google-sts.json.gz: gzip data over {gz_size - 1} bytes (the limit); not read"
    ]
    found, warnings = ingest([GOOD / "dane-report.eml"], Limits(message_bytes=eml_size - 1))
    assert found == []
    assert warnings == [
        f"{GOOD}/dane-report.eml: message over {eml_size - 1} bytes (the limit); not read"
    ]
    # A gzip attachment decoded from base64 is held to the compressed limit too.
    found, warnings = ingest([GOOD / "dane-report.eml"], Limits(compressed_bytes=100))
    assert found == []
    assert len(warnings) == 1
    assert "gzip data over 100 bytes (the compressed limit)" in warnings[0]
    # The mbox reads a message at most message_bytes, and goes on with the next.
    mbox_sizes = [len(m) for m in (GOOD / "reports.mbox").read_bytes().split(b"\nFrom ")]
    found, warnings = ingest([GOOD / "reports.mbox"], Limits(message_bytes=min(mbox_sizes) + 10))
    assert len(found) + len(warnings) == 3
    assert warnings
    assert all("(the message limit); not read" in w for w in warnings)


def test_count_limits_are_honoured(tmp_path: Path) -> None:
    found, warnings = ingest([GOOD / "reports.mbox"], Limits(messages_per_source=2))
    assert len(found) == 2
    assert warnings == [
        f"{GOOD}/reports.mbox: more than 2 messages or files (the per-source limit); the rest not read"
    ]
    found, warnings = ingest([GOOD / "maildir"], Limits(messages_per_source=1))
    assert len(found) == 1
    assert len(warnings) == 1
    found, warnings = ingest([GOOD], Limits(messages_per_source=5))
    assert len(found) == 5
    assert len(warnings) == 1
    # Each source has its own budget.
    found, warnings = ingest(
        [GOOD / "maildir", GOOD / "reports.mbox"], Limits(messages_per_source=2)
    )
    assert len(found) == 4
    assert len(warnings) == 1

    message = MIMEMultipart("report", report_type="tlsrpt")
    message.attach(MIMEText("three reports\n"))
    for name in ("google-sts.json", "dane-mx1.json", "mailru-sts.json"):
        part = MIMEApplication((GOOD / name).read_bytes(), "tlsrpt+json")
        part.add_header("Content-Disposition", "attachment", filename=name)
        message.attach(part)
    (tmp_path / "three.eml").write_bytes(message.as_bytes())
    found, warnings = ingest([tmp_path / "three.eml"], Limits(reports_per_message=2))
    assert [origin.rsplit(" ", 1)[1] for origin, _ in found] == ["google-sts.json", "dane-mx1.json"]
    assert warnings == [f"{tmp_path}/three.eml: more than 2 report parts; the rest skipped"]
    found, warnings = ingest([tmp_path / "three.eml"])
    assert len(found) == 3
    assert warnings == []


def test_a_named_pipe_is_a_warning_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    found, warnings = ingest([fifo])
    assert found == []
    assert warnings == [f"{fifo}: not a regular file"]
    shutil.copy(GOOD / "google-sts.json", tmp_path / "report.json")
    found, warnings = ingest([tmp_path])  # in a directory walk, only regular files are read
    assert len(found) == 1
    assert warnings == []


def test_mime_parameters_the_stdlib_cannot_decode(tmp_path: Path) -> None:
    """Mixed RFC 2231 ``x*0=`` and ``x*=`` parameters make ``email`` raise TypeError (found by
    fuzzing): a broken boundary is one warning, a broken file name just has no name."""
    report = (GOOD / "google-sts.json").read_bytes()
    (tmp_path / "boundary.eml").write_bytes(
        b'Content-Type: multipart/report; report-type=tlsrpt; boundary*0="a"; boundary*="b"\r\n'
        b"\r\n--a\r\nContent-Type: application/tlsrpt+json\r\n\r\n" + report + b"\r\n--a--\r\n"
    )
    found, warnings = ingest([tmp_path / "boundary.eml"])
    assert found == []
    assert warnings == [
        f"{tmp_path}/boundary.eml: not a readable mail message (malformed MIME parameters)"
    ]
    (tmp_path / "filename.eml").write_bytes(
        b"Content-Type: application/tlsrpt+json\r\n"
        b'Content-Disposition: attachment; filename*0="a"; filename*="b.json"\r\n\r\n' + report
    )
    found, warnings = ingest([tmp_path / "filename.eml"])
    assert [origin for origin, _ in found] == [
        f"{tmp_path}/filename.eml, attachment application/tlsrpt+json"
    ]
    assert warnings == []


# -- IMAP settings (no server needed: refused before any connection) --------------------------


def test_imap_settings_that_cannot_work(tmp_path: Path) -> None:
    from rollover.errors import ConfigError
    from rollover.tlsrpt.imap import ImapSettings, fetch_reports, mailbox_name

    (tmp_path / "password").write_text("s3cret\n")
    base = ImapSettings("localhost", 1, "implicit", "u", str(tmp_path / "password"))
    cases = [
        ({"tls": "none"}, r"^imap\.tls: 'none': TLS is required \(use implicit or starttls\)$"),
        ({"flag": "two words"}, r"^imap\.flag: "),
        ({"flag": "\\Deleted"}, r"^imap\.flag: "),
        ({"port": 0}, r"^imap\.port: 0: not a port number$"),
        ({"password_file": str(tmp_path / "nope")}, r"^imap\.password_file: .*: No such file"),
    ]
    for changes, pattern in cases:
        settings = ImapSettings(**{**base.__dict__, **changes})
        with pytest.raises(ConfigError, match=pattern):
            next(fetch_reports(settings, Limits(), print))
    assert mailbox_name("INBOX") == '"INBOX"'
    assert mailbox_name('a"b\\c') == '"a\\"b\\\\c"'
    assert mailbox_name("Rapports/traités & co") == '"Rapports/trait&AOk-s &- co"'
    assert mailbox_name("日本") == '"&ZeVnLA-"'
