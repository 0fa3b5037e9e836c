"""The one atomic writer (rollover.edges.files) and the one command runner
(rollover.edges.commands), and the callers that lean on them."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rollover.config import DeployConfig
from rollover.edges import files
from rollover.edges.commands import TAIL_CHARS, run_command
from rollover.edges.deploy import FileDeployer, write_file
from rollover.edges.files import locked, write_atomic
from rollover.errors import CommandError, DeployError, FileError, ProviderError, RolloverError
from rollover.providers.zonefile import ZoneFileProvider, ZoneFileSettings


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


# The writer.


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o777])
def test_written_file_is_0600_whatever_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)
    target = tmp_path / "state.json"
    write_atomic(target, b"new\n")
    os.umask(0o022)
    assert mode_of(target) == 0o600
    assert target.read_bytes() == b"new\n"


def test_an_existing_wider_mode_is_narrowed_unless_kept(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomic(target, b"new")
    assert mode_of(target) == 0o600
    target.chmod(0o640)
    write_atomic(target, b"newer", keep_mode=True)
    assert mode_of(target) == 0o640
    fresh = tmp_path / "fresh"
    write_atomic(fresh, b"x", mode=0o644, keep_mode=True)  # no file to keep a mode from
    assert mode_of(fresh) == 0o644


def test_the_file_is_replaced_by_a_rename_not_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old contents\n")
    before = target.stat().st_ino
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        assert Path(dst).read_bytes() == b"old contents\n"  # untouched until the rename
        assert Path(src).read_bytes() == b"new contents\n"  # complete before the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with target.open("rb") as reader:
        write_atomic(target, b"new contents\n")
        assert reader.read() == b"old contents\n"  # a reader of the old file keeps it whole
    assert target.read_bytes() == b"new contents\n"
    assert target.stat().st_ino != before
    assert len(renames) == 1
    assert Path(renames[0][0]).parent == tmp_path  # the temp file is beside it: same filesystem
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_data_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        steps.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "f", b"data")
    assert steps == ["fsync", "replace", "fsync"]  # the file, the rename, the directory


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failure_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old\n")
    real_write = os.write
    calls = {"n": 0}

    def half_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    def broken(*_args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, failing, half_then_full if failing == "write" else broken)
    with pytest.raises(FileError) as caught:
        write_atomic(target, b"new contents\n" * 1000)
    monkeypatch.undo()
    assert isinstance(caught.value, RolloverError)
    assert str(caught.value).startswith(f"{target}: cannot write: ")
    assert caught.value.reason in ("No space left on device", "Input/output error")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_an_interrupt_while_writing_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_fd: int, _data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "f", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "f"
    with pytest.raises(FileError, match=r"cannot write in .*nowhere: No such file or directory"):
        write_atomic(target, b"data")


def test_large_data_is_written_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    write_atomic(tmp_path / "big", data)
    assert (tmp_path / "big").read_bytes() == data


def test_deploy_write_file_keeps_its_modes_and_error_type(tmp_path: Path) -> None:
    key, chain = tmp_path / "key.pem", tmp_path / "chain.pem"
    write_file(str(key), b"key", private=True)
    write_file(str(chain), b"chain", private=False)
    assert (mode_of(key), mode_of(chain)) == (0o600, 0o644)
    chain.chmod(0o640)
    key.chmod(0o644)
    write_file(str(chain), b"chain2", private=False)
    write_file(str(key), b"key2", private=True)
    assert (mode_of(key), mode_of(chain)) == (0o600, 0o640)
    with pytest.raises(DeployError, match="cannot write in"):
        write_file(str(tmp_path / "none" / "x.pem"), b"x", private=True)


def test_the_zone_file_keeps_its_mode(tmp_path: Path) -> None:
    zone = tmp_path / "example.db"
    zone.write_text("old\n")
    zone.chmod(0o640)
    provider = ZoneFileProvider("zf", ZoneFileSettings(str(zone), "example.test."))
    provider._write("new\n")
    assert zone.read_text() == "new\n"
    assert mode_of(zone) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.db"]


def test_the_zone_file_write_failure_is_a_provider_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = tmp_path / "example.db"
    zone.write_text("old\n")
    provider = ZoneFileProvider("zf", ZoneFileSettings(str(zone), "example.test."))

    def full(_fd: int, _data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ProviderError, match=r"^zf: .*example.db: cannot write: No space left"):
        provider._write("new\n")
    monkeypatch.undo()
    assert zone.read_text() == "old\n"


def test_locked_creates_the_lock_0600_and_reports_failures(tmp_path: Path, umask: None) -> None:
    lock = tmp_path / ".lock"
    os.umask(0o000)
    with locked(lock):
        assert mode_of(lock) == 0o600
    with pytest.raises(FileError, match="cannot open lock"), locked(tmp_path / "none" / ".lock"):
        pass


def test_there_is_one_writer() -> None:
    """The state, deploy and zone-file modules lean on the one writer, not copies of it."""
    root = Path(files.__file__).resolve().parents[2]
    sources = [
        *root.glob("rollover/**/*.py"),
        *root.glob("providers/*.py"),
        *root.glob("state/*.py"),
    ]
    writers = {
        str(p.relative_to(root))
        for p in sources
        if "os.replace(" in p.read_text() or "mkstemp(" in p.read_text()
    }
    assert writers <= {"rollover/edges/files.py"}, writers


# The runner.


def test_success_returns_the_captured_output() -> None:
    result = run_command(["sh", "-c", "echo out; echo err >&2"], timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")


def test_env_adds_to_the_environment() -> None:
    result = run_command('printf "%s %s" "$EXTRA" "${HOME:+home}"', timeout=10, env={"EXTRA": "x"})
    assert result.stdout == ("x home" if "HOME" in os.environ else "x ")
    assert "EXTRA" not in os.environ


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["sh", "-c", "echo ignored; echo first >&2; echo 'the reason' >&2; exit 3"],
            "t exited 3: the reason",
        ),
        (["sh", "-c", "echo 'from stdout'; exit 4"], "t exited 4: from stdout"),
        ("echo '   ' >&2; echo 'stdout then'; exit 5", "t exited 5: stdout then"),
        ("exit 6", "t exited 6"),
        (["sh", "-c", "kill -TERM $$"], "t was killed by SIGTERM"),
    ],
)
def test_a_non_zero_exit_names_the_code_and_the_tail(command: object, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        run_command(command, label="t", timeout=10)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert isinstance(caught.value, RolloverError)
    assert not caught.value.timed_out


def test_the_exit_code_and_tail_are_kept_on_the_error() -> None:
    with pytest.raises(CommandError) as caught:
        run_command(["sh", "-c", "echo boom >&2; exit 7"], timeout=10)
    assert (caught.value.returncode, caught.value.tail) == (7, "boom")


def test_a_long_tail_is_cut_to_one_short_line() -> None:
    with pytest.raises(CommandError) as caught:
        run_command(["sh", "-c", f"printf 'x%.0s' $(seq {TAIL_CHARS * 3}) >&2; exit 1"], timeout=10)
    message = str(caught.value)
    assert "\n" not in message
    assert len(caught.value.tail) == TAIL_CHARS
    assert message.endswith("...")


def test_a_timeout_kills_the_command_and_says_so() -> None:
    began = time.monotonic()
    with pytest.raises(CommandError) as caught:
        run_command(["sleep", "30"], label="reload command", timeout=0.3)
    assert time.monotonic() - began < 5
    assert str(caught.value) == "reload command timed out: killed after 0.3 s"
    assert caught.value.timed_out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_timeout_kills_what_the_shell_started_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    began = time.monotonic()
    with pytest.raises(CommandError, match="timed out"):
        # The background sleep holds the output pipe open: not killing it would wait 30 s.
        run_command(f"sleep 30 & echo $! > {pidfile}; wait", timeout=0.5)
    assert time.monotonic() - began < 5
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["/nonexistent/reload"], "t failed to start: /nonexistent/reload: No such file"),
        ([], "t failed to start: the command is empty"),
        (["echo", "nul\0byte"], "t failed to start: "),
    ],
)
def test_a_command_that_cannot_start_is_one_line(command: list[str], needle: str) -> None:
    with pytest.raises(CommandError) as caught:
        run_command(command, label="t", timeout=10)
    assert str(caught.value).startswith(needle)
    assert caught.value.returncode is None


def test_undecodable_output_does_not_break_the_report() -> None:
    with pytest.raises(CommandError, match="exited 2: bad"):
        run_command(["sh", "-c", r"printf 'bad \377\n' >&2; exit 2"], timeout=10)


def test_deploy_reload_failures_are_deploy_errors(tmp_path: Path) -> None:
    def deployer(reload: object, timeout: float = 10) -> FileDeployer:
        config = DeployConfig(str(tmp_path / "c"), str(tmp_path / "k"), reload, timeout)  # type: ignore[arg-type]
        return FileDeployer(config)

    deployer(["true"]).reload()
    deployer(None).reload()
    with pytest.raises(DeployError, match=r"^reload command exited 1: postfix: fatal: bad config$"):
        deployer("echo 'postfix: fatal: bad config' >&2; exit 1").reload()
    with pytest.raises(DeployError, match=r"^reload command timed out: killed after 0.2 s$"):
        deployer(["sleep", "30"], 0.2).reload()
    with pytest.raises(DeployError, match=r"^reload command failed to start: /nonexistent/x"):
        deployer(["/nonexistent/x"]).reload()
    assert DeployError.exit_code == 12  # its own kind, not a provider error


def test_on_event_failure_is_a_warning_and_gets_the_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rollover.cli.rollover_cmd import _event_runner

    out = tmp_path / "event"
    rollover = SimpleNamespace(
        service="mx1", phase=SimpleNamespace(value="done"), owner="_25._tcp.mx1.example."
    )
    script = (
        f'echo "$ROLLOVER_SERVICE $ROLLOVER_EVENT $ROLLOVER_PHASE $ROLLOVER_OWNER '
        f'$ROLLOVER_MESSAGE" > {out}; echo "mail failed" >&2; exit 2'
    )
    _event_runner(["sh", "-c", script])("done", rollover, "all good")
    assert out.read_text() == "mx1 done done _25._tcp.mx1.example. all good\n"
    assert "warning: on_event command exited 2: mail failed" in capsys.readouterr().err
    _event_runner(["/nonexistent/notify"])("failed", rollover, "x")
    assert "on_event command failed to start" in capsys.readouterr().err
    assert _event_runner(None) is None
