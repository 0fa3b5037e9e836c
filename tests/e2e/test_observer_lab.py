"""The DNS observer against the real lab: BIND primary and secondary, validating unbound."""

from __future__ import annotations

import json
import secrets
import socket
import time

import pytest

from rollover.core.addresses import parse_server
from rollover.core.observation import DnssecState, verdict
from rollover.edges.observer import DnsObserver
from tests.conftest import run_rollover
from tests.lab import Lab

pytestmark = pytest.mark.lab


def observer(lab: Lab, *authoritative: str, timeout: float = 1.0) -> DnsObserver:
    return DnsObserver(
        resolvers=[lab.resolver],
        authoritative=list(authoritative),
        ns_port=lab.port,
        timeout=timeout,
    )


def random_hex(n: int = 32) -> str:
    return secrets.token_hex(n)


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, seconds: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("owner", "state"),
    [
        ("_25._tcp.mx1.example.test.", DnssecState.SECURE),
        ("_25._tcp.mx.inline.test.", DnssecState.SECURE),
        ("_25._tcp.mx.plain.test.", DnssecState.INSECURE),
        ("_25._tcp.mx.insecure.example.test.", DnssecState.INSECURE),
        ("_25._tcp.mx.bogus.test.", DnssecState.BOGUS),
        ("_25._tcp.mx.island.lab.", DnssecState.INDETERMINATE),
    ],
)
def test_dnssec_states(lab: Lab, owner: str, state: DnssecState) -> None:
    observation = observer(lab).observe(owner)
    assert observation.error is None
    (resolver,) = observation.resolvers
    assert resolver.state is state, resolver
    assert observation.authoritative
    assert all(a.error is None for a in observation.authoritative)
    if state is DnssecState.BOGUS:
        assert resolver.rcode == "SERVFAIL"
        assert resolver.extended_errors
        assert resolver.extended_errors[0].startswith("EDE 6")
        assert verdict(observation).exit == 2
    signed_zone = state in (DnssecState.SECURE, DnssecState.BOGUS, DnssecState.INDETERMINATE)
    assert observation.authoritative[0].signed is signed_zone


def test_zone_found_and_ns_set_used(lab: Lab) -> None:
    observation = observer(lab).observe("_25._tcp.mx.insecure.example.test.")
    assert observation.zone == "insecure.example.test."
    assert [a.address for a in observation.authoritative] == [lab.primary]


def test_record_added_by_rfc2136_becomes_visible(lab: Lab) -> None:
    owner = "_25._tcp.mxadd.example.test."
    obs = observer(lab, lab.primary)
    before = obs.observe(owner)
    assert not before.authoritative[0].exists
    assert before.authoritative[0].negative_ttl == lab.soa_minimum
    assert before.cache_horizon == lab.soa_minimum
    data = random_hex()
    lab.update("example.test.", add=((owner, 7, "TLSA", f"3 1 1 {data}"),))
    after = obs.observe(owner)
    answer = after.authoritative[0]
    assert answer.exists
    assert answer.ttl == 7
    assert [str(a) for a in answer.records] == [f"3 1 1 {data}"]
    assert answer.signed
    assert answer.rrsig_original_ttl == 7
    assert answer.rrsig_expiration is not None
    assert answer.serial is not None
    assert before.authoritative[0].serial is not None
    assert answer.serial > before.authoritative[0].serial
    # The resolver hands it out as secure once its negative cache entry has aged out.
    final = wait_for(lambda: (o := obs.observe(owner)).resolvers[0].records and o)
    assert final
    assert final.resolvers[0].state is DnssecState.SECURE
    assert final.resolvers[0].records == answer.records
    assert verdict(final).exit == 0


def test_lagging_secondary_is_inconsistent(lab: Lab) -> None:
    owner = "_25._tcp.mxlag.example.test."
    obs = observer(lab, lab.primary, lab.secondary)
    lab.pause_secondary_transfers()
    try:
        lab.update("example.test.", add=((owner, 5, "TLSA", f"3 1 1 {random_hex()}"),))
        observation = obs.observe(owner)
        assert not observation.consistent
        primary, secondary = observation.authoritative
        assert primary.exists
        assert not secondary.exists
        assert secondary.serial is not None
        assert primary.serial is not None
        assert secondary.serial < primary.serial
        result = verdict(observation)
        assert result.exit == 2
        assert any("behind" in r for r in result.reasons)
        assert any("different TLSA RRset" in r for r in result.reasons)
    finally:
        lab.resume_secondary_transfers()
    lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))
    assert obs.observe(owner).consistent


def test_unreachable_server_is_reported_not_hung_on(lab: Lab) -> None:
    dead = f"127.0.0.1:{unused_port()}"
    obs = observer(lab, lab.primary, dead, timeout=0.5)
    started = time.monotonic()
    observation = obs.observe("_25._tcp.mx1.example.test.")
    elapsed = time.monotonic() - started
    by_address = {a.address: a for a in observation.authoritative}
    assert by_address[dead].error is not None
    assert "timed out" in by_address[dead].error
    assert by_address[lab.primary].error is None
    assert not observation.consistent
    assert elapsed < 8, elapsed  # two 0.5 s attempts, servers asked in parallel


