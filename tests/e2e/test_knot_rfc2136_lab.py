"""The RFC 2136 adapter (providers/rfc2136.py) against a real Knot DNS that signs the zone itself.

What differs from BIND 9 (tests/e2e/test_rfc2136_lab.py), each shown by a test here:

- A failed prerequisite: the same codes (RFC 2136 section 3.2): YXRRSET for "RRset does not
  exist" when it does, NXRRSET for a value-dependent "RRset exists" that does not match.
- An update the ACL does not allow: Knot answers NOTAUTH with TSIG error BADKEY, unsigned (BIND:
  REFUSED, signed). A TSIG-signed *query* for a zone none of whose ACL rules names the key gets
  the same answer, so the key must appear in the zone's ACL for reads too.
- TSIG: Knot knows hmac-md5, -sha1, -sha224, -sha256, -sha384, -sha512 (knot.conf(5) KEY
  SECTION); the adapter offers the last three. A key of the right name and the wrong algorithm
  is BADKEY (as BIND).
- Serial: ``serial-policy`` increment (default), unixtime or dateserial; one serial step per
  UPDATE, signed in the same step (the RRSIG is there when the answer comes); Knot also steps it
  on its own re-signing.
- Size: an UPDATE up to the 64 KiB DNS message limit is accepted (as BIND).
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
import yaml

from rollover.core.association import Association, parse_association
from rollover.core.params import TlsaParams
from rollover.core.plan import Change, TlsaRRset, plan_publish, plan_withdraw
from rollover.errors import ConflictError, ProviderError
from rollover.ports import Receipt
from rollover.providers.rfc2136 import BATCH_RRSETS, Rfc2136Provider, Rfc2136Settings
from rollover.providers.tsig import ALGORITHMS, TsigKey
from tests.certs import key_pem, make_pki, pem
from tests.conftest import run_rollover
from tests.dnsfaults import DnsFaults
from tests.knot import ALGORITHM_KEYS, READONLY_ZONE, ZONE, KnotLab, running_knot
from tests.lab import PRIMARY, TSIG_NAME
from tests.smtpserver import SmtpServer

pytestmark = pytest.mark.lab

KEYNAME = dns.name.from_text(TSIG_NAME)


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotLab]:
    """Knot primary + secondary + validating unbound, for this module."""
    with running_knot() as lab:
        yield lab


def assoc(params: str = "3 1 1") -> Association:
    return parse_association(f"{params} {secrets.token_hex(32)}")


def owner(zone: str = ZONE) -> str:
    return f"_25._tcp.mx-{secrets.token_hex(4)}.{zone}"


def provider(
    knot: KnotLab,
    *,
    name: str = TSIG_NAME,
    algorithm: str = "hmac-sha256",
    secret: bytes | None = None,
    port: int | None = None,
    zone: str | None = None,
    timeout: float = 2.0,
    retries: int = 2,
    sleeps: list[float] | None = None,
) -> Rfc2136Provider:
    key = TsigKey(name, algorithm, secret or base64.b64decode(knot.tsig_secret))
    settings = Rfc2136Settings(PRIMARY, port or knot.port, zone, key, timeout, retries)
    record = sleeps if sleeps is not None else []
    return Rfc2136Provider("knot", settings, sleep=record.append)


def served(knot: KnotLab, name: str, server: str | None = None) -> set[str]:
    response = knot.query(server or knot.primary, name, "TLSA")
    return {
        str(r) for rrset in response.answer if rrset.rdtype == dns.rdatatype.TLSA for r in rrset
    }


def signed(knot: KnotLab, name: str) -> bool:
    response = knot.query(knot.primary, name, "TLSA")
    return any(
        rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == dns.rdatatype.TLSA
        for rrset in response.answer
    )


# -- the lab itself -------------------------------------------------------------------------------
def test_trust_anchor_is_the_key_knot_signs_with(knot: KnotLab) -> None:
    """keymgr's DS (the KASP database) names a DNSKEY both servers serve, and the resolvers
    validate the zone from it alone."""
    tag = int(knot.ds[ZONE].split()[0])
    for server in (knot.primary, knot.secondary):
        keys = knot.dnskeys(ZONE, server)
        assert any(dns.dnssec.key_id(k) == tag for k in keys)
    for resolver in (knot.resolver, knot.sender_resolver):
        response = knot.query(resolver, f"ns1.{ZONE}", "A", rd=True)
        assert response.flags & dns.flags.AD


# -- publish, read back, replace, withdraw ------------------------------------------------------
def test_publish_read_back_replace_withdraw(knot: KnotLab) -> None:
    p = provider(knot)
    name = owner()
    assert p.zone_for(name) == ZONE
    a, b = assoc(), assoc("2 0 1")
    empty = p.read(name)
    assert not empty.exists
    p.wait(p.apply(Change(empty, TlsaRRset(name, 5, frozenset({a})))), 10)
    assert p.read(name) == TlsaRRset(name, 5, frozenset({a}))
    assert signed(knot, name)  # Knot signed the update itself, in the same step
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 7, frozenset({a, b})))), 10)
    assert p.read(name) == TlsaRRset(name, 7, frozenset({a, b}))
    assert served(knot, name) == {str(a), str(b)}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 7, frozenset({b})))), 10)
    assert p.read(name).records == {b}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name))), 10)
    assert not p.read(name).exists
    assert not signed(knot, name)
    # The secondary got every change through NOTIFY and IXFR.
    knot.wait_secondary_serial(knot.serial(knot.primary, ZONE))
    assert served(knot, name, knot.secondary) == set()


def test_foreign_records_kept_and_only_what_is_asked_withdrawn(knot: KnotLab) -> None:
    """Adapter level: a record someone else put there (through knotc) survives our publish and
    our withdraw; a withdraw removes exactly what it names."""
    p = provider(knot)
    name = owner()
    foreign = assoc()
    knot.knotc_edit(ZONE, add=((name, 5, "TLSA", str(foreign)),))
    mine = {assoc(), assoc("2 0 1")}
    p.wait(p.apply(plan_publish(p.read(name), mine, 5)), 10)
    assert p.read(name).records == mine | {foreign}
    assert p.apply(plan_publish(p.read(name), mine, 5)).change_id == "noop"  # idempotent
    one = next(iter(mine))
    p.wait(p.apply(plan_withdraw(p.read(name), {one}, frozenset(mine))), 10)
    assert p.read(name).records == (mine - {one}) | {foreign}
    p.wait(p.apply(plan_withdraw(p.read(name), mine, frozenset(mine), force=True)), 10)
    assert p.read(name).records == {foreign}
    assert served(knot, name) == {str(foreign)}


@pytest.fixture
def knot_config(knot: KnotLab, tmp_path: Path) -> Path:
    host = f"mx-{secrets.token_hex(4)}.example.test"
    doc = {
        "providers": {
            "knot": {
                "type": "rfc2136",
                "server": PRIMARY,
                "port": knot.port,
                "tsig": {"name": TSIG_NAME, "secret_file": str(knot.secret_file)},
            }
        },
        "resolvers": [knot.resolver],
        "state_dir": str(tmp_path / "state"),
        "services": {
            "mx1": {"host": host, "provider": "knot", "records": ["3 1 1", "2 0 1"], "ttl": 5}
        },
    }
    path = tmp_path / "rollover.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_publish_and_withdraw_commands(knot: KnotLab, knot_config: Path, tmp_path: Path) -> None:
    """The command line against Knot: publish, idempotent, foreign record kept, withdraw only
    what is named, the ownership guard."""
    pki = make_pki("p256", tag="knot-publish")
    cert = tmp_path / "full.pem"
    cert.write_bytes(pem(pki.leaf, pki.intermediate))
    key = tmp_path / "full.key"
    key.write_bytes(key_pem(pki.leaf_key))
    server = SmtpServer([(cert, key)]).start()
    doc = yaml.safe_load(knot_config.read_text())
    doc["services"]["mx1"]["probe"] = {"connect": [server.endpoint], "starttls": "smtp"}
    knot_config.write_text(yaml.safe_dump(doc))
    name = f"_25._tcp.{doc['services']['mx1']['host']}."
    args = ["--config", str(knot_config)]
    try:
        first = run_rollover("publish", "mx1", "--cert", str(cert), *args)
        assert first.returncode == 0, first.stderr
        records = provider(knot).read(name).records
        assert len(records) == 2
        again = run_rollover("publish", "mx1", "--cert", str(cert), *args)
        assert again.returncode == 0, again.stderr
        assert "nothing to change" in again.stdout
        foreign = assoc()
        knot.update(ZONE, add=((name, 5, "TLSA", str(foreign)),))
        refused = run_rollover("withdraw", "mx1", "--cert", str(cert), *args)
        assert refused.returncode == 8, refused.stderr
        assert provider(knot).read(name).records == records | {foreign}
        by_data = run_rollover("withdraw", "mx1", "--data", foreign.hex, *args)
        assert by_data.returncode == 0, by_data.stderr
        assert provider(knot).read(name).records == records
        shown = run_rollover("dns", "--owner", name, "-a", knot.primary, "-r", knot.resolver)
        assert shown.returncode == 0, shown.stderr
        assert all(str(r) in shown.stdout for r in records)
    finally:
        server.stop()


# -- batching -------------------------------------------------------------------------------------
def test_apply_many_sends_one_update_for_several_owner_names(knot: KnotLab) -> None:
    """apply_many: one UPDATE (counted at a proxy before Knot), one serial step, each RRset with
    its own prerequisite; a foreign edit at any one of them refuses the whole message."""
    proxy = DnsFaults((PRIMARY, knot.port), knot.keyring).start()
    try:
        p = provider(knot, port=proxy.port)
        names = [owner() for _ in range(4)]
        first = [Change(p.read(n), TlsaRRset(n, 5, frozenset({assoc()}))) for n in names]
        serial = knot.serial(knot.primary, ZONE)
        before = len(proxy.accepted_updates())
        receipts = p.apply_many(first)
        (update,) = proxy.accepted_updates()[before:]
        assert sorted(update.owners) == sorted(names)
        assert knot.serial(knot.primary, ZONE) == serial + 1  # one zone change for four RRsets
        for receipt in receipts:
            p.wait(receipt, 10)
        assert [p.read(n) for n in names] == [c.after for c in first]

        read = [p.read(n) for n in names]
        second = [Change(r, TlsaRRset(r.owner, 5, r.records | {assoc()})) for r in read]
        foreign = assoc()
        knot.knotc_edit(ZONE, add=((names[2], 5, "TLSA", str(foreign)),))
        with pytest.raises(ConflictError, match="changed since it was read"):
            p.apply_many(second)
        assert [p.read(n) for i, n in enumerate(names) if i != 2] == [
            r for i, r in enumerate(read) if i != 2
        ]
        assert p.read(names[2]).records == read[2].records | {foreign}
    finally:
        proxy.stop()


def test_apply_many_past_one_message_splits(knot: KnotLab) -> None:
    """More RRsets than BATCH_RRSETS go out as several UPDATEs, each applied whole."""
    proxy = DnsFaults((PRIMARY, knot.port), knot.keyring).start()
    try:
        p = provider(knot, port=proxy.port)
        names = [owner() for _ in range(BATCH_RRSETS + 20)]
        changes = [
            Change(TlsaRRset(n), TlsaRRset(n, 5, frozenset({assoc(), assoc("2 0 1")})))
            for n in names
        ]
        before = len(proxy.accepted_updates())
        receipts = p.apply_many(changes)
        sent = proxy.accepted_updates()[before:]
        assert [len(u.owners) for u in sent] == [BATCH_RRSETS, 20]
        p.wait(receipts[-1], 10)
        assert all(p.read(c.owner) == c.after for c in changes[:: len(changes) // 7])
    finally:
        proxy.stop()


def test_an_update_up_to_the_64k_message_limit_is_accepted(knot: KnotLab) -> None:
    """Knot has no UPDATE size limit of its own below the 64 KiB of a DNS message over TCP
    (``zone-max-size`` is unlimited by default): a full-certificate record set of ~63 KiB in one
    message is applied."""
    p = provider(knot)
    names = [owner() for _ in range(60)]
    message = dns.update.UpdateMessage(ZONE, keyring=knot.keyring, keyname=KEYNAME)
    for name in names:
        message.absent(name, "TLSA")
        for _ in range(3):
            message.add(name, 5, "TLSA", str(Association(TlsaParams(3, 0, 0), os.urandom(330))))
    size = len(message.to_wire())
    assert 60_000 < size <= 65_535
    response = dns.query.tcp(message, PRIMARY, port=knot.port, timeout=10)
    assert response.rcode() == dns.rcode.NOERROR
    assert len(p.read(names[-1]).records) == 3


def test_apply_many_of_large_records_fits_the_message_limit(knot: KnotLab) -> None:
    p = provider(knot)
    params = TlsaParams(3, 0, 0)
    names = [owner() for _ in range(60)]
    changes = [
        Change(
            TlsaRRset(n),
            TlsaRRset(n, 5, frozenset(Association(params, os.urandom(900)) for _ in range(2))),
        )
        for n in names
    ]
    receipts = p.apply_many(changes)
    p.wait(receipts[-1], 10)
    assert all(p.read(c.owner) == c.after for c in changes)


# -- compare-and-swap -----------------------------------------------------------------------------
@pytest.mark.parametrize("writer", ["rfc2136", "knotc"])
def test_concurrent_edit_between_read_and_write_is_a_conflict(knot: KnotLab, writer: str) -> None:
    """Another party edits the RRset after the tool read it and before its UPDATE arrives
    (inside apply, once the adapter has taken the serial): ConflictError, and the other party's
    edit is all that is there. Both another RFC 2136 client and an operator's knotc
    transaction are caught, since Knot checks the prerequisite against the zone as it is."""
    p = provider(knot)
    name = owner()

    def other_party(add: str, delete: bool = False) -> None:
        removal = ((name, "TLSA"),) if delete else ()
        if writer == "knotc":
            knot.knotc_edit(ZONE, add=((name, 5, "TLSA", add),), delete=removal)
        else:
            knot.update(ZONE, add=((name, 5, "TLSA", add),), delete=removal)

    def racing(edit: str, delete: bool = False) -> None:
        real = p.serial
        done: list[int] = []

        def serial_then_edit(zone: str) -> int:
            value = real(zone)
            if not done:
                done.append(value)
                other_party(edit, delete)
            return value

        p.serial = serial_then_edit  # type: ignore[method-assign]
        try:
            with pytest.raises(ConflictError, match="changed since it was read"):
                p.apply(plan_publish(before, {mine}, 5))
        finally:
            del p.serial
        assert done, "the other party's edit did not run inside apply"

    mine, theirs = assoc(), assoc()
    # The RRset does not exist when read; the other party creates it (YXRRSET).
    before = p.read(name)
    assert not before.exists
    racing(str(theirs))
    assert p.read(name).records == {theirs}
    # The RRset exists; the other party replaces its records (NXRRSET).
    before = p.read(name)
    replaced = assoc()
    racing(str(replaced), delete=True)
    assert p.read(name).records == {replaced}
    assert served(knot, name) == {str(replaced)}
    # And with a fresh read the tool's change goes through, keeping theirs.
    p.wait(p.apply(plan_publish(p.read(name), {mine}, 5)), 10)
    assert p.read(name).records == {replaced, mine}


def test_simultaneous_updates_that_knot_coalesces_still_compare_and_swap(knot: KnotLab) -> None:
    """Knot takes the UPDATEs that arrive together into one zone transaction ("DDNS,
    processing N updates": one serial step for several clients), checking each one's
    prerequisites against the zone as the ones before it in that transaction left it. Four
    adapters creating the same RRset at once: exactly one wins, three get ConflictError, and
    what is served is the winner's record, in every round."""
    import re

    log_start = len(knot.knot_log())
    for round_number in range(30):
        name = owner()
        mine = [assoc() for _ in range(4)]
        outcome = _publish_at_once(knot, name, mine)
        winners = [i for i, result in outcome.items() if result == "applied"]
        assert len(winners) == 1, outcome
        assert sorted(outcome.values()) == ["applied", "conflict", "conflict", "conflict"]
        assert served(knot, name) == {str(mine[winners[0]])}
        bulks = re.findall(r"DDNS, processing (\d+) updates", knot.knot_log()[log_start:])
        if round_number >= 9 and any(int(n) > 1 for n in bulks):
            break
    assert any(int(n) > 1 for n in bulks), "Knot never coalesced simultaneous updates"


def _publish_at_once(knot: KnotLab, name: str, records: list[Association]) -> dict[int, str]:
    """One adapter per record, all creating the RRset at ``name`` at the same moment."""
    import threading

    barrier = threading.Barrier(len(records))
    outcome: dict[int, str] = {}

    def publish(i: int) -> None:
        p = provider(knot)
        change = Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({records[i]})))
        barrier.wait()
        try:
            p.apply(change)
            outcome[i] = "applied"
        except ConflictError:
            outcome[i] = "conflict"

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return outcome


