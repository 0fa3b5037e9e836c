"""The TLS-RPT IMAP source against a real Dovecot (tests/dovecot.py): fetching, marking by flag
and by move, TLS required, and the password kept out of every message."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from rollover.errors import ConfigError, InputError
from rollover.tlsrpt.imap import ImapSettings, fetch_reports, mailbox_name
from rollover.tlsrpt.sources import Limits
from tests.certs import make_pki, pem
from tests.dovecot import ADDRESS, HOST, Dovecot, running_dovecot

CORPUS = Path(__file__).resolve().parent / "tlsrpt_corpus"
GOOD, BAD = CORPUS / "good", CORPUS / "bad"
REPORT_MESSAGES = ("dane-report.eml", "microsoft-report.eml", "json-attachment.eml")
REPORT_IDS = [
    "dane-sender.example!example.test!1795996800!1796083199",
    "134089344000000000+example.test",
    "hosting.example-2026-11-28-example.test",
]

pytestmark = pytest.mark.lab


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def settings_for(server: Dovecot, **changes: object) -> ImapSettings:
    settings = ImapSettings(
        host=HOST,
        port=server.imaps_port,
        tls="implicit",
        user=server.user,
        password_file=str(server.password_file),
        folder="INBOX",
        ca_file=str(server.ca_file),
        timeout=10,
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def fill(server: Dovecot, *names: str) -> None:
    for name in names:
        directory = GOOD if (GOOD / name).exists() else BAD
        server.append((directory / name).read_bytes())


def fetch_and_mark(
    settings: ImapSettings, limits: Limits | None = None
) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    ids = []
    for origin, report, mark in fetch_reports(settings, limits or Limits(), warnings.append):
        assert origin.startswith(f"imap://{settings.user}@{HOST}:{settings.port}/"), origin
        ids.append(report.report_id)
        mark()
    for warning in warnings:
        assert "\n" not in warning
    return ids, warnings


def one_line_error(exc: pytest.ExceptionInfo[BaseException], server: Dovecot) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert server.password not in message
    return message


def test_fetch_mark_by_keyword_and_fetch_again(dovecot: Dovecot) -> None:
    fill(dovecot, *REPORT_MESSAGES, "non-report-attachment.eml")
    settings = settings_for(dovecot)
    ids, warnings = fetch_and_mark(settings)
    assert ids == REPORT_IDS
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"imap://tlsrpt@{HOST}:{dovecot.imaps_port}/INBOX;UID=4 <invoice-1@sender.example>: "
        "no TLS-RPT report in the message"
    )
    flags = [flag for flag, _ in dovecot.messages()]
    assert len(flags) == 4  # nothing deleted
    assert all("rollover-ingested" in f for f in flags[:3])
    assert "rollover-ingested" not in flags[3]
    assert not any("\\Seen" in f or "\\Deleted" in f for f in flags)  # BODY.PEEK, no deletion
    again, warnings = fetch_and_mark(settings)
    assert again == []
    assert len(warnings) == 1  # the message without a report is left for a person


def test_fetch_mark_by_move_with_seen(dovecot: Dovecot) -> None:
    dovecot.create("Done")
    fill(dovecot, *REPORT_MESSAGES)
    settings = settings_for(dovecot, done_folder="Done", flag="\\Seen")
    ids, warnings = fetch_and_mark(settings)
    assert (ids, warnings) == (REPORT_IDS, [])
    assert dovecot.messages("INBOX") == []
    moved = dovecot.messages("Done")
    assert [message_id for _, message_id in moved] == [
        b"Message-ID: <dane-20261130@dane-sender.example>",
        b"Message-ID: <134089344000000000+example.test@example.test>",
        b"Message-ID: <hosting-20261128@hosting.example>",
    ]
    assert all("\\Seen" in flags for flags, _ in moved)
    fill(dovecot, "dane-report.eml")
    ids, _ = fetch_and_mark(settings)
    assert ids == REPORT_IDS[:1]  # only the new one
    assert fetch_and_mark(settings) == ([], [])


def test_starttls(dovecot: Dovecot) -> None:
    fill(dovecot, *REPORT_MESSAGES)
    ids, warnings = fetch_and_mark(settings_for(dovecot, port=dovecot.imap_port, tls="starttls"))
    assert (ids, warnings) == (REPORT_IDS, [])


def test_a_message_is_marked_when_all_its_reports_are(dovecot: Dovecot) -> None:
    message = MIMEMultipart("report", report_type="tlsrpt")
    message["Message-ID"] = "<two@sender.example>"
    message.attach(MIMEText("two reports\n"))
    for name in ("google-sts.json", "dane-mx1.json"):
        part = MIMEApplication((GOOD / name).read_bytes(), "tlsrpt+json")
        part.add_header("Content-Disposition", "attachment", filename=name)
        message.attach(part)
    dovecot.append(message.as_bytes())
    settings = settings_for(dovecot)
    fetched = fetch_reports(settings, Limits(), print)
    _, first, mark_first = next(fetched)
    _, second, mark_second = next(fetched)
    assert [first.report_id, second.report_id] == [
        "2026-11-29T00:00:00Z_example.test",
        "dane-sender.example!example.test!1795996800!1796083199",
    ]
    mark_first()
    mark_first()  # idempotent
    assert "rollover-ingested" not in dovecot.messages()[0][0]
    mark_second()
    assert "rollover-ingested" in dovecot.messages()[0][0]
    with pytest.raises(StopIteration):
        next(fetched)


def test_flagged_messages_are_skipped_and_limits_hold(dovecot: Dovecot) -> None:
    dovecot.append((GOOD / "google-sts.json").read_bytes(), flags="rollover-ingested")
    fill(dovecot, *REPORT_MESSAGES)
    ids, warnings = fetch_and_mark(settings_for(dovecot), Limits(messages_per_source=2))
    assert ids == REPORT_IDS[:2]
    assert warnings == [
        f"imap://tlsrpt@{HOST}:{dovecot.imaps_port}/INBOX: 3 unprocessed messages; reading the "
        "first 2 (the per-source limit)"
    ]
    size = len((GOOD / "json-attachment.eml").read_bytes())
    ids, warnings = fetch_and_mark(settings_for(dovecot), Limits(message_bytes=size // 2))
    assert ids == []
    assert len(warnings) == 1
    assert "UID=4: over" in warnings[0]
    assert "(the message limit); not read" in warnings[0]


def test_the_iteration_must_be_open_to_mark(dovecot: Dovecot) -> None:
    fill(dovecot, "dane-report.eml")
    fetched = list(fetch_reports(settings_for(dovecot), Limits(), print))
    with pytest.raises(InputError, match="the IMAP connection is closed"):
        fetched[0][2]()


def test_wrong_password_is_one_line_without_it(dovecot: Dovecot, tmp_path: Path) -> None:
    wrong = "Wr0ng-" + dovecot.password[::-1]
    (tmp_path / "password").write_text(wrong + "\n")
    settings = settings_for(dovecot, password_file=str(tmp_path / "password"))
    with pytest.raises(InputError) as caught:
        list(fetch_reports(settings, Limits(), print))
    message = one_line_error(caught, dovecot)
    assert wrong not in message
    assert message.startswith(
        f"imap://tlsrpt@{HOST}:{dovecot.imaps_port}/INBOX: login as tlsrpt refused: "
    )
    assert "AUTHENTICATIONFAILED" in message or "Authentication failed" in message
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"imap\.password_file: .*empty: empty$"):
        list(
            fetch_reports(
                settings_for(dovecot, password_file=str(tmp_path / "empty")), Limits(), print
            )
        )
    with pytest.raises(ConfigError, match=r"imap\.password_file: .*nope: No such file"):
        list(
            fetch_reports(
                settings_for(dovecot, password_file=str(tmp_path / "nope")), Limits(), print
            )
        )


def test_plaintext_is_refused(dovecot: Dovecot) -> None:
    for mode in ("none", "plain", ""):
        with pytest.raises(ConfigError, match="TLS is required"):
            list(fetch_reports(settings_for(dovecot, tls=mode), Limits(), print))
    # Implicit TLS against the plaintext port: the handshake fails; nothing is sent in clear.
    with pytest.raises(InputError) as caught:
        list(fetch_reports(settings_for(dovecot, port=dovecot.imap_port), Limits(), print))
    assert "cannot connect with TLS: TLS failed" in one_line_error(caught, dovecot)


@contextlib.contextmanager
def server_without_starttls() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback IMAP greeter that offers no STARTTLS; records every line it receives."""
    listener = socket.create_server((ADDRESS, 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as stream:
            stream.write(b"* OK fake IMAP4rev1 ready\r\n")
            stream.flush()
            for line in stream:
                received.append(line)
                tag, _, command = line.decode().strip().partition(" ")
                if command.upper() == "CAPABILITY":
                    stream.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                if command.upper() == "LOGOUT":
                    stream.write(b"* BYE\r\n")
                stream.write(f"{tag} OK done\r\n".encode())
                stream.flush()
                if command.upper() == "LOGOUT":
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        listener.close()
        thread.join(5)


def test_starttls_is_required_when_asked_for(dovecot: Dovecot) -> None:
    with server_without_starttls() as (port, received):
        settings = settings_for(dovecot, port=port, tls="starttls")
        with pytest.raises(InputError) as caught:
            list(fetch_reports(settings, Limits(), print))
    assert "offers no STARTTLS; refusing to log in without TLS" in one_line_error(caught, dovecot)
    assert received
    assert not any(b"LOGIN" in line or b"AUTHENTICATE" in line for line in received)


def test_the_certificate_is_validated(dovecot: Dovecot, tmp_path: Path) -> None:
    other = make_pki(host=HOST, tag="other-ca", pkix=True)
    (tmp_path / "other-ca.pem").write_bytes(pem(other.root))
    fill(dovecot, "dane-report.eml")
    with pytest.raises(InputError) as caught:
        list(
            fetch_reports(
                settings_for(dovecot, ca_file=str(tmp_path / "other-ca.pem")), Limits(), print
            )
        )
    assert "TLS certificate not accepted: unable to get local issuer certificate" in one_line_error(
        caught, dovecot
    )
    with pytest.raises(InputError) as caught:
        list(fetch_reports(settings_for(dovecot, host=ADDRESS), Limits(), print))
    assert "TLS certificate not accepted: IP address mismatch" in one_line_error(caught, dovecot)
    # The system trust store does not know the test CA.
    with pytest.raises(InputError, match="TLS certificate not accepted"):
        list(fetch_reports(settings_for(dovecot, ca_file=None), Limits(), print))
    assert [flags for flags, _ in dovecot.messages()] == ["\\Recent"]  # not touched


def test_folders_must_exist(dovecot: Dovecot) -> None:
    fill(dovecot, "dane-report.eml")
    with pytest.raises(InputError) as caught:
        list(fetch_reports(settings_for(dovecot, folder="Reports"), Limits(), print))
    assert "folder 'Reports' cannot be opened" in one_line_error(caught, dovecot)
    fetched = fetch_reports(settings_for(dovecot, done_folder="Processed"), Limits(), print)
    with pytest.raises(InputError) as caught:
        next(fetched)  # refused before any report is handed out
    assert "done folder 'Processed' cannot be used" in one_line_error(caught, dovecot)


def test_non_ascii_folder_names(dovecot: Dovecot) -> None:
    assert mailbox_name("Rapports/traités & co") == '"Rapports/trait&AOk-s &- co"'
    dovecot.create(mailbox_name("Traités"))
    fill(dovecot, "dane-report.eml")
    ids, _ = fetch_and_mark(settings_for(dovecot, done_folder="Traités"))
    assert ids == REPORT_IDS[:1]
    assert len(dovecot.messages(mailbox_name("Traités"))) == 1


def test_bad_keyword_is_a_config_error(dovecot: Dovecot) -> None:
    for flag in ("two words", "\\Deleted", "a(b", ""):
        with pytest.raises(ConfigError, match=r"imap\.flag"):
            list(fetch_reports(settings_for(dovecot, flag=flag), Limits(), print))
