"""Coverage-guided fuzzing (atheris over libFuzzer) of the certificate/key/CSR loader, the
parameter parser, the zone-file editor and the configuration loader: a fixed number of inputs
from a fixed seed (reproducible), each target in its own process with a per-input time limit
(a hang is a failure) and a memory limit (so is unbounded memory)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rollover_env import REPO

RUNS = {"material": 100_000, "params": 300_000, "zone": 10_000, "config": 30_000, "dns": 30_000}
SEED = 20261128

pytestmark = [
    pytest.mark.lab,  # a fuzz campaign: the whole suite, not the fast one
    pytest.mark.skipif(
        importlib.util.find_spec("atheris") is None,
        reason="atheris has no wheel for this Python or machine",
    ),
]


def write_seeds(target: str, directory: Path) -> None:
    """A few valid inputs to start from, so mutations reach past the first parse, and every
    input that once crashed a target (``tests/fuzz_corpus/TARGET``), replayed first."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds: list[bytes]
    if target == "material":
        from tests.test_hostile_input import SEEDS

        seeds = list(SEEDS)  # a chain, a DER certificate, a key, a CSR
    elif target == "params":
        seeds = [b"3 1 1", b"2 0 1", b"DANE-EE SPKI SHA2-256", b"3 1 0", b"1 0 2"]
    elif target == "zone":
        from tests.test_zonetext import ZONE as ZONE_TEXT

        seeds = [ZONE_TEXT.encode()]
    elif target == "dns":
        from tests.replaydns import conversation

        seeds = [conversation()]
    else:
        seeds = [
            b"providers:\n  lab:\n    type: zonefile\n    path: /tmp/z.db\n    zone: example.test\n"
            b"services:\n  mx1:\n    host: mx1.example.test\n    provider: lab\n"
            b"    records: ['3 1 1']\n    ttl: 300\n",
            b"a: &a [1, 2]\nb: [*a, *a]\n",
        ]
    for index, seed in enumerate(seeds):
        (directory / f"seed-{index}").write_bytes(seed)
    for found in sorted((REPO / "tests" / "fuzz_corpus" / target).glob("*")):
        (directory / f"found-{found.name}").write_bytes(found.read_bytes())


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_seeds(target, corpus)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz_targets",
            target,
            f"-runs={RUNS[target]}",
            f"-seed={SEED}",
            "-timeout=10",
            "-rss_limit_mb=1024",
            "-max_len=8192",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    tail = result.stderr[-4000:]
    assert result.returncode == 0, tail
    assert f"Done {RUNS[target]} runs" in result.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
    assert not list(tmp_path.glob("timeout-*")), tail
    assert not list(tmp_path.glob("oom-*")), tail
