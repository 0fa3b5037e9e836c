"""The Cloudflare adapter against the strict local fake of the API (tests/cloudflare_fake.py),
served in a thread of this process on 127.0.0.1 and stopped after each test."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollover.config import Section
from rollover.core.association import Association, parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish, plan_withdraw
from rollover.errors import ConfigError, ConflictError, ProviderError
from rollover.ports import Batching, Provider, SigningAware
from rollover.providers import cloudflare as cf
from rollover.providers.cloudflare import CloudflareProvider, CloudflareSettings, parse_settings
from tests.cloudflare_fake import DNS_READ, ZONE_READ, FakeCloudflare

A = parse_association("3 1 1 " + "aa" * 32)
B = parse_association("3 1 1 " + "bb" * 32)
C = parse_association("2 0 1 " + "cc" * 32)
F = parse_association("3 1 1 " + "ff" * 32)  # another tool's record
OWNER = "_25._tcp.mx1.example.com."
OTHER = "_25._tcp.mx2.example.com."


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    server = FakeCloudflare()
    server.add_zone("example.com")
    server.start()
    yield server
    server.stop()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def token_file(tmp_path: Path, token: str) -> str:
    path = tmp_path / f"token-{len(list(tmp_path.iterdir()))}"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def make(
    fake: FakeCloudflare,
    tmp_path: Path,
    token: str | None = None,
    sleep: Sleeps | None = None,
    **settings: Any,
) -> CloudflareProvider:
    token = token if token is not None else fake.add_token()
    config = CloudflareSettings(
        api_token_file=token_file(tmp_path, token),
        api_url=settings.pop("api_url", fake.url),
        propagation_seconds=settings.pop("propagation_seconds", 0.0),
        **settings,
    )
    return CloudflareProvider("cf", config, sleep=sleep or Sleeps())


def rdata(a: Association) -> str:
    return str(a)


def batch_posts(fake: FakeCloudflare) -> int:
    return sum(1 for m, p, _h in fake.requests if m == "POST" and p.endswith("/batch"))


# -- flows ------------------------------------------------------------------------------------


def test_is_a_provider_with_batching_and_signing(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    assert isinstance(p, Provider)
    assert isinstance(p, Batching)
    assert isinstance(p, SigningAware)


def test_publish_read_back_foreign_records_kept(fake: FakeCloudflare, tmp_path: Path) -> None:
    foreign_id = fake.edit_add("example.com", OWNER, rdata(F), ttl=300)
    elsewhere = fake.edit_add("example.com", OTHER, rdata(B), ttl=300)
    p = make(fake, tmp_path)
    assert p.zone_for(OWNER) == "example.com."
    assert p.read(OWNER) == TlsaRRset(OWNER, 300, frozenset({F}))
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 300))
    p.wait(receipt, 30)
    assert p.read(OWNER) == TlsaRRset(OWNER, 300, frozenset({A, F}))
    stored = {r["id"]: r for r in fake.tlsa("example.com", OWNER)}
    assert foreign_id in stored  # the foreign record itself, not a copy
    new = [r for r in stored.values() if r["id"] != foreign_id]
    assert new[0]["data"] == {
        "usage": 3,
        "selector": 1,
        "matching_type": 1,
        "certificate": A.hex.upper(),  # the API hands it back upper-case
    }
    assert new[0]["comment"] == "rollover: DANE TLSA"
    _at, body = fake.batches[-1]
    assert set(body) == {"posts"}  # nothing deleted or patched
    assert [r["id"] for r in fake.tlsa("example.com", OTHER)] == [elsewhere]


def test_publish_is_idempotent(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    sent = batch_posts(fake)
    again = plan_publish(p.read(OWNER), {A}, 300)
    assert again.is_noop
    assert p.apply(again).change_id == "noop"
    assert p.apply_many([again]) == []
    assert batch_posts(fake) == sent
    assert len(fake.tlsa("example.com", OWNER)) == 1


def test_withdraw_only_what_is_asked(fake: FakeCloudflare, tmp_path: Path) -> None:
    fake.edit_add("example.com", OWNER, rdata(F), ttl=300)
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A, B}, 300))
    ids = {r["data"]["certificate"].lower(): r["id"] for r in fake.tlsa("example.com", OWNER)}
    change = plan_withdraw(p.read(OWNER), {A}, owned=frozenset({A, B}))
    p.wait(p.apply(change), 30)
    assert p.read(OWNER).records == {B, F}
    _at, body = fake.batches[-1]
    assert body == {"deletes": [{"id": ids[A.hex]}]}
    # Withdrawing the last one empties the RRset; the foreign one stays.
    p.apply(plan_withdraw(p.read(OWNER), {B, F}, owned=frozenset({B}), force=True))
    assert not p.read(OWNER).exists


def test_ttl_change_patches_kept_records(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    a_id = fake.tlsa("example.com", OWNER)[0]["id"]
    p.apply(plan_publish(p.read(OWNER), {B}, 600))
    assert p.read(OWNER) == TlsaRRset(OWNER, 600, frozenset({A, B}))
    _at, body = fake.batches[-1]
    assert body["patches"] == [{"id": a_id, "name": OWNER.rstrip("."), "type": "TLSA", "ttl": 600}]
    assert fake.tlsa("example.com", OWNER)[0]["id"] == a_id  # patched in place


def test_automatic_ttl_reads_as_300_and_is_never_sent(fake: FakeCloudflare, tmp_path: Path) -> None:
    fake.edit_add("example.com", OWNER, rdata(F), ttl=1)
    p = make(fake, tmp_path)
    assert p.read(OWNER).ttl == 300
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert {r["ttl"] for r in fake.tlsa("example.com", OWNER)} == {300}  # 1 replaced by 300
    sent = json.dumps([b for _t, b in fake.batches])
    assert '"ttl": 1' not in sent
    assert '"ttl": 1,' not in sent


@pytest.mark.parametrize("ttl", [1, 30, 59, 86401])
def test_ttl_outside_the_range_is_refused_before_sending(
    fake: FakeCloudflare, tmp_path: Path, ttl: int
) -> None:
    p = make(fake, tmp_path)
    with pytest.raises(ProviderError, match=r"outside Cloudflare's 60\.\.86400 s \(1 would mean"):
        p.apply(plan_publish(p.read(OWNER), {A}, ttl))
    assert batch_posts(fake) == 0
    assert not fake.tlsa("example.com", OWNER)


def test_cloudflare_refuses_a_ttl_below_the_zone_minimum(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path, minimum_ttl=30)  # as for an Enterprise zone; this one is not
    with pytest.raises(ProviderError) as caught:
        p.apply(plan_publish(p.read(OWNER), {A}, 30))
    assert "9021: TTL must be between 60 and 86400 seconds, or 1 for Automatic." in str(
        caught.value
    )
    assert not fake.tlsa("example.com", OWNER)
    enterprise = fake.add_zone("example.net", min_ttl=30)
    owner = "_25._tcp.mx.example.net."
    p.apply(plan_publish(p.read(owner), {A}, 30))
    assert [r["ttl"] for r in fake.tlsa(enterprise.name, owner)] == [30]


def test_bad_data_gets_cloudflares_own_message(fake: FakeCloudflare, tmp_path: Path) -> None:
    short = parse_association("3 1 1 " + "ab" * 31)  # a SHA-256 of 31 bytes
    p = make(fake, tmp_path)
    with pytest.raises(ProviderError) as caught:
        p.apply(plan_publish(p.read(OWNER), {A, short}, 300))
    text = str(caught.value)
    assert "certificate must be 32 bytes for matching type 1" in text
    assert "\n" not in text
    assert not fake.tlsa("example.com", OWNER)  # the good one did not go in either


def test_pagination(fake: FakeCloudflare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cf, "PER_PAGE", 5)
    many = {parse_association(f"3 1 1 {i:064x}") for i in range(12)}
    for association in many:
        fake.edit_add("example.com", OWNER, rdata(association))
    p = make(fake, tmp_path)
    assert p.read(OWNER).records == many
    pages = [h for m, path, h in fake.requests if path.endswith("/dns_records")]
    assert len(pages) == 3


# -- compare-and-swap ------------------------------------------------------------------------


def test_stale_before_is_a_conflict_and_nothing_is_sent(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    stale = p.read(OWNER)
    fake.edit_add("example.com", OWNER, rdata(F))
    with pytest.raises(ConflictError, match=r"changed since it was read.*nothing was changed"):
        p.apply(plan_publish(stale, {A}, 300))
    assert batch_posts(fake) == 0
    assert p.read(OWNER).records == {F}


def test_concurrent_add_between_read_and_write_is_detected_and_kept(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    change = plan_publish(p.read(OWNER), {A}, 300)
    fake.before_batch(lambda f: f.edit_add("example.com", OWNER, rdata(F)))
    with pytest.raises(ConflictError) as caught:
        p.apply(change)
    assert "another writer changed it between the read and the write" in str(caught.value)
    assert "nothing was restored" in str(caught.value)
    assert fake.pending() == 0
    assert p.read(OWNER).records == {A, F}  # the other party's record is kept


def test_concurrent_delete_of_a_record_we_delete_refuses_the_whole_batch(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A, B}, 300))
    change = Change(p.read(OWNER), TlsaRRset(OWNER, 300, frozenset({B, C})))  # -A +C
    fake.before_batch(lambda f: f.edit_delete("example.com", OWNER, A.hex))
    with pytest.raises(ConflictError, match=r"81044: Record does not exist\..*nothing was changed"):
        p.apply(change)
    assert p.read(OWNER).records == {B}  # their delete kept; our post of C not applied


def test_concurrent_add_of_the_record_we_add_refuses_the_whole_batch(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    change = Change(p.read(OWNER), TlsaRRset(OWNER, 300, frozenset({B})))  # -A +B
    fake.before_batch(lambda f: f.edit_add("example.com", OWNER, rdata(B)))
    with pytest.raises(ConflictError, match="81058: An identical record already exists"):
        p.apply(change)
    assert p.read(OWNER).records == {A, B}  # our delete of A was not applied either


def test_concurrent_delete_of_a_kept_record_is_caught_by_the_read_back(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    change = plan_publish(p.read(OWNER), {B}, 300)
    fake.before_batch(lambda f: f.edit_delete("example.com", OWNER, A.hex))
    with pytest.raises(ConflictError, match="not the intended"):
        p.apply(change)
    assert p.read(OWNER).records == {B}  # A is not put back


# -- batching ----------------------------------------------------------------------------------


def test_apply_many_is_one_batch_request(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    p.apply(plan_publish(p.read(OTHER), {B}, 300))
    sent = batch_posts(fake)
    changes = [
        plan_publish(p.read(OWNER), {A}, 300),
        Change(p.read(OTHER), TlsaRRset(OTHER, 300, frozenset({C}))),
    ]
    receipts = p.apply_many(changes)
    assert batch_posts(fake) == sent + 1
    assert [r.change for r in receipts] == changes
    assert len({r.change_id for r in receipts}) == 1
    assert p.read(OWNER).records == {A}
    assert p.read(OTHER).records == {C}
    _at, body = fake.batches[-1]
    assert len(body["deletes"]) == 1
    assert len(body["posts"]) == 2
    fake.add_zone("example.org")
    with pytest.raises(ProviderError, match="one zone"):
        p.apply_many(
            [
                plan_publish(p.read(OWNER), {B}, 300),
                plan_publish(p.read("_25._tcp.mx.example.org."), {B}, 300),
            ]
        )


def test_apply_many_conflict_on_one_owner_writes_nothing(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path)
    changes = [plan_publish(p.read(OWNER), {A}, 300), plan_publish(p.read(OTHER), {B}, 300)]
    fake.edit_add("example.com", OTHER, rdata(F))
    with pytest.raises(ConflictError, match=OTHER):
        p.apply_many(changes)
    assert not p.read(OWNER).exists
    assert batch_posts(fake) == 0


def test_batch_over_the_plan_limit_is_refused_before_sending(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path, batch_limit=2)
    with pytest.raises(ProviderError, match="3 operations, more than Cloudflare takes in one"):
        p.apply(plan_publish(p.read(OWNER), {A, B, C}, 300))
    assert batch_posts(fake) == 0


# -- faults and retries ----------------------------------------------------------------------


def test_rate_limit_backoff_then_success(fake: FakeCloudflare, tmp_path: Path) -> None:
    sleeps = Sleeps()
    p = make(fake, tmp_path, sleep=sleeps)
    fake.retry_after = 7
    fake.inject("records", "429", times=2)
    fake.inject("batch", "429", times=1)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert sleeps.calls == [7.0, 7.0, 7.0]
    assert p.read(OWNER).records == {A}
    assert len(fake.batches) == 1


def test_rate_limit_exhausted_is_one_line(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path, max_attempts=3)
    p.zone_for(OWNER)
    fake.inject("records", "429", times=10)
    before = len(fake.requests)
    with pytest.raises(ProviderError) as caught:
        p.read(OWNER)
    text = str(caught.value)
    assert "rate-limited by Cloudflare (HTTP 429" in text
    assert "gave up after 3 attempts" in text
    assert "\n" not in text
    assert len(fake.requests) - before == 3


def test_rate_limit_window_of_the_service(fake: FakeCloudflare, tmp_path: Path) -> None:
    """The documented behaviour: past the budget every call is refused for the window, with
    retry-after; the adapter waits it out (here the wait is real, the window short)."""
    import time

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(0.3)

    p = make(fake, tmp_path)
    p = CloudflareProvider("cf", p.settings, sleep=sleep)
    p.zone_for(OWNER)
    fake.limit(3, 0.25)
    for _ in range(4):
        p.read(OWNER)
    assert slept == [1.0]  # ceil of the window's remainder, as the service rounds it
    fake.limit(0, 0.25)
    impatient = CloudflareSettings(**{**p.settings.__dict__, "rate_limit_wait": 0.5})
    with pytest.raises(ProviderError, match="retry after 1 s"):
        CloudflareProvider("cf", impatient).read(OWNER)


def test_retry_after_longer_than_allowed_fails_at_once(
    fake: FakeCloudflare, tmp_path: Path
) -> None:
    p = make(fake, tmp_path, rate_limit_wait=60)
    fake.retry_after = 300
    fake.inject("zones", "429", times=5)
    with pytest.raises(ProviderError, match=r"retry after 300 s; gave up after 1 attempt$"):
        p.read(OWNER)


def test_lost_reply_after_commit_is_not_sent_twice(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    fake.inject("batch", "drop-after")
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert receipt.change_id.startswith("batch-")
    assert len(fake.batches) == 1
    assert p.read(OWNER).records == {A}


@pytest.mark.parametrize("fault", ["drop", "500"])
def test_batch_that_did_not_commit_is_sent_again(
    fake: FakeCloudflare, tmp_path: Path, fault: str
) -> None:
    p = make(fake, tmp_path)
    fake.inject("batch", fault)
    p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert batch_posts(fake) == 2
    assert len(fake.batches) == 1
    assert p.read(OWNER).records == {A}


def test_batch_never_committing_gives_up(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path, max_attempts=2)
    fake.inject("batch", "500", times=5)
    with pytest.raises(ProviderError, match=r"HTTP 500.*nothing was changed; gave up after 2"):
        p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert not fake.batches


def test_read_retries_server_errors(fake: FakeCloudflare, tmp_path: Path) -> None:
    sleeps = Sleeps()
    p = make(fake, tmp_path, sleep=sleeps)
    fake.inject("records", "500", times=1)
    fake.inject("records", "drop", times=1)
    assert not p.read(OWNER).exists
    assert sleeps.calls == [0.5, 1.0]


def test_timeout(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path, timeout=0.2, max_attempts=2)
    p.zone_for(OWNER)
    fake.inject("records", "delay:0.6", times=2)
    with pytest.raises(ProviderError, match=r"did not answer within 0.2 s \(2 attempts\)"):
        p.read(OWNER)


def test_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = token_file(tmp_path, "t" * 40)
    p = CloudflareProvider(
        "cf",
        CloudflareSettings(
            api_token_file=path, api_url=f"http://127.0.0.1:{port}/client/v4", max_attempts=2
        ),
        sleep=Sleeps(),
    )
    with pytest.raises(ProviderError) as caught:
        p.read(OWNER)
    text = str(caught.value)
    assert f"cannot reach the Cloudflare API at 127.0.0.1:{port}" in text
    assert "(2 attempts)" in text
    assert "\n" not in text


# -- authentication and zones ----------------------------------------------------------------


def test_bad_token(fake: FakeCloudflare, tmp_path: Path) -> None:
    unknown = "u" * 40
    with pytest.raises(ProviderError) as caught:
        make(fake, tmp_path, token=unknown).read(OWNER)
    text = str(caught.value)
    assert "Cloudflare rejected the API token (9109: Invalid access token)" in text
    assert unknown not in text
    with pytest.raises(ProviderError, match="6111: Invalid format for Authorization header"):
        make(fake, tmp_path, token="short").read(OWNER)


def test_missing_permission_names_the_minimal_token(fake: FakeCloudflare, tmp_path: Path) -> None:
    zone_only = fake.add_token(frozenset({ZONE_READ}))
    with pytest.raises(ProviderError) as caught:
        make(fake, tmp_path, token=zone_only).read(OWNER)
    text = str(caught.value)
    assert "permission denied for zone example.com (10000: Authentication error)" in text
    assert "Zone → Zone → Read and Zone → DNS → Edit" in text
    assert zone_only not in text
    read_only = fake.add_token(frozenset({ZONE_READ, DNS_READ}))
    p = make(fake, tmp_path, token=read_only)
    assert not p.read(OWNER).exists
    assert p.dnssec_signing(OWNER)
    with pytest.raises(ProviderError, match="permission denied"):
        p.apply(plan_publish(p.read(OWNER), {A}, 300))
    assert not fake.tlsa("example.com", OWNER)


def test_unknown_zone(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path, zone="nowhere.example.")
    with pytest.raises(ConfigError, match=r"is not in zone nowhere\.example\."):
        p.read(OWNER)
    with pytest.raises(ProviderError, match=r"no zone named nowhere\.example is visible"):
        p.read("_25._tcp.mx.nowhere.example.")
    with pytest.raises(ProviderError, match="no zone visible to this token holds"):
        make(fake, tmp_path).read("_25._tcp.mx.example.invalid.")
    # A token scoped to another zone does not see this one.
    fake.add_zone("example.org")
    scoped = fake.add_token(zones=frozenset({"example.org"}))
    with pytest.raises(ProviderError, match="no zone visible to this token"):
        make(fake, tmp_path, token=scoped).read(OWNER)


def test_zone_by_name_and_longest_suffix(fake: FakeCloudflare, tmp_path: Path) -> None:
    sub = fake.add_zone("sub.example.com")
    owner = "_25._tcp.mx.sub.example.com."
    p = make(fake, tmp_path)
    assert p.zone_for(owner) == "sub.example.com."
    p.apply(plan_publish(p.read(owner), {A}, 300))
    assert fake.tlsa(sub.name, owner)
    assert not fake.tlsa("example.com", owner)
    pinned = make(fake, tmp_path, zone="example.com.")
    assert pinned.zone_for(OWNER) == "example.com."


def test_dnssec_status(fake: FakeCloudflare, tmp_path: Path) -> None:
    p = make(fake, tmp_path)
    assert p.dnssec_signing(OWNER) is True
    fake.zone("example.com").dnssec = "pending"
    assert p.dnssec_signing(OWNER) is False
    fake.add_zone("example.net", dnssec="disabled")
    assert p.dnssec_signing("_25._tcp.mx.example.net.") is False
    fake.add_zone("example.org", status="pending")  # the zone itself not yet active
    assert p.dnssec_signing("_25._tcp.mx.example.org.") is False


def test_secret_never_in_errors_or_headers(
    fake: FakeCloudflare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "global-key-must-not-travel")
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "ops@example.com")
    token = fake.add_token(frozenset({ZONE_READ}))
    messages = []
    p = make(fake, tmp_path, token=token, max_attempts=1)
    for action in (
        lambda: p.read(OWNER),
        lambda: p.apply(plan_publish(TlsaRRset(OWNER), {A}, 300)),
    ):
        with pytest.raises(ProviderError) as caught:
            action()
        messages.append(str(caught.value))
    fake.inject("any", "500", times=1)
    with pytest.raises(ProviderError) as caught:
        make(fake, tmp_path, token=token, max_attempts=1).zone_for(OWNER)
    messages.append(str(caught.value))
    assert all(token not in m and "global-key" not in m for m in messages), messages
    sent = [h for _m, _p, h in fake.requests]
    assert sent
    assert all(h["authorization"] == f"Bearer {sent[0]['authorization'][7:]}" for h in sent)
    assert all("x-auth-key" not in h and "x-auth-email" not in h for h in sent)
    assert repr(p.settings).count(token) == 0


def test_token_from_the_environment(
    fake: FakeCloudflare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = fake.add_token()
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", token)
    p = CloudflareProvider("cf", CloudflareSettings(api_url=fake.url))
    assert not p.read(OWNER).exists
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    with pytest.raises(ProviderError, match="no API token: set api_token_file"):
        CloudflareProvider("cf", CloudflareSettings(api_url=fake.url)).read(OWNER)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ProviderError, match="expected one API token on one line"):
        CloudflareProvider(
            "cf", CloudflareSettings(api_token_file=str(empty), api_url=fake.url)
        ).read(OWNER)


def test_wait_allows_propagation_then_reads_back(fake: FakeCloudflare, tmp_path: Path) -> None:
    sleeps = Sleeps()
    p = make(fake, tmp_path, sleep=sleeps, propagation_seconds=5.0)
    receipt = p.apply(plan_publish(p.read(OWNER), {A}, 300))
    p.wait(receipt, 2.0)
    assert sleeps.calls == [2.0]
    p.wait(receipt, 60.0)
    assert sleeps.calls == [2.0, 5.0]
    fake.edit_delete("example.com", OWNER)
    with pytest.raises(ConflictError, match="not the intended one"):
        p.wait(receipt, 1.0)


# -- configuration ---------------------------------------------------------------------------


def settings(raw: dict[str, Any], warnings: list[str] | None = None) -> CloudflareSettings:
    section = Section({"type": "cloudflare", **raw}, "providers.cf", "test.yaml")
    section.text("type")
    result = parse_settings(section, warnings if warnings is not None else [])
    section.finish()
    return result


def test_parse_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = token_file(tmp_path, "x" * 40)
    s = settings({"api_token_file": path, "zone": "Example.COM", "minimum_ttl": 30})
    assert s.zone == "example.com."
    assert s.api_url == "https://api.cloudflare.com/client/v4"
    assert s.minimum_ttl == 30
    assert "x" * 40 not in repr(s)
    with pytest.raises(ConfigError, match=r"providers\.cf\.api_url: plain http is allowed"):
        settings({"api_token_file": path, "api_url": "http://api.example.net/client/v4"})
    assert settings({"api_token_file": path, "api_url": "http://127.0.0.1:8/v4"}).api_url
    with pytest.raises(ConfigError, match=r"providers\.cf\.api_token_file: .*no such file"):
        settings({"api_token_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"providers\.cf\.minimum_ttl"):
        settings({"api_token_file": path, "minimum_ttl": 1})
    with pytest.raises(ConfigError, match=r"providers\.cf\.zones: unknown key"):
        settings({"api_token_file": path, "zones": "example.com"})
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    warnings: list[str] = []
    settings({}, warnings)
    assert any("CLOUDFLARE_API_TOKEN" in w for w in warnings)
    loose = tmp_path / "loose"
    loose.write_text("y" * 40)
    loose.chmod(0o644)
    warnings = []
    settings({"api_token_file": str(loose)}, warnings)
    assert any("chmod 600" in w for w in warnings)


# -- the fake itself is strict ---------------------------------------------------------------


def raw(fake: FakeCloudflare, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, fake.url + path, headers=headers, timeout=5, **kw)


def test_fake_refuses_what_cloudflare_refuses(fake: FakeCloudflare) -> None:
    token = fake.add_token()
    zone = fake.zone("example.com").id
    batch = f"/zones/{zone}/dns_records/batch"
    good: dict[str, Any] = {
        "name": "_25._tcp.mx.example.com",
        "type": "TLSA",
        "ttl": 300,
        "data": {"usage": 3, "selector": 1, "matching_type": 1, "certificate": "ab" * 32},
    }

    def refused(body: dict[str, Any]) -> str:
        response = raw(fake, token, "POST", batch, json=body)
        assert response.status_code == 400, response.text
        payload = response.json()
        assert payload["success"] is False
        assert payload["result"] is None
        return json.dumps(payload["errors"])

    content_only = {k: v for k, v in good.items() if k != "data"} | {
        "content": "3 1 1 " + "ab" * 32
    }
    assert "usage is a required data field." in refused({"posts": [content_only]})
    for key, value in (("usage", 4), ("selector", 2), ("matching_type", 3)):
        bad = {**good, "data": {**good["data"], key: value}}
        assert f"{key} must be an integer" in refused({"posts": [bad]})
    odd = {**good, "data": {**good["data"], "certificate": "abc"}}
    assert "hexadecimal" in refused({"posts": [odd]})
    assert "TTL must be between 60" in refused({"posts": [{**good, "ttl": 59}]})
    # One bad operation fails the whole batch: the good post does not go in.
    assert "Record does not exist" in refused({"deletes": [{"id": "0" * 32}], "posts": [good]})
    assert not fake.tlsa("example.com", "_25._tcp.mx.example.com")
    assert "at most 200" in refused({"posts": [good] * 201})
    ok = raw(fake, token, "POST", batch, json={"posts": [good, {**good, "ttl": 1}]})
    assert ok.status_code == 400  # identical data twice, even with another TTL
    assert "81058" in ok.text
    ok = raw(fake, token, "POST", batch, json={"posts": [good]})
    assert ok.status_code == 200
    assert ok.json()["success"] is True
    listed = raw(fake, token, "GET", f"/zones/{zone}/dns_records", params={"per_page": 5})
    body = listed.json()
    assert body["result_info"] == {
        "page": 1,
        "per_page": 5,
        "count": 1,
        "total_count": 1,
        "total_pages": 1,
    }
    assert body["result"][0]["content"] == "3 1 1 " + "AB" * 32
    assert (
        raw(fake, token, "GET", f"/zones/{zone}/dns_records", params={"per_page": 4}).status_code
        == 400
    )
    no_auth = httpx.get(fake.url + "/zones", timeout=5)
    assert no_auth.status_code == 400
    assert "6111" in no_auth.text
    assert raw(fake, "k" * 40, "GET", "/zones").status_code == 403
    unknown = raw(fake, token, "GET", f"/zones/{'0' * 32}/dns_records")
    assert unknown.status_code == 400
    assert "7003" in unknown.text
    fake.inject("any", "429")
    throttled = raw(fake, token, "GET", "/zones")
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
