"""The PowerDNS API adapter against a real pdns_server (tests/pdns.py): gsqlite3, live-signed
zones, the HTTP API with a key."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rollover.core.association import Association, parse_association
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.params import TlsaParams
from rollover.core.plan import Change, TlsaRRset, plan_publish, plan_withdraw
from rollover.errors import ConfigError, ConflictError, ProviderError, RolloverError
from rollover.ports import Batching, Provider, Receipt, SigningAware
from rollover.providers.powerdns import PowerDNSProvider, PowerDNSSettings
from tests.pdns import SIGNED, PdnsLab, pdns

pytestmark = pytest.mark.lab
tolerate_malformed_tlsa()  # the server's answers may hold malformed records: read them
__all__ = ["pdns"]


def assoc(params: str = "3 1 1") -> Association:
    size = 64 if params.endswith("2") else 32
    return parse_association(f"{params} {secrets.token_hex(size)}")


def provider(lab: PdnsLab, **overrides: Any) -> PowerDNSProvider:
    values: dict[str, Any] = {
        "api_url": lab.api_url,
        "api_key": lab.api_key,
        "api_key_file": str(lab.api_key_file),
        "timeout": 2.0,
        "retries": 2,
        "wait_timeout": 10.0,
    }
    values.update(overrides)
    return PowerDNSProvider("pdns", PowerDNSSettings(**values), sleep=lambda _s: None)


def owner(zone: str = SIGNED) -> str:
    return f"_25._tcp.mx-{secrets.token_hex(4)}.{zone}"


def zone_serial(lab: PdnsLab, zone: str) -> int:
    return int(lab.api("GET", f"/zones/{zone}?rrsets=false").body["serial"])


class Counting:
    """Counts the adapter's requests by method, and runs ``before``/``after`` hooks around
    the PATCH (another writer acting inside the adapter's read-write-read sequence)."""

    def __init__(self, p: PowerDNSProvider) -> None:
        self.calls: list[tuple[str, str]] = []
        self.before_patch: list[Any] = []
        self.after_patch: list[Any] = []
        original = p._request

        def wrapped(method: str, tail: str, body: Any = None, *, what: str) -> Any:
            self.calls.append((method, tail))
            if method == "PATCH":
                for hook in self.before_patch:
                    hook()
            answer = original(method, tail, body, what=what)
            if method == "PATCH":
                for hook in self.after_patch:
                    hook()
            return answer

        p._request = wrapped  # type: ignore[method-assign]

    def count(self, method: str) -> int:
        return sum(1 for m, _t in self.calls if m == method)


def test_protocols(pdns: PdnsLab) -> None:
    p = provider(pdns)
    assert isinstance(p, Provider)
    assert isinstance(p, Batching)
    assert isinstance(p, SigningAware)


def test_publish_replace_withdraw_read_back(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    assert p.zone_for(name) == SIGNED
    a, b = assoc(), assoc("2 0 1")
    assert not p.read(name).exists
    serial = zone_serial(pdns, SIGNED)
    receipt = p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({a}))))
    p.wait(receipt, 10)
    assert receipt.change_id == f"serial>={serial + 1}"  # SOA-EDIT-API DEFAULT: one step
    assert p.read(name) == TlsaRRset(name, 5, frozenset({a}))
    # Served over DNS at once, signed by PowerDNS (live signing), in its presentation form.
    response = pdns.query(pdns.primary, name, "TLSA")
    assert {rrset.rdtype for rrset in response.answer} == {52, 46}
    assert pdns.served(name) == {str(a)}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 7, frozenset({a, b})))), 10)
    assert p.read(name) == TlsaRRset(name, 7, frozenset({a, b}))
    assert pdns.served(name) == {str(a), str(b)}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name))), 10)
    assert not p.read(name).exists
    assert pdns.served(name) == set()
    assert zone_serial(pdns, SIGNED) == serial + 3


