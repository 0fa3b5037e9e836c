"""The deSEC adapter against the strict local deSEC (tests/desec_fake.py, a thread on loopback,
on a fake clock that the adapter's sleeps advance, so waits for rate limits cost no time)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollover.config import parse_config
from rollover.core.association import parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish, plan_withdraw
from rollover.errors import ConfigError, ConflictError, ProviderError, RolloverError
from rollover.ports import Batching, Provider, SigningAware
from rollover.providers import desec
from rollover.providers.desec import DesecProvider, DesecSettings
from tests.desec_fake import DesecFake

TOKEN = "Zx7-secretTOKENvalue_0123"
A = parse_association("3 1 1 " + "aa" * 32)
B = parse_association("3 1 1 " + "bb" * 32)
F = parse_association("2 0 1 " + "ff" * 32)  # a foreign record, not published by rollover
OWNER = "_25._tcp.mx1.example.com."
SUB = "_25._tcp.mx1"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[DesecFake]:
    server = DesecFake(clock=clock)
    server.add_domain("example.com", minimum_ttl=3600)
    server.add_token(TOKEN)
    with server:
        yield server


def provider(fake: DesecFake, clock: Clock, **overrides: Any) -> DesecProvider:
    values: dict[str, Any] = {"token_file": "/nonexistent", "token": TOKEN, "api_url": fake.url}
    values.update(overrides)
    return DesecProvider("desec", DesecSettings(**values), sleep=clock.sleep)


def raw(fake: DesecFake, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
    """A request to the fake as any client would send it (to check the fake's strictness)."""
    port = int(fake.url.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            method,
            "/api/v1" + path,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None, dict(response.getheaders())
    finally:
        conn.close()


def test_the_adapter_offers_the_protocols(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    assert isinstance(p, Provider)
    assert isinstance(p, Batching)
    assert isinstance(p, SigningAware)


def test_publish_read_back_idempotent(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    assert p.zone_for(OWNER) == "example.com."
    assert p.read(OWNER) == TlsaRRset(OWNER)
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    p.wait(receipt, 30)
    assert fake.rrset("example.com", SUB) == (3600, {str(A)})
    assert p.read(OWNER) == TlsaRRset(OWNER, 3600, frozenset({A}))
    assert receipt.change.after == TlsaRRset(OWNER, 3600, frozenset({A}))
    assert fake.writes()[-1].method == "POST"  # every RRset new: deSEC's create-only POST
    writes = len(fake.writes())
    again = plan_publish(p.read(OWNER), {A}, 3600)
    assert again.is_noop
    assert p.apply(again).change_id == "noop"
    assert len(fake.writes()) == writes  # nothing sent for a no-op
    p.apply(plan_publish(p.read(OWNER), {B}, 3600))
    assert fake.writes()[-1].method == "PATCH"
    assert p.read(OWNER).records == {A, B}


def test_foreign_records_kept_and_only_the_named_withdrawn(fake: DesecFake, clock: Clock) -> None:
    fake.set_rrset("example.com", SUB, 3600, [str(F)])
    fake.set_rrset("example.com", SUB, 3600, ["mx1.example.net."], rrtype="NS")
    fake.set_rrset("example.com", "_443._tcp.www", 7200, [str(B)])
    p = provider(fake, clock)
    p.apply(plan_publish(p.read(OWNER), {A, B}, 3600))
    assert fake.rrset("example.com", SUB) == (3600, {str(F), str(A), str(B)})
    p.apply(plan_withdraw(p.read(OWNER), {B}, frozenset({A, B})))
    assert fake.rrset("example.com", SUB) == (3600, {str(F), str(A)})
    assert fake.rrset("example.com", SUB, "NS") == (3600, {"mx1.example.net."})
    assert fake.rrset("example.com", "_443._tcp.www") == (7200, {str(B)})
    # Withdrawing every record deletes the RRset (PATCH with records: []), nothing else.
    p.apply(plan_withdraw(p.read(OWNER), {A, F}, frozenset({A}), force=True))
    assert fake.rrset("example.com", SUB) is None
    assert fake.writes()[-1].body == [{"subname": SUB, "type": "TLSA", "records": []}]
    assert fake.rrset("example.com", "_443._tcp.www") == (7200, {str(B)})


def test_zone_found_by_longest_suffix_or_pinned(fake: DesecFake, clock: Clock) -> None:
    fake.add_domain("sub.example.com", minimum_ttl=60)
    p = provider(fake, clock)
    assert p.zone_for("_25._tcp.mx.sub.example.com.") == "sub.example.com."
    assert p.zone_for("_25._tcp.mx.other.example.com") == "example.com."
    p.apply(plan_publish(p.read("_25._tcp.mx.sub.example.com."), {A}, 60))
    assert fake.rrset("sub.example.com", "_25._tcp.mx") == (60, {str(A)})
    with pytest.raises(ProviderError, match=r"no domain in this deSEC account holds"):
        p.zone_for("_25._tcp.mx.example.org.")
    pinned = provider(fake, clock, zone="example.com")
    assert pinned.zone_for("_25._tcp.mx.sub.example.com.") == "example.com."
    with pytest.raises(ConfigError, match=r"is not in zone example\.com"):
        pinned.zone_for("_25._tcp.mx.example.org.")


def test_concurrent_edit_before_the_write_is_a_conflict_and_kept(
    fake: DesecFake, clock: Clock
) -> None:
    fake.set_rrset("example.com", SUB, 3600, [str(A)])
    p = provider(fake, clock)
    change = plan_publish(p.read(OWNER), {B}, 3600)
    fake.set_rrset("example.com", SUB, 3600, [str(A), str(F)])  # the other party, meanwhile
    with pytest.raises(ConflictError, match="changed since it was read; nothing was changed"):
        p.apply(change)
    assert fake.writes() == []
    assert fake.rrset("example.com", SUB) == (3600, {str(A), str(F)})
    # A TTL changed meanwhile is a change too: the RRset is not ``before`` any more.
    change = plan_publish(p.read(OWNER), {B}, 3600)
    fake.set_rrset("example.com", SUB, 7200, [str(A), str(F)])
    with pytest.raises(ConflictError):
        p.apply(change)
    assert fake.rrset("example.com", SUB) == (7200, {str(A), str(F)})


def test_concurrent_edit_after_a_read_through_the_hook(fake: DesecFake, clock: Clock) -> None:
    """The fault hook puts the other party's edit right after the read that planned the change
    (as the end-to-end test does to a running CLI): the check before the write sees it."""
    fake.set_rrset("example.com", SUB, 3600, [str(A)])
    p = provider(fake, clock)
    p.read(OWNER)
    fake.inject(
        kind="edit",
        when="after-read",
        domain="example.com",
        subname=SUB,
        ttl=3600,
        records=[str(F)],
    )
    change = plan_publish(p.read(OWNER), {B}, 3600)
    assert change.before.records == {A}
    with pytest.raises(ConflictError, match="changed since it was read"):
        p.apply(change)
    assert fake.writes() == []
    assert fake.rrset("example.com", SUB) == (3600, {str(F)})


def test_concurrent_edit_after_the_write_is_reported_and_kept(
    fake: DesecFake, clock: Clock
) -> None:
    """The other party writes right after the adapter's write, before its read-back: the
    read-back shows their RRset, a conflict, and nothing of theirs is undone."""
    fake.set_rrset("example.com", SUB, 3600, [str(A)])
    p = provider(fake, clock)
    change = plan_publish(p.read(OWNER), {B}, 3600)
    fake.inject(
        kind="edit",
        when="after-write",
        domain="example.com",
        subname=SUB,
        ttl=3600,
        records=[str(A), str(F)],
    )
    with pytest.raises(ConflictError, match="not the intended one"):
        p.apply(change)
    assert len(fake.writes()) == 1
    assert fake.rrset("example.com", SUB) == (3600, {str(A), str(F)})  # nothing restored


def test_concurrent_creation_refused_by_desec_itself(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    change = plan_publish(p.read(OWNER), {A}, 3600)
    fake.inject(
        kind="edit",
        when="before-write",
        domain="example.com",
        subname=SUB,
        ttl=3600,
        records=[str(F)],
    )
    with pytest.raises(ConflictError, match="created by someone else"):
        p.apply(change)
    assert fake.writes()[0].method == "POST"
    assert fake.writes()[0].status == 400
    assert fake.rrset("example.com", SUB) == (3600, {str(F)})


def test_the_documented_race_window(fake: DesecFake, clock: Clock) -> None:
    """deSEC has no conditional PATCH: an edit landing between the adapter's last read and its
    write is overwritten and cannot be seen (the docstring's race window)."""
    fake.set_rrset("example.com", SUB, 3600, [str(A)])
    p = provider(fake, clock)
    change = plan_publish(p.read(OWNER), {B}, 3600)
    fake.inject(
        kind="edit",
        when="before-write",
        domain="example.com",
        subname=SUB,
        ttl=3600,
        records=[str(A), str(F)],
    )
    p.apply(change)
    assert fake.rrset("example.com", SUB) == (3600, {str(A), str(B)})


def test_minimum_ttl_is_raised_and_reported(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    assert p.minimum_ttl(OWNER) == 3600
    assert p.published_ttl(OWNER, 300) == 3600
    assert p.published_ttl(OWNER, 7200) == 7200
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert fake.writes()[-1].body[0]["ttl"] == 3600
    assert receipt.change.after.ttl == 3600
    assert "TTL 300 raised to 3600" in receipt.detail
    assert p.read(OWNER).ttl == 3600
    # The fake refuses the low TTL as deSEC does (so the raise above is needed).
    status, body, _h = raw(
        fake,
        "PATCH",
        "/domains/example.com/rrsets/",
        [{"subname": SUB, "type": "TLSA", "ttl": 300, "records": [str(B)]}],
    )
    assert status == 400
    assert body == [{"ttl": ["Ensure this value is greater than or equal to 3600."]}]
    with pytest.raises(ProviderError, match="above deSEC's maximum of 86400"):
        p.apply(plan_publish(p.read(OWNER), {B}, 90000))
    assert fake.rrset("example.com", SUB) == (3600, {str(A)})


def test_throttled_write_waits_then_succeeds(clock: Clock) -> None:
    with DesecFake(clock=clock, rates={"dns_api_per_domain_expensive": [(1, 60)]}) as fake:
        fake.add_domain("example.com")
        fake.add_token(TOKEN)
        p = provider(fake, clock, max_wait=90)
        p.apply(plan_publish(p.read(OWNER), {A}, 3600))
        clock.t += 10
        p.apply(plan_publish(p.read(OWNER), {B}, 3600))
        assert clock.slept == [50.0]  # Retry-After: the first write leaves the window then
        assert [w.status for w in fake.writes()] == [201, 429, 200]
        assert fake.rrset("example.com", SUB) == (3600, {str(A), str(B)})


def test_throttled_beyond_max_wait_is_one_line_and_changes_nothing(clock: Clock) -> None:
    rates = {"dns_api_per_domain_expensive": [(5, 1), (1, 3600)]}
    with DesecFake(clock=clock, rates=rates) as fake:
        fake.add_domain("example.com")
        fake.add_token(TOKEN)
        p = provider(fake, clock, max_wait=60)
        p.apply(plan_publish(p.read(OWNER), {A}, 3600))
        with pytest.raises(ProviderError) as caught:
            p.apply(plan_publish(p.read(OWNER), {B}, 3600))
        message = str(caught.value)
        assert "\n" not in message
        assert "rate limit" in message
        assert "Retry-After 3600 s" in message
        assert "nothing was changed" in message
        assert clock.slept == []
        assert fake.rrset("example.com", SUB) == (3600, {str(A)})


def test_throttled_reads_wait_too(clock: Clock) -> None:
    with DesecFake(clock=clock, rates={"dns_api_cheap": [(3, 1), (50, 60)]}) as fake:
        fake.add_domain("example.com")
        fake.add_token(TOKEN)
        p = provider(fake, clock)
        for _ in range(4):
            p.read(OWNER)  # one domain GET, then four RRset GETs: two waits of one second
        assert clock.slept == [1.0]
        assert [e.status for e in fake.log].count(429) == 1


def test_429_without_retry_after_waits_a_second(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    p.read(OWNER)
    fake.inject(
        kind="status", method="POST", status=429, body={"detail": "Too many concurrent requests."}
    )
    p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    assert clock.slept == [1.0]
    assert fake.rrset("example.com", SUB) == (3600, {str(A)})


def test_bad_token(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock, token="Wrong-token-value-999")
    with pytest.raises(
        ProviderError,
        match=r"deSEC rejected the token in /nonexistent \(401: "
        r"Invalid token.\)",
    ) as caught:
        p.read(OWNER)
    assert "Wrong-token-value-999" not in str(caught.value)


def test_token_without_write_permission(fake: DesecFake, clock: Clock) -> None:
    fake.add_token("Read-only-token-1234", writable=set())
    p = provider(fake, clock, token="Read-only-token-1234")
    with pytest.raises(ProviderError, match=r"403: Insufficient token permissions.*perm_write"):
        p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    assert fake.rrset("example.com", SUB) is None


def test_unknown_domain(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock, zone="nowhere.example")
    with pytest.raises(ProviderError, match=r"deSEC has no domain nowhere.example in this account"):
        p.read("_25._tcp.mx.nowhere.example.")


def test_bad_data_carries_desecs_message(fake: DesecFake, clock: Clock) -> None:
    fake.set_rrset("example.com", SUB, 3600, ["mx1.example.net."], rrtype="CNAME")
    p = provider(fake, clock)
    assert not p.read(OWNER).exists
    with pytest.raises(
        ProviderError,
        match=r"deSEC rejected the TLSA change at .*: item 0: "
        r"RRset with conflicting type present at same subname: database \(CNAME\)",
    ):
        p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    # A malformed record of our own is refused before anything is sent.
    short = parse_association("3 1 1 " + "ab" * 20)
    writes = len(fake.writes())
    with pytest.raises(ProviderError, match="refusing to publish malformed TLSA"):
        p.apply(plan_publish(TlsaRRset("_25._tcp.mx2.example.com."), {short}, 3600))
    assert len(fake.writes()) == writes


def test_the_fake_rejects_what_desec_rejects(clock: Clock) -> None:
    with DesecFake(clock=clock, rates={}) as fake:  # every request here: no throttling
        fake.add_domain("example.com")
        fake.add_token(TOKEN)
        strict_fake(fake)


def strict_fake(fake: DesecFake) -> None:
    path = "/domains/example.com/rrsets/"

    def item(records: list[str], **extra: Any) -> list[dict[str, Any]]:
        return [{"subname": SUB, "type": "TLSA", "ttl": 3600, "records": records, **extra}]

    status, body, _h = raw(fake, "PATCH", path, item(["3 1 1 " + "a" * 35]))
    assert (status, body) == (
        400,
        [{"non_field_errors": ["Cannot parse hexadecimal or base64 record contents"]}],
    )
    status, body, _h = raw(fake, "PATCH", path, item(["3 1 x aa"]))
    assert status == 400
    assert "malformed" in json.dumps(body)
    status, body, _h = raw(
        fake, "PATCH", path, item([str(A), str(A).upper().replace("3 1 1 ", "3 1 1 ")])
    )
    assert (status, body) == (
        400,
        [{"non_field_errors": ["Duplicate: records must be semantically unique"]}],
    )
    status, body, _h = raw(
        fake, "PATCH", path, [{"subname": SUB, "type": "tlsa", "ttl": 3600, "records": [str(A)]}]
    )
    assert body == [{"type": ["The tlsa RR set type is currently unsupported."]}]
    # Atomic: one bad item refuses the whole request.
    status, body, _h = raw(
        fake, "PATCH", path, [*item([str(A)]), {**item([str(B)])[0], "subname": "x", "ttl": 5}]
    )
    assert status == 400
    assert body[0] == {}
    assert fake.rrset("example.com", SUB) is None
    # Canonical form: upper-case, spaced hex is stored as lowercase, unbroken hex.
    spaced = "3 1 1 " + ("AA" * 16) + " " + ("AA" * 16)
    status, body, _h = raw(fake, "PATCH", path, item([spaced]))
    assert status == 200
    assert body[0]["records"] == [str(A)]
    status, body, headers = raw(fake, "GET", "/domains/example.com/", token="nope-nope-nope")
    assert (status, body) == (401, {"detail": "Invalid token."})
    assert headers["WWW-Authenticate"] == "Token"
    status, body, _h = raw(fake, "GET", "/domains/nowhere.example/")
    assert (status, body) == (404, {"detail": "Not found."})
    status, body, _h = raw(fake, "POST", path, item([str(B)]))
    assert status == 400
    assert "same subdomain and type exists" in json.dumps(body)


def test_secret_never_in_errors_or_repr(fake: DesecFake, clock: Clock) -> None:
    messages = []
    attempts: list[Any] = [
        lambda: provider(fake, clock, token=TOKEN + "x").read(OWNER),
        lambda: provider(fake, clock, zone="nowhere.example").read("_1._tcp.nowhere.example."),
        lambda: provider(fake, clock, api_url="http://127.0.0.1:1/api/v1", retries=1).read(OWNER),
    ]
    for attempt in attempts:
        with pytest.raises(RolloverError) as caught:
            attempt()
        messages.append(str(caught.value))
    fake.inject(
        kind="status",
        method="GET",
        status=500,
        times=3,
        body={"detail": f"echo of Token {TOKEN + 'x'} and {TOKEN}"},
    )
    with pytest.raises(ProviderError) as echoed:
        provider(fake, clock).read(OWNER)
    messages.append(str(echoed.value))
    assert "[token]" in messages[-1]
    assert all(TOKEN not in m for m in messages), messages
    assert all("\n" not in m for m in messages)
    assert TOKEN not in repr(provider(fake, clock).settings)


def test_unreachable_and_timeout(fake: DesecFake, clock: Clock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = provider(fake, clock, api_url=f"http://127.0.0.1:{port}/api/v1", retries=3)
    with pytest.raises(
        ProviderError,
        match=r"unreachable while looking up the domain of "
        r"_25._tcp.mx1.example.com.: Connection refused \(3 attempts\)",
    ):
        p.read(OWNER)
    assert clock.slept == [0.5, 1.0]  # bounded backoff
    slow = provider(fake, clock, timeout=0.2, retries=1)
    slow.domain("example.com")
    fake.inject(kind="delay", method="GET", seconds=0.6)
    with pytest.raises(ProviderError, match=r"no answer within 0.2 s \(1 attempts\)"):
        slow.read(OWNER)


def test_lost_answer_after_the_write_is_read_back(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    fake.inject(kind="drop", method="POST", when="after")
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    assert "applied (the answer was lost" in receipt.detail
    assert fake.rrset("example.com", SUB) == (3600, {str(A)})
    fake.inject(kind="drop", method="PATCH", when="before")
    with pytest.raises(ProviderError, match="deSEC still holds the RRsets as before"):
        p.apply(plan_publish(p.read(OWNER), {B}, 3600))
    assert len([w for w in fake.writes() if w.method == "PATCH"]) == 1  # never sent twice
    assert fake.rrset("example.com", SUB) == (3600, {str(A)})


def test_server_errors_on_reads_are_retried(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    p.domain("example.com")
    fake.inject(kind="status", method="GET", status=502, body=None, times=2)
    assert p.read(OWNER) == TlsaRRset(OWNER)
    assert clock.slept == [0.5, 1.0]


def test_apply_many_is_one_bulk_request(fake: DesecFake, clock: Clock) -> None:
    owners = [f"_25._tcp.mx{i}.example.com." for i in range(3)]
    fake.set_rrset("example.com", "_25._tcp.mx1", 3600, [str(F)])
    fake.set_rrset("example.com", "_25._tcp.mx2", 3600, [str(A)])
    p = provider(fake, clock)
    changes = [plan_publish(p.read(o), {A}, 3600) for o in owners]
    assert changes[2].is_noop
    before = len(fake.log)
    receipts = p.apply_many(changes)
    assert [r.change.owner for r in receipts] == owners
    assert receipts[2].change_id == "noop"
    sent = fake.log[before:]
    assert [(e.method, e.status) for e in sent] == [("GET", 200), ("PATCH", 200), ("GET", 200)]
    assert sent[0].query == {"type": ["TLSA"], "cursor": [""]}
    assert [i["subname"] for i in sent[1].body] == ["_25._tcp.mx0", "_25._tcp.mx1"]
    assert fake.rrset("example.com", "_25._tcp.mx0") == (3600, {str(A)})
    assert fake.rrset("example.com", "_25._tcp.mx1") == (3600, {str(F), str(A)})
    fake.add_domain("example.net")
    across = [
        plan_publish(TlsaRRset("_25._tcp.a.example.com."), {B}, 3600),
        plan_publish(TlsaRRset("_25._tcp.a.example.net."), {B}, 3600),
    ]
    with pytest.raises(ProviderError, match="only touch one domain"):
        p.apply_many(across)


def test_apply_many_conflict_sends_nothing(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    owners = ["_25._tcp.mx0.example.com.", "_25._tcp.mx1.example.com."]
    changes = [plan_publish(p.read(o), {A}, 3600) for o in owners]
    fake.set_rrset("example.com", "_25._tcp.mx1", 3600, [str(F)])
    with pytest.raises(ConflictError, match=r"_25\._tcp\.mx1\.example\.com\."):
        p.apply_many(changes)
    assert fake.writes() == []
    assert fake.rrset("example.com", "_25._tcp.mx0") is None


def test_pagination_of_the_tlsa_list(clock: Clock) -> None:
    with DesecFake(clock=clock, page_size=2) as fake:
        fake.add_domain("example.com")
        fake.add_token(TOKEN)
        for i in range(5):
            fake.set_rrset("example.com", f"_25._tcp.x{i}", 3600, [str(F)])
        status, body, headers = raw(fake, "GET", "/domains/example.com/rrsets/?type=TLSA")
        assert status == 400
        assert "Pagination required" in body["detail"]
        assert 'rel="first"' in headers["Link"]
        p = provider(fake, clock)
        owners = ["_25._tcp.x0.example.com.", "_25._tcp.x4.example.com."]
        changes = [plan_publish(p.read(o), {A}, 3600) for o in owners]
        p.apply_many(changes)
        assert fake.rrset("example.com", "_25._tcp.x4") == (3600, {str(F), str(A)})
        pages = [e.query["cursor"][0] for e in fake.log if "cursor" in e.query and e.status == 200]
        assert pages == ["", "2", "4"] * 2  # every page, before the write and after it


def test_dnssec_keys_and_ds(fake: DesecFake, clock: Clock) -> None:
    fake.add_domain("unsigned.example", keys=False)
    p = provider(fake, clock)
    assert p.dnssec_signing(OWNER) is True
    ds = fake.domains["example.com"].keys[0]["ds"]
    assert p.delegation_ds(OWNER) == frozenset(ds)
    assert len(ds) == 2
    assert ds[0].split()[1:3] == ["13", "2"]
    assert p.dnssec_signing("_25._tcp.mx.unsigned.example.") is False


def test_wait_needs_no_request(fake: DesecFake, clock: Clock) -> None:
    p = provider(fake, clock)
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 3600))
    before = len(fake.log)
    p.wait(receipt, 1)
    p.wait(p.apply(Change(p.read(OWNER), p.read(OWNER))), 1)
    assert len(fake.log) == before + 2  # the two reads of the no-op only


def parse(tmp_path: Path, settings: dict[str, Any], token: str = TOKEN) -> Any:
    token_file = tmp_path / "desec.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    raw_config = {"providers": {"d": {"type": "desec", "token_file": str(token_file), **settings}}}
    return parse_config(
        raw_config, "rollover.yaml", lambda kind: desec.parse_settings if kind == "desec" else None
    )


def test_settings(tmp_path: Path) -> None:
    config = parse(tmp_path, {"zone": "Example.COM.", "max_wait": 120})
    settings = config.providers["d"].settings
    assert settings.token == TOKEN
    assert settings.zone == "example.com"
    assert settings.api_url == "https://desec.io/api/v1"
    assert settings.max_wait == 120
    assert TOKEN not in repr(config)
    cases = [
        ({"api_url": "http://desec.io/api/v1"}, "providers.d.api_url: plain http:// only"),
        ({"api_url": "https://user:pw@desec.io/api/v1"}, "providers.d.api_url: give the base"),
        ({"zone": "bad_zone..x"}, "providers.d.zone:"),
        ({"timeout": 0}, "providers.d.timeout: 0 is below 0.1"),
        ({"max_wait": 100000}, "providers.d.max_wait: 100000 is above 86400"),
        ({"retries": 0}, "providers.d.retries: 0 is out of range"),
        ({"token": "x"}, "providers.d.token: unknown key"),
    ]
    for settings_in, needle in cases:
        with pytest.raises(ConfigError) as caught:
            parse(tmp_path, settings_in)
        assert needle in str(caught.value)
    with pytest.raises(ConfigError, match="does not hold a deSEC token") as bad:
        parse(tmp_path, {}, token="two words")
    assert "two words" not in str(bad.value)
    with pytest.raises(ConfigError, match=r"providers\.d\.token_file: is required"):
        parse_config(
            {"providers": {"d": {"type": "desec"}}},
            "rollover.yaml",
            lambda kind: desec.parse_settings,
        )
    assert (
        parse(tmp_path, {"api_url": "http://127.0.0.1:8080/api/v1/"})
        .providers["d"]
        .settings.api_url
        == "http://127.0.0.1:8080/api/v1"
    )
