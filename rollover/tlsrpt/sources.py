"""Reading RFC 8460 reports from where they land: report files, mail messages and mailboxes.

A source is a path: a ``.json`` or ``.json.gz`` report, an ``.eml`` message, an mbox file, a
Maildir (``cur/`` and ``new/``; read only, nothing is moved or flagged), or a directory of any of
these (walked in name order; symbolic links to directories are not followed). Files whose name
says nothing are recognised by their first bytes.

Mail carries reports as RFC 8460 section 5.3 describes: a ``multipart/report`` with
``report-type=tlsrpt`` whose report part is ``application/tlsrpt+gzip`` or
``application/tlsrpt+json``. Parts typed ``application/gzip`` (or ``x-gzip``, ``octet-stream``)
or ``application/json`` whose file name ends in ``.json.gz`` or ``.json`` are read too, as some
senders send them so. Whether a payload is gzip is decided by its magic bytes, not its label.

Nothing here stops on a bad input: a report that does not validate, a message without a report,
bad or truncated gzip, a gzip bomb, a file over a size limit is one line through ``warn`` naming
the file (and the message's index and Message-ID in a mailbox), and reading goes on. Only a
source named on the command line that does not exist is an :class:`InputError`, raised before
anything is read.

Gzip is inflated in bounded steps (``zlib`` with ``max_length``), so a bomb is refused when its
output passes :attr:`Limits.decompressed_bytes`, never inflated into memory.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollover.errors import InputError
from rollover.tlsrpt.report import Report, one_line, parse_report

MiB = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_STEP = 256 * 1024
_MBOX_LINE = 64 * 1024
_HEAD = 512
_HEADER_LINE = re.compile(rb"[!-9;-~]+:")
_GZIP_TYPES = {"application/tlsrpt+gzip", "application/gzip", "application/x-gzip"}
_JSON_TYPES = {"application/tlsrpt+json", "application/json"}
_REPORT_TYPES = {"application/tlsrpt+gzip", "application/tlsrpt+json"}

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one ingest reads. Reports are small (a busy domain's daily report from a
    large sender is tens of kilobytes), so the defaults leave room while refusing abuse."""

    #: A gzip payload as stored: a ``.json.gz`` file or a decoded attachment.
    compressed_bytes: int = 5 * MiB
    #: A report's JSON: a ``.json`` file, or what a gzip payload inflates to.
    decompressed_bytes: int = 20 * MiB
    #: One mail message (an ``.eml``, a Maildir file, an mbox entry, an IMAP message).
    message_bytes: int = 10 * MiB
    #: Report parts read from one message.
    reports_per_message: int = 20
    #: Messages (and files) read from one source: a Maildir, an mbox, a directory tree, an IMAP
    #: folder.
    messages_per_source: int = 10_000


class Refused(Exception):  # noqa: N818 (a reason, not a failure of the program)
    """A payload refused by a limit or as malformed; ``str()`` is the reason (one line)."""


def read_reports(
    sources: Sequence[str], limits: Limits, warn: Warn
) -> Iterator[tuple[str, Report]]:
    """Every report in ``sources`` as ``(origin, report)``; ``origin`` names the file, and the
    message and attachment when the report came by mail.

    Raises :class:`InputError` (before yielding anything) when a source does not exist.
    """
    for source in sources:
        try:
            os.stat(source)
        except OSError as exc:
            raise InputError(f"{one_line(source)}: {exc.strerror or exc}") from None
    for source in sources:
        budget = _Budget(source, limits.messages_per_source, warn)
        if Path(source).is_dir():
            yield from _directory(Path(source), limits, warn, budget)
        else:
            yield from _file(Path(source), limits, warn, budget)


