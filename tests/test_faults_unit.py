"""Faults the lab cannot produce on demand: a full disk, a lock left by a dead process, clock
jumps."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from rollover.core.phases import Facts, Phase, decide
from rollover.edges.files import write_atomic
from rollover.errors import RolloverError
from rollover.state.store import SqliteStateStore
from tests.test_phases import NOW, rollover


def test_disk_full_while_writing_state_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ownership.json"
    target.write_bytes(b'{"old": true}\n')

    def full(_fd: int, _data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RolloverError, match="No space left on device"):
        write_atomic(target, b'{"new": true}\n' * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b'{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["ownership.json"]  # no temp file left


def test_store_locked_by_a_dead_process(tmp_path: Path) -> None:
    store = SqliteStateStore(str(tmp_path))
    store.create(rollover(Phase.PUBLISHING))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                f"db = sqlite3.connect({str(tmp_path / 'state.db')!r}, isolation_level=None)\n"
                "db.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()
    current = store.current("mx1")
    assert current is not None
    saved = store.save(current.__class__(**{**current.__dict__, "phase": Phase.PROPAGATING}))
    assert saved.version == 2


@pytest.mark.parametrize("jump", [timedelta(hours=-3), timedelta(seconds=-1)])
def test_a_clock_jumping_back_never_ends_the_ageing_early(jump: timedelta) -> None:
    r = rollover(Phase.AGING, waiting_until=NOW + timedelta(seconds=600), propagated_at=NOW)
    assert decide(r, Facts(), NOW + jump).phase == Phase.AGING


def test_a_clock_jumping_forward_past_the_deadline_deploys_only_with_the_invariant() -> None:
    r = rollover(Phase.AGING, waiting_until=NOW + timedelta(seconds=600), propagated_at=NOW)
    assert decide(r, Facts(), NOW + timedelta(days=3)).phase == Phase.DEPLOYING
    deploying = rollover(Phase.DEPLOYING)
    # The deploy step re-checks that the new associations are published and served.
    assert (
        decide(deploying, Facts(provider_records=frozenset(), authoritative_ok=False), NOW).phase
        == Phase.PUBLISHING
    )