def test_server_that_stops_answering(lab: Lab) -> None:
    daemon = lab.daemons["secondary"]
    daemon.pause()
    try:
        observation = observer(lab, lab.primary, lab.secondary, timeout=0.5).observe(
            "_25._tcp.mx1.example.test."
        )
    finally:
        daemon.resume()
    secondary = next(a for a in observation.authoritative if a.address == lab.secondary)
    assert secondary.error is not None
    assert "timed out" in secondary.error
    assert verdict(observation).exit == 2


def test_cname_owner_reports_where_records_live(lab: Lab) -> None:
    data = random_hex()
    lab.update(
        "example.test.",
        add=(
            ("_dane-shared.example.test.", 5, "TLSA", f"3 1 1 {data}"),
            ("_25._tcp.mxc.example.test.", 5, "CNAME", "_dane-shared.example.test."),
        ),
    )
    observation = observer(lab, lab.primary).observe("_25._tcp.mxc.example.test.")
    assert observation.cname_chain == ("_25._tcp.mxc.example.test.",)
    assert observation.target == "_dane-shared.example.test."
    assert [str(a) for a in observation.authoritative[0].records] == [f"3 1 1 {data}"]
    # A cached NSEC range (aggressive negative caching) may hide the new names for up to the
    # negative TTL: exactly what the cache horizon accounts for.
    seen = wait_for(
        lambda: (
            (o := observer(lab, lab.primary).observe("_25._tcp.mxc.example.test."))
            .resolvers[0]
            .records
            and o
        )
    )
    assert seen
    assert [str(a) for a in seen.resolvers[0].records] == [f"3 1 1 {data}"]
    assert seen.resolvers[0].state is DnssecState.SECURE


def test_cname_into_another_zone(lab: Lab) -> None:
    lab.update(
        "example.test.",
        add=(("_25._tcp.mxi.example.test.", 5, "CNAME", "_25._tcp.mx.inline.test."),),
    )
    observation = DnsObserver(resolvers=[lab.resolver], ns_port=lab.port, timeout=1).observe(
        "_25._tcp.mxi.example.test."
    )
    assert observation.error is None
    assert observation.target == "_25._tcp.mx.inline.test."
    assert observation.zone == "example.test."
    assert not observation.authoritative[0].exists


def test_large_rrset_falls_back_to_tcp(lab: Lab) -> None:
    owner = "_25._tcp.mxbig.example.test."
    lab.update(
        "example.test.", add=tuple((owner, 5, "TLSA", f"3 1 2 {random_hex(64)}") for _ in range(20))
    )
    observation = observer(lab, lab.primary).observe(owner)
    answer = observation.authoritative[0]
    assert answer.transport == "tcp"
    assert len(answer.records) == 20


def test_cli_json_contract_and_exit_codes(lab: Lab) -> None:
    base = ["dns", "--resolver", lab.resolver, "--ns-port", str(lab.port), "--timeout", "1"]
    result = run_rollover(*base, "--host", "mx.plain.test", "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    for key in ("owner", "zone", "authoritative", "resolvers", "consistent"):
        assert key in doc
    for key in ("address", "serial", "ttl", "records", "error"):
        assert key in doc["authoritative"][0]
    for key in ("address", "state", "records", "ad"):
        assert key in doc["resolvers"][0]
    assert doc["resolvers"][0]["state"] == "insecure"
    bogus = run_rollover(*base, "--host", "mx.bogus.test")
    assert bogus.returncode == 2
    assert "bogus" in bogus.stdout
    owner = "_25._tcp.mxcli.example.test."
    data = random_hex()
    lab.update("example.test.", add=((owner, 5, "TLSA", f"3 1 1 {data}"),))
    ok = run_rollover(*base, "--owner", owner, "-a", lab.primary, "--json")
    doc = json.loads(ok.stdout)
    assert doc["authoritative"][0]["records"] == [f"3 1 1 {data}"]
    assert doc["consistent"] is True
    # the resolver may still hold the negative answer for up to the SOA minimum
    final = wait_for(
        lambda: run_rollover(*base, "--owner", owner, "-a", lab.primary).returncode == 0
    )
    assert final


def test_cli_errors_are_one_line(lab: Lab) -> None:
    result = run_rollover("dns", "--resolver", "not-an-ip", "--host", "mx1.example.test")
    assert result.returncode == 3
    assert "not an IP address" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_rollover("dns", "--resolver", lab.resolver)
    assert result.returncode == 3
    assert "--host" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5300", ("127.0.0.1", 5300)),
        ("::1", ("::1", 53)),
        ("[::1]:5300", ("::1", 5300)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected
