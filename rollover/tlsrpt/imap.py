"""Reading RFC 8460 reports from an IMAP folder (RFC 9051 / RFC 3501, with stdlib ``imaplib``).

TLS is required: implicit TLS (RFC 8314, port 993) or STARTTLS (RFC 3501 section 6.2.1); a
server that offers no STARTTLS is refused before the password is sent. The server's certificate
is validated against the system trust store, or ``ca_file`` (tests), and its name checked.

Messages already carrying the processed ``flag`` (``\\Seen`` or a keyword such as
``rollover-ingested``) are skipped. A message is marked processed only when every report it
carried has been acknowledged through the callable yielded with it (the caller acknowledges
after storing): the flag is set, and the message moved to ``done_folder`` when one is set (with
``MOVE``, RFC 6851; a server without it gets ``COPY`` and the original keeps its flag). Nothing
is ever deleted or expunged. Bodies are fetched with ``BODY.PEEK[]``, which leaves ``\\Seen``
alone.

Errors: a connection, TLS, login or folder failure is an :class:`~rollover.errors.InputError`
(exit 3), because the mailbox is a source of input that cannot be used, as an unreadable report
file is; :class:`~rollover.errors.ProviderError` means a DNS provider. Settings that cannot work
(plaintext asked for, a password file that cannot be read, a bad keyword) are a
:class:`~rollover.errors.ConfigError` (exit 4). The password never appears in a message: it is
read from ``password_file``, sent only inside the TLS session, and scrubbed from any server text
that is quoted.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rollover.errors import ConfigError, InputError
from rollover.tlsrpt.report import Report, one_line
from rollover.tlsrpt.sources import Limits, Warn, reports_in_message

TLS_MODES = ("implicit", "starttls")
SEEN = "\\Seen"
DEFAULT_KEYWORD = "rollover-ingested"
# RFC 9051 section 9: flag-keyword = atom; atom-specials are ( ) { SP CTL % * " \ ]
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")


@dataclass(frozen=True)
class ImapSettings:
    """The ``imap:`` section of the configuration."""

    host: str
    port: int
    tls: str
    user: str
    password_file: str
    folder: str = "INBOX"
    done_folder: str | None = None
    flag: str = DEFAULT_KEYWORD
    ca_file: str | None = None
    timeout: float = 30.0

    @property
    def where(self) -> str:
        """The mailbox as RFC 5092 names it (never the password)."""
        return f"imap://{self.user}@{self.host}:{self.port}/{self.folder}"


Mark = Callable[[], None]


def fetch_reports(
    settings: ImapSettings, limits: Limits, warn: Warn
) -> Iterator[tuple[str, Report, Mark]]:
    """``(origin, report, mark)`` for every report in the unprocessed messages of the folder.

    Call ``mark()`` after the report is stored, while iterating (the connection closes when the
    iteration ends). A message is marked processed when all its reports are marked; a message
    without a readable report is warned about and left as it is.
    """
    _check_settings(settings)
    password = _read_password(settings)
    session = _Session(settings, password)
    try:
        session.open()
        uids = session.unprocessed()
        if len(uids) > limits.messages_per_source:
            warn(
                f"{one_line(settings.where)}: {len(uids)} unprocessed messages; reading the first "
                f"{limits.messages_per_source} (the per-source limit)"
            )
            uids = uids[: limits.messages_per_source]
        sizes = session.sizes(uids)
        for uid in uids:
            origin = one_line(f"{settings.where};UID={uid}")
            size = sizes.get(uid)
            if size is not None and size > limits.message_bytes:
                warn(f"{origin}: over {limits.message_bytes} bytes (the message limit); not read")
                continue
            raw = session.body(uid)
            if raw is None:
                warn(f"{origin}: the server returned no message")
                continue
            if len(raw) > limits.message_bytes:
                warn(f"{origin}: over {limits.message_bytes} bytes (the message limit); not read")
                continue
            found = list(reports_in_message(raw, origin, limits, warn))
            pending = set(range(len(found)))
            for index, (where, report) in enumerate(found):
                yield where, report, session.acknowledger(uid, index, pending)
    finally:
        session.close()


def _check_settings(settings: ImapSettings) -> None:
    if settings.tls not in TLS_MODES:
        raise ConfigError(
            f"imap.tls: {settings.tls!r}: TLS is required (use {' or '.join(TLS_MODES)})"
        )
    if settings.flag != SEEN and (
        settings.flag.startswith("\\") or not _KEYWORD.fullmatch(settings.flag)
    ):
        raise ConfigError(
            f"imap.flag: {one_line(settings.flag, 60)!r}: use \\Seen or a keyword (letters, "
            "digits, - _ . and no spaces)"
        )
    if not 0 < settings.port < 65536:
        raise ConfigError(f"imap.port: {settings.port}: not a port number")


def _read_password(settings: ImapSettings) -> str:
    try:
        with open(settings.password_file, encoding="utf-8") as handle:
            password = handle.read(4096).rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"imap.password_file: {settings.password_file}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"imap.password_file: {settings.password_file}: not UTF-8 text") from None
    if not password:
        raise ConfigError(f"imap.password_file: {settings.password_file}: empty")
    return password


def mailbox_name(name: str) -> str:
    """``name`` as an IMAP quoted string in modified UTF-7 (RFC 3501 section 5.1.3)."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            text = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            encoded.append(f"&{text}-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return _quoted("".join(encoded))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Session:
    """One authenticated IMAP connection with the folder selected."""

    def __init__(self, settings: ImapSettings, password: str) -> None:
        self.settings = settings
        self._password = password
        self.conn: imaplib.IMAP4 | None = None
        self.where = one_line(settings.where)

    # -- messages --------------------------------------------------------------------------
    def fail(self, problem: str) -> InputError:
        return InputError(f"{self.where}: {self._scrub(problem)}")

    def _scrub(self, text: str) -> str:
        text = one_line(text, 300)
        return text.replace(self._password, "***") if self._password else text

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {exc.verify_message or exc.reason}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed: {exc.reason or exc}"
        if isinstance(exc, imaplib.IMAP4.error):
            text = exc.args[0] if exc.args else exc
            return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        if isinstance(exc, OSError):
            return exc.strerror or str(exc) or type(exc).__name__
        return str(exc)

    def _ok(self, result: tuple[str, list[object]], doing: str) -> list[object]:
        typ, data = result
        if typ != "OK":
            raise self.fail(f"{doing}: {typ} {_text(data)}")
        return data

    # -- connection ------------------------------------------------------------------------
    def open(self) -> None:
        settings = self.settings
        context = ssl.create_default_context(cafile=settings.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if settings.tls == "implicit":
                self.conn = imaplib.IMAP4_SSL(
                    settings.host, settings.port, ssl_context=context, timeout=settings.timeout
                )
            else:
                self.conn = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
                if "STARTTLS" not in self.conn.capabilities:
                    raise self.fail("the server offers no STARTTLS; refusing to log in without TLS")
                self.conn.starttls(ssl_context=context)
        except InputError:
            raise
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self.fail(f"cannot connect with TLS: {self._reason(exc)}") from None
        self._login()
        self._select()

    def _login(self) -> None:
        conn = self._conn()
        user, password = self.settings.user, self._password
        try:
            if "AUTH=PLAIN" in conn.capabilities:
                # RFC 4616: authzid NUL authcid NUL passwd, UTF-8; unlike LOGIN, any characters.
                token = f"\0{user}\0{password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: token)
            else:
                conn.login(_quoted(user), password)
        except (OSError, imaplib.IMAP4.error, UnicodeEncodeError) as exc:
            raise self.fail(f"login as {user} refused: {self._reason(exc)}") from None
        try:
            # Servers announce more after login (MOVE among them); imaplib keeps the first list.
            typ, data = conn.capability()
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self.fail(f"CAPABILITY: {self._reason(exc)}") from None
        announced = b" ".join(item for item in data if isinstance(item, bytes))
        words = announced.decode("ascii", "replace")
        if typ == "OK" and words.split():
            conn.capabilities = tuple(sorted(set(words.upper().split())))

    def _select(self) -> None:
        conn, settings = self._conn(), self.settings
        try:
            typ, data = conn.select(mailbox_name(settings.folder))
            if typ != "OK":
                raise self.fail(f"folder {settings.folder!r} cannot be opened: {_text(data)}")
            if settings.flag != SEEN:
                _, flags = conn.response("PERMANENTFLAGS")
                permanent = _text(flags)
                if "\\*" not in permanent and settings.flag not in permanent.split():
                    raise self.fail(
                        f"folder {settings.folder!r} does not keep the keyword {settings.flag}"
                    )
            if settings.done_folder is not None:
                typ, data = conn.status(mailbox_name(settings.done_folder), "(MESSAGES)")
                if typ != "OK":
                    raise self.fail(
                        f"done folder {settings.done_folder!r} cannot be used: {_text(data)}"
                    )
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self.fail(self._reason(exc)) from None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        # Not CLOSE: it expunges messages someone else flagged \Deleted; LOGOUT does not.
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()

    def _conn(self) -> imaplib.IMAP4:
        if self.conn is None:
            raise InputError(
                f"{self.where}: the IMAP connection is closed (mark messages while iterating)"
            )
        return self.conn

    # -- folder contents ---------------------------------------------------------------------
    def _command(self, *args: str) -> list[object]:
        try:
            return self._ok(self._conn().uid(*args), f"UID {args[0]}")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self.fail(f"UID {args[0]}: {self._reason(exc)}") from None

    def unprocessed(self) -> list[str]:
        flag = self.settings.flag
        criteria = ("UNSEEN",) if flag == SEEN else ("UNKEYWORD", flag)
        data = self._command("SEARCH", "UNDELETED", *criteria)
        return [uid for uid in _text(data).split() if uid.isdigit()]

    def sizes(self, uids: list[str]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for start in range(0, len(uids), 500):
            batch = ",".join(uids[start : start + 500])
            for item in self._command("FETCH", batch, "(RFC822.SIZE)"):
                line = item[0] if isinstance(item, tuple) else item
                match = _SIZE.search(line) if isinstance(line, bytes) else None
                if match:
                    uid = match.group(1) or match.group(4)
                    size = match.group(2) or match.group(3)
                    sizes[uid.decode()] = int(size)
        return sizes

    def body(self, uid: str) -> bytes | None:
        for item in self._command("FETCH", uid, "(BODY.PEEK[])"):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None

    def acknowledger(self, uid: str, index: int, pending: set[int]) -> Mark:
        def mark() -> None:
            if index not in pending:
                return
            pending.discard(index)
            if not pending:
                self.mark_processed(uid)

        return mark

    def mark_processed(self, uid: str) -> None:
        """Flag the message, then move it to the done folder if one is set (never delete)."""
        self._command("STORE", uid, "+FLAGS.SILENT", f"({self.settings.flag})")
        done = self.settings.done_folder
        if done is None:
            return
        verb = "MOVE" if "MOVE" in self._conn().capabilities else "COPY"
        self._command(verb, uid, mailbox_name(done))


def _text(data: object) -> str:
    """Server response data as one line of text."""
    parts: list[str] = []
    items = data if isinstance(data, list | tuple) else [data]
    for item in items:
        if isinstance(item, tuple):
            parts.append(_text(list(item)))
        elif isinstance(item, bytes):
            parts.append(item.decode("utf-8", "replace"))
        elif item is not None:
            parts.append(str(item))
    return one_line(" ".join(parts), 300)