def reports_in_message(
    raw: bytes, origin: str, limits: Limits, warn: Warn
) -> Iterator[tuple[str, Report]]:
    """The reports in one mail message (section 5.3); warns once when it carries none."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except TypeError:
        # The stdlib's RFC 2231 decoding fails on mixed ``boundary*0``/``boundary*`` parameters
        # (found by fuzzing); nothing else in a message makes the compat32 parser raise.
        warn(f"{origin}: not a readable mail message (malformed MIME parameters)")
        return
    message_id = message.get("Message-ID")
    if message_id:
        origin = f"{origin} {one_line(str(message_id).strip(), 100)}"
    parts: list[str] = []
    found = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = _filename(part)
        if not _is_report_part(content_type, filename):
            parts.append(content_type + (f" {filename!r}" if filename else ""))
            continue
        found += 1
        if found > limits.reports_per_message:
            warn(f"{origin}: more than {limits.reports_per_message} report parts; the rest skipped")
            return
        where = f"{origin}, attachment {one_line(filename or content_type, 100)}"
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            warn(f"{where}: the part has no content")
            continue
        try:
            data = decode_payload(payload, limits)
            report = parse_report(data, where)
        except (Refused, InputError) as exc:
            warn(str(exc) if isinstance(exc, InputError) else f"{where}: {exc}")
            continue
        yield where, report
    if not found:
        listed = ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")
        warn(f"{origin}: no TLS-RPT report in the message (parts: {one_line(listed, 150)})")


def decode_payload(payload: bytes, limits: Limits) -> bytes:
    """A report's JSON bytes from a payload that is gzip (by its magic bytes) or JSON."""
    if payload.startswith(GZIP_MAGIC):
        if len(payload) > limits.compressed_bytes:
            raise Refused(f"gzip data over {limits.compressed_bytes} bytes (the compressed limit)")
        return gunzip_bounded(payload, limits.decompressed_bytes)
    if len(payload) > limits.decompressed_bytes:
        raise Refused(f"over {limits.decompressed_bytes} bytes (the decompressed limit)")
    return payload


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data`` (RFC 1952, every member) to at most ``limit`` bytes.

    Output is produced ``_INFLATE_STEP`` bytes at a time, so memory stays within ``limit`` plus
    one step however far the data would inflate. Raises :class:`Refused` for a bomb, truncated or
    corrupt data.
    """
    out = bytearray()
    pending = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            while not inflater.eof:
                chunk = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                if len(out) + len(chunk) > limit:
                    raise Refused(
                        f"gzip data inflates beyond {limit} bytes (the decompressed limit); refused"
                    )
                out += chunk
                if not chunk and not pending and not inflater.eof:
                    raise Refused("truncated gzip data (it ends inside the compressed stream)")
        except zlib.error as exc:
            raise Refused(f"corrupt gzip data ({one_line(str(exc), 80)})") from None
        pending = inflater.unused_data
        if not pending.strip(b"\0"):
            return bytes(out)
        if not pending.startswith(GZIP_MAGIC):
            raise Refused("data after the end of the gzip stream")


class _Budget:
    """How many more messages and files one source may yield; warns once when spent."""

    def __init__(self, source: str, limit: int, warn: Warn) -> None:
        self.source, self.left, self.warn, self.spent = source, limit, warn, False
        self.limit = limit

    def take(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        if not self.spent:
            self.spent = True
            self.warn(
                f"{one_line(self.source)}: more than {self.limit} messages or files "
                "(the per-source limit); the rest not read"
            )
        return False


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _directory(
    path: Path, limits: Limits, warn: Warn, budget: _Budget
) -> Iterator[tuple[str, Report]]:
    if _is_maildir(path):
        yield from _maildir(path, limits, warn, budget)
        return
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as exc:
        warn(f"{one_line(str(path))}: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = entry.is_file()
        except OSError as exc:
            warn(f"{one_line(entry.path)}: {exc.strerror or exc}")
            continue
        if is_dir:
            yield from _directory(child, limits, warn, budget)
        elif is_file:
            if not budget.take():
                return
            yield from _file(child, limits, warn, budget)


def _maildir(
    path: Path, limits: Limits, warn: Warn, budget: _Budget
) -> Iterator[tuple[str, Report]]:
    """``cur/`` then ``new/`` in name order (maildir(5)); ``tmp/`` holds deliveries in progress."""
    for sub in ("cur", "new"):
        try:
            names = sorted(os.listdir(path / sub))
        except OSError as exc:
            warn(f"{one_line(str(path / sub))}: {exc.strerror or exc}")
            continue
        for name in names:
            if name.startswith("."):
                continue
            message_path = path / sub / name
            if not message_path.is_file():
                continue
            if not budget.take():
                return
            raw = _read_bounded(message_path, limits.message_bytes, "message", warn)
            if raw is not None:
                yield from reports_in_message(raw, one_line(str(message_path)), limits, warn)


def _file(path: Path, limits: Limits, warn: Warn, budget: _Budget) -> Iterator[tuple[str, Report]]:
    origin = one_line(str(path))
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        warn(f"{origin}: {exc.strerror or exc}")
        return
    if not regular:  # a FIFO or a device would block or never end
        warn(f"{origin}: not a regular file")
        return
    kind = _kind_by_name(path.name)
    if kind is None:
        try:
            with open(path, "rb") as handle:
                head = handle.read(_HEAD)
        except OSError as exc:
            warn(f"{origin}: {exc.strerror or exc}")
            return
        kind = _kind_by_content(head)
        if kind is None:
            warn(f"{origin}: not a TLS-RPT report, mail message or mailbox")
            return
    if kind == "mbox":
        yield from _mbox(path, limits, warn, budget)
        return
    if kind == "message":
        raw = _read_bounded(path, limits.message_bytes, "message", warn)
        if raw is not None:
            yield from reports_in_message(raw, origin, limits, warn)
        return
    limit = limits.compressed_bytes if kind == "gzip" else limits.decompressed_bytes
    what = "gzip data" if kind == "gzip" else "JSON"
    data = _read_bounded(path, limit, what, warn)
    if data is None:
        return
    try:
        report = parse_report(decode_payload(data, limits), origin)
    except Refused as exc:
        warn(f"{origin}: {exc}")
        return
    except InputError as exc:
        warn(str(exc))
        return
    yield origin, report


def _kind_by_name(name: str) -> str | None:
    lowered = name.lower()
    if lowered.endswith((".json.gz", ".gz")):
        return "gzip"
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".eml", ".msg")):
        return "message"
    if lowered.endswith(".mbox"):
        return "mbox"
    return None


def _kind_by_content(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if stripped.startswith(b"{"):
        return "json"
    if head.startswith(b"From "):
        return "mbox"
    if _HEADER_LINE.match(head):
        return "message"
    return None


def _read_bounded(path: Path, limit: int, what: str, warn: Warn) -> bytes | None:
    origin = one_line(str(path))
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                warn(f"{origin}: not a regular file")
                return None
            data = handle.read(limit + 1)
    except OSError as exc:
        warn(f"{origin}: {exc.strerror or exc}")
        return None
    if len(data) > limit:
        warn(f"{origin}: {what} over {limit} bytes (the limit); not read")
        return None
    return data


def _mbox(path: Path, limits: Limits, warn: Warn, budget: _Budget) -> Iterator[tuple[str, Report]]:
    """An mbox (RFC 4155): messages start at lines beginning ``From ``; ``>From `` lines are
    unquoted (mboxrd). Read a line chunk at a time, a message at most ``message_bytes``."""
    origin = one_line(str(path))
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed in finally; a generator holds it)
    except OSError as exc:
        warn(f"{origin}: {exc.strerror or exc}")
        return
    try:
        index = 0
        message: bytearray | None = None
        oversize = False
        at_line_start = True

        def finish() -> Iterator[tuple[str, Report]]:
            where = f"{origin} message {index}"
            if oversize:
                warn(f"{where}: over {limits.message_bytes} bytes (the message limit); not read")
            elif message is not None:
                yield from reports_in_message(bytes(message), where, limits, warn)

        while True:
            try:
                chunk = handle.readline(_MBOX_LINE)
            except OSError as exc:
                warn(f"{origin}: {exc.strerror or exc}")
                break
            if not chunk:
                break
            line_start, at_line_start = at_line_start, chunk.endswith(b"\n")
            if line_start and chunk.startswith(b"From "):
                if index:
                    yield from finish()
                if not budget.take():
                    return
                index, message, oversize = index + 1, bytearray(), False
                continue
            if message is None:
                warn(f"{origin}: not an mbox (it does not start with a 'From ' line)")
                return
            if line_start and re.match(rb">+From ", chunk):
                chunk = chunk[1:]
            if oversize:
                continue
            if len(message) + len(chunk) > limits.message_bytes:
                oversize, message = True, bytearray()
                continue
            message += chunk
        if index:
            yield from finish()
    finally:
        handle.close()


def _filename(part: email.message.Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError):
        # TypeError: the stdlib's RFC 2231 decoding fails on mixed ``filename*0``/``filename*``
        # parameters (found by fuzzing).
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


def _is_report_part(content_type: str, filename: str | None) -> bool:
    if content_type in _REPORT_TYPES:
        return True
    name = (filename or "").lower()
    generic = content_type == "application/octet-stream"
    if name.endswith(".json.gz"):
        return generic or content_type in _GZIP_TYPES
    return name.endswith(".json") and (generic or content_type in _JSON_TYPES)
