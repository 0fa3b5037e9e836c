"""Which TLSA associations rollover published, per owner name.

The tool never removes a record it did not publish unless told to by name; this file is how it
knows. A claim is written *before* the DNS change that publishes the association, so a crash in
between leaves a claim on a record that does not exist (harmless), never an unclaimed record.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from rollover.association import Association, parse_association
from rollover.errors import RolloverError
from state.files import ensure_dir, locked, write_atomic


class OwnershipStore:
    def __init__(self, state_dir: str) -> None:
        self.directory = Path(state_dir)
        self.path = self.directory / "ownership.json"

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "owners": {}}
        except (OSError, ValueError) as exc:
            raise RolloverError(f"{self.path}: unreadable ownership record: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("owners"), dict):
            raise RolloverError(f"{self.path}: not an ownership record")
        return raw

    def owned(self, owner: str) -> frozenset[Association]:
        entries = self._load()["owners"].get(owner.lower(), {})
        return frozenset(parse_association(text) for text in entries)

    def published_at(self, owner: str) -> dict[Association, datetime | None]:
        """When the provider confirmed each association rollover owns at ``owner``."""
        entries = self._load()["owners"].get(owner.lower(), {})
        return {
            parse_association(text): (
                datetime.fromisoformat(meta["published_at"].replace("Z", "+00:00"))
                if meta.get("published_at")
                else None
            )
            for text, meta in entries.items()
        }

    def claim(
        self, owner: str, associations: frozenset[Association], service: str, now: datetime
    ) -> None:
        """Claimed before the DNS change; ``published_at`` stays empty until confirmed."""
        del now
        self._update(owner, add=associations, service=service)

    def confirm(self, owner: str, associations: frozenset[Association], now: datetime) -> None:
        """The provider reported the change in effect at ``now``: the ageing clock of the
        "current + next" fast path starts here, never at the claim."""
        if not associations:
            return
        ensure_dir(self.directory)
        with locked(self.directory / ".ownership.lock"):
            data = self._load()
            entries = data["owners"].setdefault(owner.lower(), {})
            for association in associations:
                entry = entries.setdefault(str(association), {"service": ""})
                entry["published_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            write_atomic(self.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    def seen(self, owner: str, present: frozenset[Association], now: datetime) -> None:
        """What a read of the RRset showed. An owned association found missing loses its
        confirmation: if it comes back (re-added by hand, say), it is as young as the read
        that finds it again, and the "current + next" fast path waits its age out afresh."""
        entries = self._load()["owners"].get(owner.lower(), {})
        lost = [
            t
            for t, m in entries.items()
            if m.get("published_at") and parse_association(t) not in present
        ]
        back = [
            t for t, m in entries.items() if m.get("vanished") and parse_association(t) in present
        ]
        if not lost and not back:
            return
        with locked(self.directory / ".ownership.lock"):
            data = self._load()
            entries = data["owners"].get(owner.lower(), {})
            stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            for text in lost:
                if text in entries:
                    entries[text].update(published_at=None, vanished=stamp)
            for text in back:
                if text in entries:
                    entries[text].update(published_at=stamp, vanished=None)
            write_atomic(self.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    def release(self, owner: str, associations: frozenset[Association]) -> None:
        self._update(owner, remove=associations)

    def _update(
        self,
        owner: str,
        *,
        add: frozenset[Association] = frozenset(),
        remove: frozenset[Association] = frozenset(),
        service: str = "",
        now: datetime | None = None,
    ) -> None:
        if not add and not remove:
            return
        ensure_dir(self.directory)
        with locked(self.directory / ".ownership.lock"):
            data = self._load()
            entries = data["owners"].setdefault(owner.lower(), {})
            for association in add:
                entries.setdefault(
                    str(association),
                    {
                        "service": service,
                        "published_at": now.strftime("%Y-%m-%dT%H:%M:%SZ") if now else None,
                    },
                )
            for association in remove:
                entries.pop(str(association), None)
            if not entries:
                del data["owners"][owner.lower()]
            write_atomic(self.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
