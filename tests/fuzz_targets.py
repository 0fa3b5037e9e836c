"""Coverage-guided fuzz targets (atheris, libFuzzer) for the loaders the tool points at input it
does not control. Each target accepts the tool's own one-line errors (RolloverError) and nothing
else: any other exception, a hang (-timeout) or memory past -rss_limit_mb is a crash.

Run one: python -m tests.fuzz_targets TARGET [libFuzzer flags] [CORPUS_DIR ...]
Targets: material, params, zone, config, dns (the observer over a replayed conversation of DNS
answers, each framed by a two-octet length as over TCP). ``tests/test_atheris.py`` runs each for a fixed
number of inputs, from a fixed seed, starting from a few valid inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date

import atheris

with atheris.instrument_imports(include=["rollover", "providers"]):
    from rollover import providers
    from rollover.config import config_from_text
    from rollover.core.material import parse_material
    from rollover.core.params import parse_params
    from rollover.core.plan import TlsaRRset
    from rollover.errors import RolloverError
    from rollover.providers.zonetext import read_rrset, replace_rrset
    from tests.replaydns import ReplayObserver, split_frames

ZONE = "example.test."
OWNER = "_25._tcp.mx1.example.test."
TODAY = date(2026, 11, 28)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def material(data: bytes) -> None:
    try:
        parsed = parse_material("fuzz", data)
    except RolloverError as exc:
        assert str(exc).startswith("fuzz"), exc
        return
    assert parsed.certificates or parsed.key_spki


def params(data: bytes) -> None:
    try:
        parse_params(_text(data))
    except RolloverError:
        return


def zone(data: bytes) -> None:
    text = _text(data)
    try:
        before = read_rrset(text, ZONE, OWNER, "fuzz.db")
    except RolloverError:
        return
    try:
        edit = replace_rrset(text, ZONE, TlsaRRset(OWNER, 60, frozenset()), TODAY, "fuzz.db")
    except RolloverError:
        return
    assert not read_rrset(edit.text, ZONE, OWNER, "fuzz.db").exists, before


def config(data: bytes) -> None:
    try:
        config_from_text(_text(data), "fuzz.yaml", providers.settings_parser)
    except RolloverError as exc:
        assert str(exc).startswith("fuzz.yaml"), exc


def dns_answers(data: bytes) -> None:
    replies = split_frames(data)
    if not replies:
        return
    observer = ReplayObserver(resolvers=["127.0.0.1:5353"], replies=replies)
    try:
        observation = observer.observe(OWNER.replace("example.test", "fuzz.test"))
    except RolloverError:
        return
    _ = (observation.consistent, observation.records, observation.cache_horizon)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "material": material,
    "params": params,
    "zone": zone,
    "config": config,
    "dns": dns_answers,
}


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