def test_foreign_records_and_other_types_are_kept(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    foreign = assoc()
    pdns.replace(SIGNED, name, 5, "TLSA", str(foreign))
    pdns.replace(SIGNED, name, 60, "TXT", '"not a TLSA record"')
    mine = assoc()
    p.wait(p.apply(plan_publish(p.read(name), {mine}, 5)), 10)
    assert p.read(name).records == {foreign, mine}
    txt = pdns.api("GET", f"/zones/{SIGNED}?rrset_name={name}&rrset_type=TXT").body["rrsets"]
    assert [r["content"] for r in txt[0]["records"]] == ['"not a TLSA record"']
    p.wait(p.apply(plan_withdraw(p.read(name), {mine}, frozenset({mine}), force=True)), 10)
    assert p.read(name).records == {foreign}
    assert pdns.served(name) == {str(foreign)}


def test_disabled_foreign_records_survive(pdns: PdnsLab) -> None:
    """A disabled record is not served and not in the RRset read, but it is not ours to drop:
    sent back with every REPLACE, and kept (REPLACE, not DELETE) when ours go."""
    p = provider(pdns)
    name = owner()
    parked = assoc()
    body = {
        "rrsets": [
            {
                "name": name,
                "type": "TLSA",
                "ttl": 5,
                "changetype": "REPLACE",
                "records": [{"content": str(parked), "disabled": True}],
            }
        ]
    }
    assert pdns.api("PATCH", f"/zones/{SIGNED}", body).status == 204
    assert not p.read(name).exists
    mine = assoc()
    p.wait(p.apply(plan_publish(p.read(name), {mine}, 5)), 10)
    assert p.read(name).records == {mine}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name))), 10)
    # (Only the whole zone's listing shows disabled records.)
    rrsets = [
        r
        for r in pdns.api("GET", f"/zones/{SIGNED}").body["rrsets"]
        if r["name"] == name and r["type"] == "TLSA"
    ]
    assert [r["records"] for r in rrsets] == [[{"content": str(parked), "disabled": True}]]
    assert pdns.served(name) == set()