@pytest.mark.parametrize(
    ("prerequisite", "rcode"),
    [("absent", dns.rcode.YXRRSET), ("value", dns.rcode.NXRRSET)],
)
def test_failed_prerequisite_codes(knot: KnotLab, prerequisite: str, rcode: int) -> None:
    """What Knot answers to each prerequisite the adapter sends (RFC 2136 section 3.2.5): the
    same codes as BIND; the update section is then not applied."""
    name = owner()
    knot.update(ZONE, add=((name, 5, "TLSA", str(assoc())),))
    message = dns.update.UpdateMessage(ZONE, keyring=knot.keyring, keyname=KEYNAME)
    if prerequisite == "absent":
        message.absent(name, "TLSA")
    else:
        message.present(name, dns.rdataset.from_text("IN", "TLSA", 0, str(assoc())))
    message.add(name, 5, "TLSA", str(assoc()))
    serial = knot.serial(knot.primary, ZONE)
    response = dns.query.tcp(message, PRIMARY, port=knot.port, timeout=5)
    assert response.rcode() == rcode
    assert knot.serial(knot.primary, ZONE) == serial
    assert len(served(knot, name)) == 1


def test_reply_lost_after_knot_applied_the_update(knot: KnotLab) -> None:
    """Knot applies the UPDATE, the answer is lost, the adapter sends it again: the prerequisite
    now fails, and a read shows it was already applied."""
    proxy = DnsFaults((PRIMARY, knot.port), knot.keyring).start()
    try:
        p = provider(knot, port=proxy.port)
        name = owner()
        change = Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()})))
        proxy.inject("UPDATE", "drop-after")
        receipt = p.apply(change)
        assert receipt.detail == "already applied"
        assert [e.rcode for e in proxy.log if e.opcode == "UPDATE"] == ["NOERROR", "YXRRSET"]
        p.wait(receipt, 10)
    finally:
        proxy.stop()


