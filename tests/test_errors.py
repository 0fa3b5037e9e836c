"""One error root, a distinct documented exit code per kind, and no failure raised as the
bare root (exit 1 is "warnings under --strict")."""

from __future__ import annotations

import ast
import re

from rollover import errors
from tests.rollover_env import REPO

KINDS = [
    value
    for value in vars(errors).values()
    if isinstance(value, type) and issubclass(value, errors.RolloverError)
]
OUTCOMES = {1, 2, 9, 10}  # warnings under --strict, usage, held by a fault, needs a person


def test_every_kind_has_its_own_exit_code() -> None:
    codes = [kind.exit_code for kind in KINDS if kind is not errors.RolloverError]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert not set(codes) & OUTCOMES


def test_every_error_class_of_the_product_is_under_the_root_in_errors_py() -> None:
    """Defined in rollover/errors.py (the one tree), never beside the code that raises it."""
    elsewhere = []
    for folder in ("rollover", "providers", "state"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "errors.py" and path.parent.name == "rollover":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    public = not node.name.startswith("_")
                    if public:
                        elsewhere.append(f"{path.relative_to(REPO)}:{node.name}")
    # The probe's ProbeError is internal: every probe failure becomes a ProbeResult's reason.
    assert elsewhere == ["rollover/edges/probe.py:ProbeError"]


def test_the_root_is_never_raised_itself() -> None:
    bare = []
    for folder in ("rollover", "providers", "state"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Raise)
                    and isinstance(node.exc, ast.Call)
                    and isinstance(node.exc.func, ast.Name)
                    and node.exc.func.id == "RolloverError"
                ):
                    bare.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert bare == []


def test_the_readme_documents_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Exit codes") :]
    documented = {int(code) for code in re.findall(r"(?m)^\| (\d+) \|", table)}
    codes = {kind.exit_code for kind in KINDS if kind is not errors.RolloverError}
    assert codes | OUTCOMES | {0} <= documented