def test_idempotent(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    a = assoc()
    p.wait(p.apply(plan_publish(p.read(name), {a}, 5)), 10)
    serial = zone_serial(pdns, SIGNED)
    counting = Counting(p)
    again = plan_publish(p.read(name), {a}, 5)
    assert again.is_noop
    receipt = p.apply(again)
    p.wait(receipt, 10)
    assert receipt.change_id == "noop"
    assert counting.count("PATCH") == 0
    assert zone_serial(pdns, SIGNED) == serial
    assert p.apply_many([again]) == [Receipt("pdns", "noop", again)]


def test_withdraw_only_what_is_asked(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    a, b, c = assoc(), assoc(), assoc("2 1 2")
    p.wait(p.apply(plan_publish(p.read(name), {a, b, c}, 5)), 10)
    p.wait(p.apply(plan_withdraw(p.read(name), {b}, frozenset({a, b, c}))), 10)
    assert p.read(name) == TlsaRRset(name, 5, frozenset({a, c}))


def test_edit_between_read_and_write_is_a_conflict(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    mine, theirs = assoc(), assoc()
    before = p.read(name)
    pdns.replace(SIGNED, name, 5, "TLSA", str(theirs))  # another writer, after our read
    serial = zone_serial(pdns, SIGNED)
    counting = Counting(p)
    with pytest.raises(ConflictError, match="changed since it was read; nothing was changed"):
        p.apply(plan_publish(before, {mine}, 5))
    assert counting.count("PATCH") == 0
    assert p.read(name).records == {theirs}
    assert zone_serial(pdns, SIGNED) == serial
    # A changed RRset (not only a new one), and a TTL change, are edits too.
    before = p.read(name)
    pdns.replace(SIGNED, name, 5, "TLSA", str(theirs), str(assoc()))
    with pytest.raises(ConflictError):
        p.apply(plan_publish(before, {mine}, 5))
    before = p.read(name)
    pdns.replace(SIGNED, name, 9, "TLSA", *(str(r) for r in before.records))
    with pytest.raises(ConflictError):
        p.apply(plan_publish(before, {mine}, 5))
    # And a deletion.
    before = p.read(name)
    pdns.api(
        "PATCH",
        f"/zones/{SIGNED}",
        {"rrsets": [{"name": name, "type": "TLSA", "changetype": "DELETE"}]},
    )
    with pytest.raises(ConflictError):
        p.apply(plan_withdraw(before, set(before.records), frozenset(), force=True))
    assert mine not in p.read(name).records


def test_edit_between_write_and_read_back_is_a_conflict_and_kept(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    mine, theirs = assoc(), assoc()
    counting = Counting(p)
    counting.after_patch.append(lambda: pdns.replace(SIGNED, name, 5, "TLSA", str(theirs)))
    with pytest.raises(ConflictError, match="written, then changed by another writer"):
        p.apply(plan_publish(p.read(name), {mine}, 5))
    # Nothing restored: the other party's edit is what the zone holds.
    assert provider(pdns).read(name).records == {theirs}
    assert pdns.served(name) == {str(theirs)}


def test_race_window_is_as_documented(pdns: PdnsLab) -> None:
    """The one window the emulation leaves (module docstring): a foreign write to the same
    RRset between the adapter's last read and its PATCH is replaced, and not seen. If PowerDNS
    ever offers a conditional write, this test is where it shows."""
    p = provider(pdns)
    name = owner()
    mine, theirs = assoc(), assoc()
    counting = Counting(p)
    counting.before_patch.append(lambda: pdns.replace(SIGNED, name, 5, "TLSA", str(theirs)))
    p.wait(p.apply(plan_publish(p.read(name), {mine}, 5)), 10)
    assert p.read(name).records == {mine}


def test_apply_many_is_one_patch_one_transaction(pdns: PdnsLab) -> None:
    p = provider(pdns)
    names = [owner() for _ in range(3)]
    counting = Counting(p)
    serial = zone_serial(pdns, SIGNED)
    first = [Change(p.read(n), TlsaRRset(n, 5, frozenset({assoc()}))) for n in names]
    receipts = p.apply_many(first)
    assert counting.count("PATCH") == 1
    assert zone_serial(pdns, SIGNED) == serial + 1  # one transaction, one serial step
    for receipt in receipts:
        p.wait(receipt, 10)
    assert [p.read(n) for n in names] == [c.after for c in first]
    assert [r.change for r in receipts] == first

    # A foreign edit at one name after the read: nothing of the batch is sent.
    read = [p.read(n) for n in names]
    second = [Change(r, TlsaRRset(r.owner, 5, r.records | {assoc()})) for r in read]
    theirs = assoc()
    pdns.replace(SIGNED, names[1], 5, "TLSA", str(theirs))
    with pytest.raises(ConflictError):
        p.apply_many(second)
    assert counting.count("PATCH") == 1
    assert [p.read(n) for n in (names[0], names[2])] == [read[0], read[2]]

    # PowerDNS refuses one RRset of a PATCH: the whole transaction is rolled back.
    cname = owner()
    pdns.replace(SIGNED, cname, 5, "CNAME", f"mx.{SIGNED}")
    read = [p.read(n) for n in names]
    third = [Change(r, TlsaRRset(r.owner, 5, r.records | {assoc()})) for r in read]
    third.append(Change(TlsaRRset(cname), TlsaRRset(cname, 5, frozenset({assoc()}))))
    with pytest.raises(ProviderError, match=r"Conflicts with pre-existing RRset \(422\)"):
        p.apply_many(third)
    assert [p.read(n) for n in names] == read


def test_apply_many_refuses_two_zones(pdns: PdnsLab) -> None:
    p = provider(pdns)
    a, b = owner(), owner("plain.test.")
    changes = [Change(TlsaRRset(n), TlsaRRset(n, 5, frozenset({assoc()}))) for n in (a, b)]
    with pytest.raises(ProviderError, match="one zone"):
        p.apply_many(changes)
    assert not p.read(a).exists


def test_zone_by_longest_suffix(pdns: PdnsLab) -> None:
    p = provider(pdns)
    assert p.zone_for(f"_25._tcp.mx.sub.{SIGNED}") == f"sub.{SIGNED}"
    assert p.zone_for(f"_25._tcp.MX.{SIGNED}".upper()) == SIGNED
    with pytest.raises(ProviderError, match="no zone at PowerDNS server 'localhost' holds"):
        p.zone_for("_25._tcp.mx.elsewhere.example.")
    fixed = provider(pdns, zone=SIGNED)
    assert fixed.zone_for(f"_25._tcp.mx.sub.{SIGNED}") == SIGNED
    with pytest.raises(ConfigError, match="not in zone"):
        fixed.zone_for("_25._tcp.mx.plain.test.")
    # Records under the sub-zone go to the sub-zone.
    name = owner(f"sub.{SIGNED}")
    p.wait(p.apply(plan_publish(p.read(name), {assoc()}, 5)), 10)
    assert pdns.api("GET", f"/zones/sub.{SIGNED}?rrset_name={name}").body["rrsets"]


def test_wrong_key_is_401(pdns: PdnsLab) -> None:
    wrong = secrets.token_urlsafe(24)
    p = provider(pdns, api_key=wrong)
    with pytest.raises(ProviderError) as caught:
        p.read(owner())
    message = str(caught.value)
    assert "refused the API key from" in message
    assert str(pdns.api_key_file) in message
    assert "401" in message
    assert wrong not in message
    assert pdns.api_key not in message


def test_unknown_zone_and_server_are_404(pdns: PdnsLab) -> None:
    p = provider(pdns, zone="nosuch.test.")
    with pytest.raises(ProviderError, match=r"zone nosuch\.test\. not found .* 404"):
        p.read("_25._tcp.mx.nosuch.test.")
    p = provider(pdns, server_id="elsewhere")
    with pytest.raises(ProviderError, match=r"not found at PowerDNS server 'elsewhere'"):
        p.read(owner())


def test_refused_content_is_422_with_powerdns_message(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    pdns.replace(SIGNED, name, 5, "CNAME", f"mx.{SIGNED}")
    with pytest.raises(ProviderError) as caught:
        p.apply(Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({assoc()}))))
    message = str(caught.value)
    assert "PowerDNS refused" in message
    assert f"RRset {name} IN TLSA: Conflicts with pre-existing RRset (422)" in message
    assert "\n" not in message


def test_malformed_digest_is_refused_before_sending(pdns: PdnsLab) -> None:
    """PowerDNS would store a 3 1 1 record of two bytes; the adapter does not send it."""
    p = provider(pdns)
    name = owner()
    counting = Counting(p)
    short = Association(TlsaParams(3, 1, 1), b"\xab\xcd")
    with pytest.raises(ProviderError, match="matching type 1 needs 32"):
        p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({short}))))
    assert counting.count("PATCH") == 0
    # ... while PowerDNS itself accepts it: the check is ours to make.
    pdns.replace(SIGNED, name, 5, "TLSA", "3 1 1 abcd")
    assert pdns.served(name) == {"3 1 1 abcd"}
    # A foreign malformed record already there is sent back untouched, not refused.
    mine = assoc()
    p.wait(p.apply(plan_publish(p.read(name), {mine}, 5)), 10)
    assert p.read(name).records == {short, mine}