# -- TSIG -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"secret": b"w" * 32}, "BADSIG"),
        ({"name": "no-such-key"}, "BADKEY"),
        ({"algorithm": "hmac-sha512"}, "BADKEY"),  # the right name, the wrong algorithm
    ],
)
def test_tsig_refused_is_one_line(knot: KnotLab, kwargs: dict[str, object], needle: str) -> None:
    p = provider(knot, **kwargs)  # type: ignore[arg-type]
    name = owner()
    with pytest.raises(ProviderError, match=needle) as caught:
        p.apply(Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({assoc()}))))
    text = str(caught.value)
    assert "\n" not in text
    assert knot.tsig_secret not in text
    assert base64.b64encode(b"w" * 32).decode() not in text
    assert not provider(knot).read(name).exists


def test_wrong_secret_through_the_command_line(knot_config: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(knot_config.read_text())
    bad = tmp_path / "bad.secret"
    bad_secret = base64.b64encode(b"x" * 32).decode()
    bad.write_text(bad_secret)
    bad.chmod(0o600)
    doc["providers"]["knot"]["tsig"]["secret_file"] = str(bad)
    knot_config.write_text(yaml.safe_dump(doc))
    cert = tmp_path / "c.pem"
    cert.write_bytes(pem(make_pki("p256", tag="knot-badsig").leaf))
    result = run_rollover("publish", "mx1", "--cert", str(cert), "--config", str(knot_config))
    assert result.returncode == 5, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "BADSIG" in errors[0]
    assert "Traceback" not in result.stderr
    assert bad_secret not in result.stdout + result.stderr


@pytest.mark.parametrize("algorithm", ["hmac-sha384", "hmac-sha512"])
def test_other_tsig_algorithms_the_adapter_offers(knot: KnotLab, algorithm: str) -> None:
    (key_name,) = [k for k, a in ALGORITHM_KEYS.items() if a == algorithm]
    secret = base64.b64decode(knot.algorithm_secrets[key_name])
    p = provider(knot, name=key_name, algorithm=algorithm, secret=secret)
    name = owner()
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()})))), 10)
    assert p.read(name).exists


