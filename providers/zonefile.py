"""Zone-file adapter: edit the TLSA RRset of an RFC 1035 zone file in place, then reload.

The edit holds an exclusive lock (a ``.<name>.rollover-lock`` file beside the zone file), checks
that the RRset is still the one the change was planned from (compare-and-swap), and replaces the
file with :func:`rollover.edges.files.write_atomic` (temp file in the same directory, fsync, the
mode and owner kept, rename, directory fsync). The reload command runs afterwards through
:func:`rollover.edges.commands.run_command`; its failure is reported.

The whole file is parsed in memory, so a file over ``max_bytes`` (default 64 MiB) is refused
before it is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import dns.exception
import dns.name

from rollover.config import Section
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.plan import Change, TlsaRRset
from rollover.edges.commands import run_command
from rollover.edges.files import locked, write_atomic
from rollover.errors import CommandError, ConfigError, ConflictError, FileError, ProviderError
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
        with ExitStack() as stack:
            try:
                stack.enter_context(locked(path.with_name(f".{path.name}.rollover-lock")))
            except FileError as exc:
                raise ProviderError(f"{self.name}: {exc}") from None
            yield

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
        try:
            write_atomic(self.settings.path, text.encode("utf-8"), keep_mode=True, keep_owner=True)
        except FileError as exc:
            raise ProviderError(f"{self.name}: {exc}") from None

    def wait(self, receipt: Receipt, timeout: float) -> None:
        """The file is written; running the reload command puts it in effect."""
        if receipt.change_id == "noop" or self.settings.reload is None:
            return
        try:
            run_command(
                self.settings.reload,
                label="reload command",
                timeout=min(timeout, self.settings.reload_timeout),
            )
        except CommandError as exc:
            raise ProviderError(
                f"{self.name}: {exc}; the zone file is written but may not be loaded"
            ) from None


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
