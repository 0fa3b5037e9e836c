"""The zone-file adapter on real files: CAS, lock, atomic write, mode kept, reload reported."""

from __future__ import annotations

import subprocess
import threading
from datetime import date
from pathlib import Path

import pytest

from rollover.core.association import parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish
from rollover.errors import ConflictError, ProviderError
from rollover.providers.zonefile import ZoneFileProvider, ZoneFileSettings
from tests.lab import Lab, _which
from tests.test_zonetext import OWNER, ZONE

A = parse_association("3 1 1 " + "aa" * 32)
C = parse_association("2 0 1 " + "cc" * 32)
NEW = parse_association("3 1 1 " + "ee" * 32)


def make(
    tmp_path: Path, reload: list[str] | str | None = None, mode: int = 0o640
) -> ZoneFileProvider:
    path = tmp_path / "example.test.db"
    path.write_text(ZONE)
    path.chmod(mode)
    settings = ZoneFileSettings(str(path), "example.test.", reload, 5.0)
    return ZoneFileProvider("zf", settings, today=lambda: date(2026, 11, 28))


def checkzone(path: str) -> None:
    result = subprocess.run(
        [_which("named-checkzone"), "-q", "example.test", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_publish_keeps_mode_and_passes_checkzone(tmp_path: Path) -> None:
    p = make(tmp_path, mode=0o640)
    current = p.read(OWNER)
    assert current.records == {A, C}
    receipt = p.apply(plan_publish(current, {NEW}, 300))
    p.wait(receipt, 5)
    assert p.read(OWNER).records == {A, C, NEW}
    assert (tmp_path / "example.test.db").stat().st_mode & 0o777 == 0o640
    checkzone(p.settings.path)
    assert receipt.change_id == "serial=2026112800"
    assert not [
        f
        for f in tmp_path.iterdir()
        if f.name.endswith(".tmp") or (f.name.startswith(".example") and "lock" not in f.name)
    ]


def test_conflict_when_the_file_changed(tmp_path: Path) -> None:
    p = make(tmp_path)
    before = p.read(OWNER)
    path = Path(p.settings.path)
    path.write_text(path.read_text().replace("cccccccccccccccc", "dddddddddddddddd", 1))
    edited = path.read_text()
    with pytest.raises(ConflictError, match="changed since it was read"):
        p.apply(plan_publish(before, {NEW}, 300))
    assert path.read_text() == edited  # not a byte changed


def test_concurrent_writers_one_wins_one_conflicts(tmp_path: Path) -> None:
    p = make(tmp_path)
    before = p.read(OWNER)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def writer(new: str) -> None:
        barrier.wait()
        try:
            p.apply(plan_publish(before, {parse_association(new)}, 300))
            outcomes.append("applied")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(f"3 1 1 {c * 64}",)) for c in "12"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["applied", "conflict"]
    assert len(p.read(OWNER).records) == 3
    checkzone(p.settings.path)


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("exit 3", "reload command exited 3"),
        (["/nonexistent/reload"], "failed to start"),
        ("sleep 10", "timed out"),
    ],
)
def test_reload_failure_is_reported(tmp_path: Path, command: object, needle: str) -> None:
    p = make(tmp_path, reload=command)  # type: ignore[arg-type]
    p.settings = ZoneFileSettings(p.settings.path, p.settings.zone, command, 0.5)  # type: ignore[arg-type]
    receipt = p.apply(plan_publish(p.read(OWNER), {NEW}, 300))
    with pytest.raises(ProviderError, match=needle):
        p.wait(receipt, 5)
    assert NEW in p.read(OWNER).records  # the file is written; only the reload failed


def test_oversized_zone_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    path.write_text(ZONE + "; padding\n" * 200)
    small = ZoneFileSettings(str(path), "example.test.", max_bytes=len(ZONE) + 100)
    with pytest.raises(ProviderError, match=r"big.db: larger than \d+ bytes \(max_bytes\)"):
        ZoneFileProvider("zf", small).read(OWNER)
    roomy = ZoneFileSettings(str(path), "example.test.", max_bytes=len(path.read_bytes()))
    assert ZoneFileProvider("zf", roomy).read(OWNER) is not None


def test_missing_zone_file(tmp_path: Path) -> None:
    p = ZoneFileProvider("zf", ZoneFileSettings(str(tmp_path / "none.db"), "example.test."))
    with pytest.raises(ProviderError, match="no such zone file"):
        p.read(OWNER)


@pytest.mark.lab
def test_zonefile_with_real_bind_reload(lab: Lab) -> None:
    """Edit the lab primary's plain.test zone file and reload it with rndc: BIND serves it."""
    path = lab.directory / "primary" / "plain.test.db"
    owner = "_25._tcp.mxz.plain.test."
    reload = [
        _which("rndc"),
        "-c",
        str(lab.directory / "primary" / "rndc.conf"),
        "reload",
        "plain.test",
    ]
    p = ZoneFileProvider("zf", ZoneFileSettings(str(path), "plain.test.", reload, 20.0))
    before_serial = lab.serial(lab.primary, "plain.test.")
    p.wait(p.apply(plan_publish(p.read(owner), {NEW}, 5)), 20)
    import time

    deadline = time.monotonic() + 10
    while lab.serial(lab.primary, "plain.test.") == before_serial and time.monotonic() < deadline:
        time.sleep(0.1)
    response = lab.query(lab.primary, owner, "TLSA")
    served = [str(r) for rrset in response.answer for r in rrset]
    assert served == [str(NEW)]
    p.wait(p.apply(Change(p.read(owner), TlsaRRset(owner))), 20)
    assert not p.read(owner).exists