@pytest.mark.parametrize("algorithm", ["hmac-md5", "hmac-sha1", "hmac-sha224"])
def test_knot_accepts_algorithms_the_adapter_does_not_offer(knot: KnotLab, algorithm: str) -> None:
    """Knot takes these too; the adapter refuses them in the configuration (tsig.ALGORITHMS),
    by choice, not for want of server support."""
    assert algorithm not in ALGORITHMS
    (key_name,) = [k for k, a in ALGORITHM_KEYS.items() if a == algorithm]
    wire_name = dns.tsig.HMAC_MD5 if algorithm == "hmac-md5" else algorithm  # RFC 8945 table 1
    keyring = dns.tsigkeyring.from_text({key_name: (wire_name, knot.algorithm_secrets[key_name])})
    name = owner()
    message = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=dns.name.from_text(key_name))
    message.add(name, 5, "TLSA", str(assoc()))
    response = dns.query.tcp(message, PRIMARY, port=knot.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert len(served(knot, name)) == 1


def test_update_the_acl_does_not_allow(knot: KnotLab) -> None:
    """readonly.test.: lab-key may transfer (so its signed queries are answered) but not update.
    Knot answers NOTAUTH with TSIG error BADKEY (BIND: REFUSED): a one-line ProviderError, and
    nothing changes."""
    p = provider(knot, zone=READONLY_ZONE)
    name = owner(READONLY_ZONE)
    before = p.read(name)
    assert not before.exists
    with pytest.raises(ProviderError, match="BADKEY") as caught:
        p.apply(plan_publish(before, {assoc()}, 5))
    assert "\n" not in str(caught.value)
    assert not p.read(name).exists
    # On the wire: NOTAUTH, and the answer carries the TSIG error unsigned.
    message = dns.update.UpdateMessage(READONLY_ZONE, keyring=knot.keyring, keyname=KEYNAME)
    message.add(name, 5, "TLSA", str(assoc()))
    wire = _raw_tcp(message.to_wire(), knot.port)
    response = dns.message.from_wire(wire, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None
    assert response.tsig[0].error == dns.rcode.BADKEY


def test_the_acl_limits_the_key_to_tlsa(knot: KnotLab) -> None:
    """``update-type: TLSA`` (knot.conf(5) ACL SECTION): the adapter's UPDATEs (prerequisite,
    delete and add of TLSA only) pass; the same key adding an A record is refused."""
    message = dns.update.UpdateMessage(ZONE, keyring=knot.keyring, keyname=KEYNAME)
    message.add(f"mx-{secrets.token_hex(4)}.{ZONE}", 5, "A", "127.0.0.1")
    response = dns.message.from_wire(_raw_tcp(message.to_wire(), knot.port), keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    p = provider(knot)
    name = owner()
    p.wait(p.apply(plan_publish(p.read(name), {assoc()}, 5)), 10)
    p.wait(p.apply(plan_withdraw(p.read(name), p.read(name).records, frozenset())), 10)
    assert not p.read(name).exists


def test_acl_refusal_is_named_as_such(knot: KnotLab) -> None:
    p = provider(knot, zone=READONLY_ZONE)
    name = owner(READONLY_ZONE)
    with pytest.raises(ProviderError) as caught:
        p.apply(plan_publish(p.read(name), {assoc()}, 5))
    assert "may still reach" not in str(caught.value)
    assert "ACL" in str(caught.value)


def _raw_tcp(wire: bytes, port: int) -> bytes:
    import socket
    import struct

    with socket.create_connection((PRIMARY, port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", _read(sock, 2))
        return _read(sock, length)


def _read(sock: object, count: int) -> bytes:
    import socket

    assert isinstance(sock, socket.socket)
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_name_outside_every_knot_zone(knot: KnotLab) -> None:
    """Knot answers a TSIG-signed query for a zone it does not serve with REFUSED, unsigned
    (BIND signs its REFUSED): dnspython rejects the unsigned answer, and the adapter reports a
    one-line "bad answer" error rather than REFUSED."""
    with pytest.raises(ProviderError, match="requires a TSIG") as caught:
        provider(knot).zone_for("_25._tcp.mx.elsewhere.example.")
    assert "\n" not in str(caught.value)
    query = dns.message.make_query("elsewhere.example.", "SOA")
    query.use_tsig(knot.keyring, keyname=KEYNAME)
    response = dns.message.from_wire(_raw_tcp(query.to_wire(), knot.port), keyring=False)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.tsig is None


# -- wait() and the serial ------------------------------------------------------------------------
def test_wait_is_the_serial_step_and_the_records(knot: KnotLab) -> None:
    """Knot answers an UPDATE once it is applied and signed: the serial has moved by one and a
    read gives the new RRset at the first poll. A receipt whose serial has not moved, or whose
    records are not what is served, does not count as in effect (a one-line error)."""
    sleeps: list[float] = []
    p = provider(knot, sleeps=sleeps)
    name = owner()
    serial = knot.serial(knot.primary, ZONE)
    receipt = p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()}))))
    assert receipt.change_id == f"serial>{serial}"
    assert knot.serial(knot.primary, ZONE) == serial + 1
    p.wait(receipt, 10)
    assert sleeps == []  # in effect at the first look
    current = p.read(name)
    # Serial unchanged since the receipt: not in effect, however the records look.
    unchanged = Receipt("knot", f"serial>{serial + 1}", Change(TlsaRRset(name), current))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"not in effect after 0\.5 s \(serial \d+\)") as caught:
        _wait_real_time(p, unchanged, 0.5)
    assert time.monotonic() - started >= 0.5
    assert "\n" not in str(caught.value)
    # Serial moved, but what is served is not the receipt's RRset (someone changed it since).
    other = Receipt(
        "knot",
        f"serial>{serial}",
        Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({assoc()}))),
    )
    with pytest.raises(ProviderError, match="not in effect"):
        _wait_real_time(p, other, 0.5)
    # Knot's own re-signing steps the serial too, without touching the RRset: wait is unmoved.
    before_sign = knot.serial(knot.primary, ZONE)
    knot.knotc("zone-sign", ZONE)
    deadline = time.monotonic() + 10
    while knot.serial(knot.primary, ZONE) == before_sign and time.monotonic() < deadline:
        time.sleep(0.05)
    assert knot.serial(knot.primary, ZONE) > before_sign
    assert p.read(name) == current


