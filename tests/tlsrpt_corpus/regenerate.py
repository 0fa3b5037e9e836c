"""Rebuild the corpus files made from the JSON reports: gzip files, mail messages, the Maildir and
the mbox. Deterministic (fixed boundaries, dates and gzip mtime), so a rerun changes nothing.

    .venv/bin/python tests/tlsrpt_corpus/regenerate.py
"""

from __future__ import annotations

import gzip
import shutil
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOOD, BAD = HERE / "good", HERE / "bad"


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def report_message(
    *,
    submitter: str,
    domain: str,
    report_id: str,
    attachment: bytes,
    filename: str,
    content_type: str = "application/tlsrpt+gzip",
    message_id: str,
    date: str,
    boundary: str,
    body: str = "",
) -> bytes:
    """A report message as RFC 8460 section 5.3 lays it out (multipart/report,
    report-type=tlsrpt, a human-readable part, then the report)."""
    message = MIMEMultipart("report", boundary=boundary, report_type="tlsrpt")
    message["From"] = f"tlsrpt-noreply@{submitter}"
    message["To"] = "tlsrpt@example.test"
    message["Date"] = date
    message["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"
    message["TLS-Report-Domain"] = domain
    message["TLS-Report-Submitter"] = submitter
    message["Message-ID"] = message_id
    message.attach(MIMEText(body or f"This is an aggregate TLS report from {submitter}\n"))
    maintype, subtype = content_type.split("/")
    part = MIMEApplication(attachment, subtype)
    if maintype != "application":
        raise ValueError(content_type)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    message.attach(part)
    return message.as_bytes(policy=SMTP)


def main() -> None:
    dane = (GOOD / "dane-mx1.json").read_bytes()
    google = (GOOD / "google-sts.json").read_bytes()
    microsoft = (GOOD / "microsoft-sts.json").read_bytes()
    provider = (GOOD / "provider-dane-all-types.json").read_bytes()
    mailru = (GOOD / "mailru-sts.json").read_bytes()
    empty = (GOOD / "empty-fields.json").read_bytes()
    rfc = (GOOD / "rfc8460-appendix-b.json").read_bytes()
    pattern = (GOOD / "mx-host-pattern.json").read_bytes()

    (GOOD / "google-sts.json.gz").write_bytes(gz(google))
    whole = gz(dane)
    (BAD / "truncated.json.gz").write_bytes(whole[: len(whole) // 2])

    (GOOD / "dane-report.eml").write_bytes(
        report_message(
            submitter="dane-sender.example",
            domain="example.test",
            report_id="dane-sender.example!example.test!1795996800!1796083199",
            attachment=gz(dane),
            filename="dane-sender.example!example.test!1795996800!1796083199.json.gz",
            message_id="<dane-20261130@dane-sender.example>",
            date="Tue, 01 Dec 2026 02:10:00 +0000",
            boundary="tlsrpt-boundary-dane",
        )
    )
    (GOOD / "microsoft-report.eml").write_bytes(
        report_message(
            submitter="microsoft.com",
            domain="example.test",
            report_id="134089344000000000+example.test",
            attachment=gz(microsoft),
            filename="microsoft.com!example.test!1795910400!1795996799!134089344000000000.json.gz",
            message_id="<134089344000000000+example.test@example.test>",
            date="Mon, 30 Nov 2026 05:09:22 +0000",
            boundary="_078e4900-4595-46ae-b003-a8055864441a_",
        )
    )
    # Some senders label the report application/json and name it .json (RFC 8460 wants
    # application/tlsrpt+json).
    (GOOD / "json-attachment.eml").write_bytes(
        report_message(
            submitter="hosting.example",
            domain="example.test",
            report_id="hosting.example-2026-11-28-example.test",
            attachment=pattern,
            filename="hosting.example!example.test!1795824000!1795910399.json",
            content_type="application/json",
            message_id="<hosting-20261128@hosting.example>",
            date="Sun, 29 Nov 2026 01:00:00 +0000",
            boundary="tlsrpt-boundary-hosting",
        )
    )

    # A message to the TLS-RPT address whose attachment is not a TLS-RPT report.
    mixed = MIMEMultipart("mixed", boundary="not-a-report-boundary")
    mixed["From"] = "someone@sender.example"
    mixed["To"] = "tlsrpt@example.test"
    mixed["Subject"] = "Invoice"
    mixed["Date"] = "Mon, 30 Nov 2026 12:00:00 +0000"
    mixed["Message-ID"] = "<invoice-1@sender.example>"
    mixed.attach(MIMEText("Please find the invoice attached.\n"))
    pdf = MIMEApplication(
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "pdf"
    )
    pdf.add_header("Content-Disposition", "attachment", filename="invoice.pdf")
    mixed.attach(pdf)
    (BAD / "non-report-attachment.eml").write_bytes(mixed.as_bytes(policy=SMTP))

    # A report part whose gzip data is corrupt in the middle (the header and length are fine).
    corrupt = bytearray(gz(provider))
    for i in range(20, 60):
        corrupt[i] ^= 0x5A
    (BAD / "corrupt-gzip-attachment.eml").write_bytes(
        report_message(
            submitter="flaky.example",
            domain="example.test",
            report_id="flaky-1",
            attachment=bytes(corrupt),
            filename="flaky.example!example.test!1795910400!1795996799.json.gz",
            message_id="<flaky-1@flaky.example>",
            date="Mon, 30 Nov 2026 06:00:00 +0000",
            boundary="tlsrpt-boundary-flaky",
        )
    )

    maildir = GOOD / "maildir"
    shutil.rmtree(maildir, ignore_errors=True)
    for sub in ("cur", "new"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1796083300.M1P100.corpus:2,S").write_bytes(
        report_message(
            submitter="google.com",
            domain="example.test",
            report_id="2026-11-29T00:00:00Z_example.test",
            attachment=gz(google),
            filename="google.com!example.test!1795910400!1795996799!001.json.gz",
            message_id="<000000000000f47cc505e8c8905c@google.com>",
            date="Mon, 30 Nov 2026 03:10:06 -0800",
            boundary="000000000000f47cb005e8c8905b",
        )
    )
    (maildir / "new" / "1796083400.M2P100.corpus").write_bytes(
        report_message(
            submitter="provider.example",
            domain="example.test",
            report_id="20261129.mx-fleet.7f3a@provider.example",
            attachment=gz(provider),
            filename="provider.example!example.test!1795910400!1795996799.json.gz",
            content_type="application/gzip",
            message_id="<20261129.mx-fleet.7f3a@provider.example>",
            date="Mon, 30 Nov 2026 04:00:00 +0000",
            boundary="tlsrpt-boundary-provider",
        )
    )

    messages = [
        report_message(
            submitter="mail.example",
            domain="example.test",
            report_id="b28254de-7b2e-be36-bb5c-4c3b92da8b25@mail.example",
            attachment=mailru,
            filename="mail.example!example.test!1795910400!1795996800.json",
            content_type="application/tlsrpt+json",
            message_id="<b28254de@mail.example>",
            date="Mon, 30 Nov 2026 01:00:00 +0300",
            boundary="tlsrpt-boundary-mbox-1",
        ),
        report_message(
            submitter="reporter.example",
            domain="example.test",
            report_id="2026-11-29T00:00:00Z_example.test",
            attachment=gz(empty),
            filename="reporter.example!example.test!1795906800!1795993199.json.gz",
            message_id="<reporter-20261129@reporter.example>",
            date="Mon, 30 Nov 2026 02:00:00 +0000",
            boundary="tlsrpt-boundary-mbox-2",
            body="From the reporter: this line starts with From and is quoted in the mbox.\n",
        ),
        report_message(
            submitter="company-x.example",
            domain="company-y.example",
            report_id="5065427c-23d3-47ca-b6e0-946ea0e8c4be",
            attachment=gz(rfc),
            filename="company-x.example!company-y.example!1459468800!1459555199.json.gz",
            message_id="<5065427c@company-x.example>",
            date="Sat, 02 Apr 2016 00:10:00 +0000",
            boundary="tlsrpt-boundary-mbox-3",
        ),
    ]
    with open(GOOD / "reports.mbox", "wb") as mbox:
        for i, raw in enumerate(messages):
            mbox.write(
                f"From tlsrpt-noreply@sender{i}.example Mon Nov 30 0{i}:00:00 2026\n".encode()
            )
            for line in raw.replace(b"\r\n", b"\n").splitlines(keepends=True):
                # mboxrd quoting (RFC 4155): a body line starting with (>*)From gets one more >.
                stripped = line.lstrip(b">")
                mbox.write(b">" + line if stripped.startswith(b"From ") else line)
            mbox.write(b"\n")


if __name__ == "__main__":
    main()
