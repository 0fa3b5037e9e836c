"""The wheel adds one top-level import name, ``rollover``: the top-level ``providers/`` and
``state/`` folders are installed as ``rollover.providers`` and ``rollover.state``, so they
cannot collide with anything else of those names in a user's environment."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.rollover_env import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        cwd=build,
        env={"PATH": "/usr/bin:/bin", "HOME": str(build), "TMPDIR": str(build)},
    )
    (found,) = out.glob("rollover-*.whl")
    return found


def test_the_wheel_holds_only_the_rollover_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"rollover"}
    assert "rollover/providers/rfc2136.py" in names
    assert "rollover/state/store.py" in names
    assert "rollover/core/matching.py" in names


def test_installed_in_a_fresh_venv_it_imports_as_rollover(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # No pip in the fresh venv: the wheel is a zip laid out for site-packages (PEP 427).
    zipfile.ZipFile(wheel).extractall(target)
    installed = {p.name for p in Path(target).iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"__pycache__", "_distutils_hack", "distutils-precedence.pth"} == {
        "rollover"
    }
    # The dependencies come from the test environment, appended after the venv's own paths.
    deps = sysconfig.get_paths()["purelib"]
    check = (
        "import sys; sys.path.append(sys.argv[1]);"
        "import rollover.providers.rfc2136, rollover.state.store, rollover.ports;"
        "import importlib.util as u;"
        "print(u.find_spec('providers'), u.find_spec('state'), rollover.__file__)"
    )
    result = subprocess.run(
        [str(python), "-I", "-c", check, deps],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    none_providers, none_state, where = result.stdout.split()
    assert (none_providers, none_state) == ("None", "None")
    assert where.startswith(target)


def test_no_assert_in_product_code() -> None:
    """``python -O`` removes asserts: a check the product relies on (rollback's guards, the
    store's compare-and-swap) must be an ``if`` that raises, never an ``assert``."""
    import ast

    found = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for folder in ("rollover", "providers", "state")
        for path in sorted((REPO / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert found == []


def test_every_edge_protocol_is_in_ports() -> None:
    """One module holds every Protocol of an edge: a fake or an adapter reads it there."""
    import ast

    elsewhere = [
        f"{path.relative_to(REPO)}:{node.name}"
        for folder in ("rollover", "providers", "state")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.relative_to(REPO).as_posix() != "rollover/ports.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(getattr(base, "id", None) == "Protocol" for base in node.bases)
    ]
    assert elsewhere == []