def _wait_real_time(p: Rfc2136Provider, receipt: Receipt, timeout: float) -> None:
    p._sleep = time.sleep  # the deadline is wall time
    try:
        p.wait(receipt, timeout)
    finally:
        p._sleep = lambda _s: None


@pytest.mark.parametrize("policy", ["unixtime", "dateserial"])
def test_serial_policies(policy: str) -> None:
    """knot.conf(5) ``serial-policy``: the first update after a zone-file serial of 1 jumps to
    the unix time or YYYYMMDDnn, later ones step from there (incremented when the clock has not
    moved past it); RFC 1982 arithmetic puts both after 1, so wait() holds either way."""
    with running_knot(with_secondary=False, with_resolvers=False, serial_policy=policy) as lab:
        p = provider(lab)
        serials = []
        for _ in range(3):
            name = owner()
            receipt = p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()}))))
            p.wait(receipt, 10)
            serials.append(lab.serial(lab.primary, ZONE))
        assert serials == sorted(set(serials))
        if policy == "unixtime":
            assert abs(serials[0] - time.time()) < 120
        else:
            assert str(serials[0])[:8] == time.strftime("%Y%m%d", time.gmtime())


# -- the zone's own history (IXFR from Knot's journal) --------------------------------------------
def test_history_from_knots_journal(knot: KnotLab) -> None:
    """history(): an IXFR (RFC 1995) from Knot's journal gives each change at the owner name;
    from a serial older than the journal keeps (journal-max-depth, 20 by default) Knot sends
    the whole zone, and history says it cannot tell."""
    p = provider(knot)
    name = owner()
    a, b = assoc(), assoc()
    since = str(knot.serial(knot.primary, ZONE))
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({a})))), 10)
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({b})))), 10)
    history = p.history(name, since)
    assert history.version == str(knot.serial(knot.primary, ZONE))
    assert history.steps == ((frozenset(), frozenset({a})), (frozenset({a}), frozenset({b})))
    for _ in range(22):
        knot.update(ZONE, add=((owner(), 5, "TLSA", str(assoc())),))
    old = p.history(name, since)
    assert old.steps is None