def test_unreachable_and_timeout(pdns: PdnsLab) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = provider(pdns, api_url=f"http://127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(ProviderError, match=r"cannot reach .*connection refused \(2 attempts\)"):
        p.read(owner())
    # A server that accepts and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        p = provider(pdns, api_url=url, timeout=0.3, zone=SIGNED)
        with pytest.raises(ProviderError, match=r"timed out after 0.3 s \(2 attempts\)"):
            p.read(owner())
        name = owner()
        with pytest.raises(ProviderError, match="may still have been applied: read the RRset"):
            # A write is never retried after a timeout: its outcome is unknown.
            p._request("PATCH", f"/zones/{SIGNED}", {"rrsets": []}, what=f"the change of {name}")


def test_the_key_never_appears(pdns: PdnsLab) -> None:
    """Every failure path above, the settings and the provider: the key is in none of them."""
    messages: list[str] = []
    for p, action in (
        (provider(pdns, api_key="wrong-" + pdns.api_key), lambda p: p.read(owner())),
        (provider(pdns, zone="nosuch.test."), lambda p: p.read("_25._tcp.x.nosuch.test.")),
        (provider(pdns, api_url="http://127.0.0.1:9"), lambda p: p.read(owner())),
        (
            provider(pdns),
            lambda p: p.apply(
                Change(TlsaRRset(owner()), TlsaRRset(owner(), 5, frozenset({assoc()})))
            ),
        ),
    ):
        try:
            action(p)
        except RolloverError as exc:
            messages.append(str(exc))
        messages += [repr(p.settings), repr(p), str(vars(p).get("_label"))]
    assert len([m for m in messages if "pdns:" in m]) >= 3
    for text in messages:
        assert pdns.api_key not in text


def test_dnssec_signing(pdns: PdnsLab) -> None:
    p = provider(pdns)
    assert p.dnssec_signing(owner()) is True
    assert p.dnssec_signing(owner("noserial.test.")) is True
    assert p.dnssec_signing(owner("plain.test.")) is False
    # PowerDNS calls a presigned zone "dnssec": true, but signs nothing written to it.
    assert pdns.api("GET", "/zones/presigned.test.?rrsets=false").body["dnssec"] is True
    assert p.dnssec_signing(owner("presigned.test.")) is False


def test_dnssec_signing_follows_the_keys(pdns: PdnsLab) -> None:
    zone = "norectify.test."
    p = provider(pdns)
    assert p.dnssec_signing(owner(zone)) is True
    keys = pdns.api("GET", f"/zones/{zone}/cryptokeys").body
    try:
        for key in keys:
            answer = pdns.api("PUT", f"/zones/{zone}/cryptokeys/{key['id']}", {"active": False})
            assert answer.status == 204, answer.body
        assert p.dnssec_signing(owner(zone)) is False
    finally:
        for key in keys:
            pdns.api("PUT", f"/zones/{zone}/cryptokeys/{key['id']}", {"active": True})
    assert p.dnssec_signing(owner(zone)) is True


def test_rectify_where_powerdns_does_not(pdns: PdnsLab) -> None:
    """norectify.test. has API-RECTIFY 0: without the adapter's rectify the new name has no
    NSEC ordering data; with it (the default), it has."""
    zone = "norectify.test."
    for rectify, expected in ((False, None), (True, "rectified")):
        p = provider(pdns, rectify=rectify)
        name = owner(zone)
        receipt = p.apply(plan_publish(p.read(name), {assoc()}, 5))
        p.wait(receipt, 10)
        rows = pdns.sql(
            "SELECT ordername FROM records WHERE name = ? AND type = 'TLSA'", name.rstrip(".")
        )
        assert len(rows) == 1
        assert (rows[0][0] is not None) is rectify
        assert (receipt.detail or None) == expected
    # PowerDNS rectifies pdns.test. itself (default-api-rectify): the adapter does not.
    p = provider(pdns)
    counting = Counting(p)
    name = owner()
    p.wait(p.apply(plan_publish(p.read(name), {assoc()}, 5)), 10)
    assert counting.count("PUT") == 0
    rows = pdns.sql("SELECT ordername FROM records WHERE name = ? AND type = 'TLSA'", name[:-1])
    assert rows[0][0] is not None


def test_wait_uses_the_serial(pdns: PdnsLab) -> None:
    p = provider(pdns, wait_timeout=1.0)
    name = owner()
    receipt = p.apply(plan_publish(p.read(name), {assoc()}, 5))
    new = int(receipt.change_id.removeprefix("serial>="))
    assert new == zone_serial(pdns, SIGNED)
    p.wait(receipt, 10)
    # A serial the zone has not reached yet: not in effect, a clear error after the timeout.
    ahead = Receipt("pdns", f"serial>={new + 5}", receipt.change)
    with pytest.raises(ProviderError, match=f"not in effect after 1 s .*waiting for {new + 5}"):
        p.wait(ahead, 1.0)
    # Once another change moves the zone there, the same wait returns.
    for _ in range(5):
        pdns.replace(SIGNED, owner(), 5, "TXT", '"bump"')
    p.wait(ahead, 5.0)
    # Without SOA-EDIT-API the serial stays put and there is no header: the read-back alone.
    name = owner("noserial.test.")
    before = zone_serial(pdns, "noserial.test.")
    receipt = p.apply(plan_publish(p.read(name), {assoc()}, 5))
    assert receipt.change_id == "read-back"
    p.wait(receipt, 5)
    assert zone_serial(pdns, "noserial.test.") == before


def test_wait_sees_a_later_foreign_change(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    receipt = p.apply(plan_publish(p.read(name), {assoc()}, 5))
    pdns.replace(SIGNED, name, 5, "TLSA", str(assoc()))
    with pytest.raises(ConflictError, match="not the intended one"):
        p.wait(receipt, 5)


@pytest.fixture
def restarted(pdns: PdnsLab) -> Iterator[PdnsLab]:
    yield pdns
    if not pdns.daemons["pdns"].alive():
        pdns.restart()


def test_server_stopped_then_back(restarted: PdnsLab) -> None:
    pdns = restarted
    p = provider(pdns, timeout=0.5)
    name = owner()
    before = p.read(name)
    pdns.daemons["pdns"].stop()
    with pytest.raises(ProviderError, match="connection refused"):
        p.apply(plan_publish(before, {assoc()}, 5))
    pdns.restart()
    a = assoc()
    p.wait(p.apply(plan_publish(p.read(name), {a}, 5)), 10)
    assert p.read(name).records == {a}
