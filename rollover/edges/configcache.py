"""The parsed configuration, cached under the hash of its text (:class:`DocumentCache`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rollover.edges.files import write_atomic
from rollover.errors import FileError

CACHED_DOCUMENTS = 8  # configurations kept in the cache (the newest; older ones removed)


@dataclass(frozen=True)
class DocumentCache:
    """The parsed YAML document of one configuration text, kept as JSON under the hash of
    that text. Even libyaml's loader builds its objects in Python (0.2 s for a thousand
    services, paid by every command and every tick); reading the same document back as JSON
    costs a hundredth of that. Keyed by content, an entry is never stale: an edited file is
    a new key. Only documents that JSON gives back exactly are kept (no YAML dates, no
    non-string keys), and the directory is used only if it is this user's and private, so no
    one else can plant a document under a hash."""

    directory: Path
    digest: str

    @property
    def path(self) -> Path:
        return self.directory / f"config-{self.digest}.json"

    def load(self) -> object | None:
        try:
            with open(self.path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                    return None
                document: object = json.loads(handle.read())
        except (OSError, ValueError):
            return None
        return document

    def store(self, document: object) -> None:
        if not _plain(document):
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return
            write_atomic(self.path, json.dumps(document, separators=(",", ":")).encode())
            others = sorted(
                (p for p in self.directory.glob("config-*.json") if p != self.path),
                key=lambda p: p.stat().st_mtime_ns,
            )
            for old in others[: max(0, len(others) - (CACHED_DOCUMENTS - 1))]:
                old.unlink(missing_ok=True)
        except (OSError, FileError):
            return  # a cache: the document is parsed again next time


def document_cache(text: str) -> DocumentCache | None:
    """Where the parsed document of ``text`` is cached: systemd's ``$CACHE_DIRECTORY``, else
    ``$XDG_CACHE_HOME/rollover``, else ``~/.cache/rollover``; none when
    ``ROLLOVER_CONFIG_CACHE=off`` or no such directory can be named."""
    if os.environ.get("ROLLOVER_CONFIG_CACHE", "").lower() in ("off", "0", "no"):
        return None
    if os.environ.get("CACHE_DIRECTORY"):
        directory = Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    elif os.environ.get("XDG_CACHE_HOME"):
        directory = Path(os.environ["XDG_CACHE_HOME"]) / "rollover"
    elif os.environ.get("HOME"):
        directory = Path(os.environ["HOME"]) / ".cache" / "rollover"
    else:
        return None
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return DocumentCache(directory, digest)


def _plain(value: object) -> bool:
    """Whether JSON gives ``value`` back exactly: str-keyed mappings, lists, strings, finite
    numbers, booleans and nulls, nothing else."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def cached_document(text: str, parse: Callable[[], object]) -> object:
    """The document of ``text``: from the cache, or ``parse()`` it and keep it there."""
    cache = document_cache(text)
    if cache is None:
        return parse()
    found = cache.load()
    if found is not None:
        return found
    document = parse()
    cache.store(document)
    return document
