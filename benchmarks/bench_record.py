"""Benchmarks for `rollover record`: start-up and bulk derivation, measured side by side.

Run: .venv/bin/python benchmarks/bench_record.py [--runs 21] [--bulk 2000]
Needs hash-slinger (`tlsa`) and ldnsutils (`ldns-dane`) for the comparisons; missing tools are
reported and skipped.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CERT = ROOT / "examples" / "mx1-fullchain.pem"


def median_wall(cmd: list[str], runs: int, shell: bool = False) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd if not shell else " ".join(cmd),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            shell=shell,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(runs: int) -> None:
    # Measure the tool as installed: pip compiles bytecode at install time, and the libraries of
    # the floor have theirs; an editable checkout under PYTHONDONTWRITEBYTECODE=1 would instead
    # compile rollover's modules at every start.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            *(str(ROOT / d) for d in ("rollover", "providers", "state")),
        ],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    rollover = str(VENV_BIN / "rollover")
    floor_cmd = [sys.executable, "-c", "import typer, cryptography.x509"]
    ours_cmd = [rollover, "record", str(CERT)]
    # Interleave the measurements so machine noise hits both alike.
    floor_t, ours_t, tlsa_t = [], [], []
    tlsa = shutil.which("tlsa")
    for _ in range(runs):
        floor_t.append(median_wall(floor_cmd, 1))
        ours_t.append(median_wall(ours_cmd, 1))
        if tlsa:
            tlsa_t.append(
                median_wall(
                    [
                        tlsa,
                        "--create",
                        "--selector",
                        "1",
                        "--certificate",
                        str(CERT),
                        "--port",
                        "25",
                        "mx1.example.test",
                    ],
                    1,
                )
            )
    floor, ours = statistics.median(floor_t), statistics.median(ours_t)
    print(f"start-up, median of {runs} runs:")
    print(f"  python -c 'import typer, cryptography.x509'  {floor * 1000:7.1f} ms")
    print(
        f"  rollover record cert.pem                     {ours * 1000:7.1f} ms  "
        f"({ours / floor:.2f}x the floor; target <= 1.25x)"
    )
    if tlsa_t:
        slinger = statistics.median(tlsa_t)
        print(
            f"  hash-slinger tlsa --create                   {slinger * 1000:7.1f} ms  "
            f"(rollover takes {ours / slinger:.2f}x; target <= 0.5x)"
        )
    else:
        print("  hash-slinger `tlsa` not installed: apt-get install hash-slinger")
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rollover", "record", str(CERT)],
        capture_output=True,
        text=True,
        check=True,
    )
    heavy = [
        m for m in ("boto3", "dns.", "botocore", "yaml", "pydantic") if f" {m}" in probe.stderr
    ]
    print(f"  heavy modules imported by `rollover record`: {heavy or 'none'}")


def make_certs(directory: Path, count: int) -> list[Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    paths = []
    for i in range(count):
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mx{i}.example.test")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(leaf_key.public_key())
            .serial_number(i + 1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=90))
            .sign(key, hashes.SHA256())
        )
        path = directory / f"mx{i}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths.append(path)
    return paths


def bulk(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_certs(Path(tmp), count)
        start = time.perf_counter()
        out = subprocess.run(
            [str(VENV_BIN / "rollover"), "record", *map(str, paths)],
            capture_output=True,
            text=True,
            check=True,
        )
        ours = time.perf_counter() - start
        assert len(out.stdout.splitlines()) == count
        print(f"bulk, {count} certificates:")
        print(f"  one rollover record over all                 {ours:7.2f} s")
        ldns = shutil.which("ldns-dane")
        if not ldns:
            print("  ldns-dane not installed: apt-get install ldnsutils")
            return
        script = Path(tmp) / "loop.sh"
        script.write_text(
            f'for f in {tmp}/mx*.pem; do {ldns} -n -c "$f" create mx1.example.test 25 3 1 1; done\n'
        )
        start = time.perf_counter()
        loop = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
        theirs = time.perf_counter() - start
        assert len(loop.stdout.splitlines()) == count
        print(
            f"  shell loop of ldns-dane, one per file        {theirs:7.2f} s  "
            f"(rollover is {theirs / ours:.1f}x faster; target >= 20x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--bulk", type=int, default=2000)
    args = parser.parse_args()
    startup(args.runs)
    if args.bulk:
        bulk(args.bulk)


if __name__ == "__main__":
    main()
