"""Issue 13 item 7: the fast path's continuity, read from the zone's history (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from rollover.core.association import Association, parse_association
from rollover.engine.continuity import follow, interrupted
from rollover.ports import ZoneHistory
from rollover.providers.rfc2136 import ixfr_steps
from rollover.state.ownership import OwnershipStore

A = parse_association("3 1 1 " + "aa" * 32)
B = parse_association("3 1 1 " + "bb" * 32)
OWNER = "_25._tcp.mx.example.test."
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def s(*items: Association) -> frozenset[Association]:
    return frozenset(items)


@pytest.mark.parametrize(
    ("tracked", "steps", "broken"),
    [
        (s(A), [], s()),
        (s(A), [(s(), s(B))], s()),  # another record added beside it
        (s(A), [(s(B), s())], s()),  # another record removed
        (s(A), [(s(A), s())], s(A)),  # removed (and the read finds it gone as well)
        (s(A), [(s(A), s()), (s(), s(A))], s(A)),  # removed, then put back: the case
        (s(A), [(s(A), s(A))], s()),  # one change deleting and re-adding: never absent
        (s(A), [(s(), s(A))], s(A)),  # added while it should have been there: it had gone
        (s(A, B), [(s(B), s()), (s(), s(B))], s(B)),  # only the one that left
        (s(), [(s(A), s()), (s(), s(A))], s()),  # not tracked: not the fast path's concern
    ],
)
def test_interrupted(tracked, steps, broken) -> None:  # type: ignore[no-untyped-def]
    assert interrupted(tracked, steps) == broken


def _rr(name: str, rdtype: str, text: str) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
    kind = dns.rdatatype.from_text(rdtype)
    return dns.name.from_text(name), kind, dns.rdata.from_text(dns.rdataclass.IN, kind, text)


def _soa(serial: int) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
    return _rr("example.test.", "SOA", f"ns. host. {serial} 60 60 600 60")


def test_ixfr_steps_reads_each_change() -> None:
    owner = dns.name.from_text(OWNER)
    rrs = [
        _soa(12),
        _soa(10),  # change 10 -> 11: the TLSA deleted
        _rr(OWNER, "TLSA", str(A)),
        _rr("x.example.test.", "TXT", '"other"'),
        _soa(11),
        _rr("x.example.test.", "TXT", '"new"'),
        _soa(11),  # change 11 -> 12: put back
        _soa(12),
        _rr(OWNER, "TLSA", str(A)),
        _soa(12),
    ]
    history = ixfr_steps(rrs, owner, 10)
    assert history == ZoneHistory("12", ((s(A), s()), (s(), s(A))))
    assert interrupted(s(A), history.steps or ()) == s(A)


def test_ixfr_steps_up_to_date_and_axfr_form() -> None:
    owner = dns.name.from_text(OWNER)
    assert ixfr_steps([_soa(10)], owner, 10) == ZoneHistory("10", ())
    assert ixfr_steps([_soa(12)], owner, 10).steps is None  # condensed: says nothing
    axfr = [_soa(12), _rr(OWNER, "TLSA", str(A)), _soa(12)]
    assert ixfr_steps(axfr, owner, 10).steps is None  # the journal did not reach back


class _Chronicle:
    name = "fake"

    def __init__(self, history: ZoneHistory) -> None:
        self._history = history
        self.asked: list[str | None] = []

    def history(self, owner: str, since: str | None) -> ZoneHistory:
        self.asked.append(since)
        return self._history if since is not None else ZoneHistory(self._history.version, ())

    # the rest of the Provider protocol, unused here
    def zone_for(self, owner: str) -> str:
        return "example.test."

    def read(self, owner: str):  # type: ignore[no-untyped-def]
        raise AssertionError

    def apply(self, change):  # type: ignore[no-untyped-def]
        raise AssertionError

    def wait(self, receipt, timeout):  # type: ignore[no-untyped-def]
        raise AssertionError


def _store(tmp_path: Path) -> OwnershipStore:
    store = OwnershipStore(str(tmp_path))
    store.claim(OWNER, s(A), "mx", NOW)
    store.confirm(OWNER, s(A), datetime(2026, 11, 1, tzinfo=UTC))
    store.set_version(OWNER, "10")
    return store


@pytest.mark.parametrize(
    ("steps", "restarted"),
    [
        ((), False),
        (((s(B), s()),), False),
        (((s(A), s()), (s(), s(A))), True),
        (None, True),  # the history does not reach back: the age is unknown
    ],
)
def test_follow_restarts_the_age_of_a_broken_publication(
    tmp_path: Path,
    steps: tuple[tuple[frozenset[Association], frozenset[Association]], ...] | None,
    restarted: bool,
) -> None:
    store = _store(tmp_path)
    provider = _Chronicle(ZoneHistory("12", steps))
    note = follow(provider, store, OWNER, NOW, ("boot", 5.0))
    at = store.published(OWNER)[A]["published_at"]
    assert (datetime.fromisoformat(at) == NOW) is restarted
    assert (note is not None) is restarted
    assert store.version(OWNER) == "12"
    assert provider.asked == ["10"]
