"""Zone-file adapter: edit the TLSA RRset of an RFC 1035 zone file in place, then reload.

The edit holds an exclusive lock (a ``.<name>.rollover-lock`` file beside the zone file), checks
that the RRset is still the one the change was planned from (compare-and-swap), writes a temp file
in the same directory, fsyncs it, keeps the mode and owner, renames it over the zone file and
fsyncs the directory. The reload command runs afterwards; its failure is reported.

The whole file is parsed in memory, so a file over ``max_bytes`` (default 64 MiB) is refused
before it is read.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import dns.exception
import dns.name

from rollover.config import Section
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.plan import Change, TlsaRRset
from rollover.errors import ConfigError, ConflictError, ProviderError
from rollover.ports import Receipt
from rollover.providers.zonetext import read_rrset, replace_rrset


@dataclass(frozen=True)
class ZoneFileSettings:
    path: str
    zone: str
    reload: list[str] | str | None = None
    reload_timeout: float = 60.0
    max_bytes: int = 64 * 1024 * 1024


def parse_settings(section: Section, warnings: list[str]) -> ZoneFileSettings:
    path = section.text("path", required=True)
    zone = section.text("zone", required=True)
    reload = section.command("reload")
    timeout = section.number("reload_timeout", 60.0, low=0.1)
    max_bytes = section.integer("max_bytes", 64 * 1024 * 1024, low=1024)
    del warnings
    try:
        zone = dns.name.from_text(zone).to_text().lower()
    except dns.exception.DNSException as exc:
        raise section.fail("zone", str(exc)) from None
    return ZoneFileSettings(path, zone, reload, timeout, max_bytes)


def create(name: str, settings: ZoneFileSettings) -> ZoneFileProvider:
    return ZoneFileProvider(name, settings)


class ZoneFileProvider:
    def __init__(
        self,
        name: str,
        settings: ZoneFileSettings,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.name = name
        self.settings = settings
        self._today = today

    def zone_for(self, owner: str) -> str:
        if not dns.name.from_text(owner).is_subdomain(dns.name.from_text(self.settings.zone)):
            raise ConfigError(f"{self.name}: {owner} is not in zone {self.settings.zone}")
        return self.settings.zone

    def _read_text(self) -> str:
        try:
            with open(self.settings.path, "rb") as handle:
                limit = self.settings.max_bytes
                if (
                    os.fstat(handle.fileno()).st_size > limit
                    or len(data := handle.read(limit + 1)) > limit
                ):
                    raise ProviderError(
                        f"{self.name}: {self.settings.path}: larger than {limit} bytes "
                        "(max_bytes); refusing to read it"
                    )
                return data.decode("utf-8")
        except FileNotFoundError:
            raise ProviderError(f"{self.name}: {self.settings.path}: no such zone file") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ProviderError(f"{self.name}: {self.settings.path}: {reason}") from None

    def read(self, owner: str) -> TlsaRRset:
        self.zone_for(owner)
        return read_rrset(self._read_text(), self.settings.zone, owner, self.settings.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        path = Path(self.settings.path)
        lock_path = path.with_name(f".{path.name}.rollover-lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ProviderError(
                f"{self.name}: cannot create lock {lock_path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def apply(self, change: Change) -> Receipt:
        if change.is_noop:
            return Receipt(self.name, "noop", change)
        self.zone_for(change.owner)
        with self._locked():
            text = self._read_text()
            current = read_rrset(text, self.settings.zone, change.owner, self.settings.path)
            if current.records != change.before.records:
                raise ConflictError(
                    f"{self.name}: the TLSA RRset at {change.owner} in "
                    f"{self.settings.path} changed since it was read; nothing "
                    "was changed, read it again"
                )
            edit = replace_rrset(
                text, self.settings.zone, change.after, self._today(), self.settings.path
            )
            self._write(edit.text)
        return Receipt(self.name, f"serial={edit.serial}", change)

    def _write(self, text: str) -> None:
        path = Path(self.settings.path)
        st = path.stat()
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(temp, st.st_uid, st.st_gid)
            os.replace(temp, path)
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            raise ProviderError(
                f"{self.name}: cannot write {path}: {exc.strerror or exc}"
            ) from None
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """The file is written; running the reload command puts it in effect."""
        if receipt.change_id == "noop" or self.settings.reload is None:
            return
        command = self.settings.reload
        try:
            result = subprocess.run(
                command,
                shell=isinstance(command, str),
                capture_output=True,
                text=True,
                timeout=min(timeout, self.settings.reload_timeout),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"{self.name}: reload command timed out after "
                f"{min(timeout, self.settings.reload_timeout):g} s; the zone "
                "file is written but may not be loaded"
            ) from None
        except OSError as exc:
            raise ProviderError(
                f"{self.name}: reload command failed to start: {exc.strerror or exc}"
            ) from None
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            detail = f": {output[-1]}" if output else ""
            raise ProviderError(
                f"{self.name}: reload command exited {result.returncode}"
                f"{detail}; the zone file is written but may not be loaded"
            )


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
