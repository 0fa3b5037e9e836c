"""The existing RFC 2136 adapter against a real PowerDNS (``dnsupdate=yes``, TSIG key allowed by
``TSIG-ALLOW-DNSUPDATE`` metadata): the same compare-and-swap as against BIND, and what differs."""

from __future__ import annotations

import base64
import secrets

import pytest

from rollover.core.association import Association, parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish, plan_withdraw
from rollover.errors import ConflictError, ProviderError
from rollover.providers.rfc2136 import Rfc2136Provider, Rfc2136Settings
from rollover.providers.tsig import TsigKey
from tests.pdns import ADDRESS, SIGNED, TSIG_ALGORITHM, TSIG_NAME, PdnsLab, pdns

pytestmark = pytest.mark.lab
__all__ = ["pdns"]


def assoc() -> Association:
    return parse_association(f"3 1 1 {secrets.token_hex(32)}")


def provider(
    lab: PdnsLab,
    *,
    name: str = TSIG_NAME,
    algorithm: str = TSIG_ALGORITHM,
    secret: bytes | None = None,
    zone: str | None = None,
) -> Rfc2136Provider:
    key = TsigKey(
        name, algorithm, secret if secret is not None else base64.b64decode(lab.tsig_secret)
    )
    settings = Rfc2136Settings(ADDRESS, lab.port, zone, key, 2.0, 2)
    return Rfc2136Provider("pdns-2136", settings, sleep=lambda _s: None)


def owner(zone: str = SIGNED) -> str:
    return f"_25._tcp.mx-{secrets.token_hex(4)}.{zone}"


def test_publish_and_retire(pdns: PdnsLab) -> None:
    p = provider(pdns)
    name = owner()
    assert p.zone_for(name) == SIGNED
    old, new = assoc(), assoc()
    serial = pdns.serial(SIGNED)
    p.wait(p.apply(plan_publish(p.read(name), {old}, 5)), 10)
    assert p.read(name) == TlsaRRset(name, 5, frozenset({old}))
    p.wait(p.apply(plan_publish(p.read(name), {new}, 5)), 10)
    assert p.read(name).records == {old, new}
    p.wait(p.apply(plan_withdraw(p.read(name), {old}, frozenset({old, new}))), 10)
    assert p.read(name) == TlsaRRset(name, 5, frozenset({new}))
    # Live-signed: the answer carries PowerDNS's RRSIG.
    response = pdns.query(pdns.primary, name, "TLSA")
    assert {rrset.rdtype for rrset in response.answer} == {52, 46}
    # PowerDNS steps the serial by one per UPDATE (SOA-EDIT-DNSUPDATE unset: INCREASE-like).
    assert pdns.serial(SIGNED) == serial + 3
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name))), 10)
    assert not p.read(name).exists


def test_prerequisite_violation_is_a_conflict(pdns: PdnsLab) -> None:
    """Compare-and-swap: PowerDNS checks RFC 2136 prerequisites itself (NXRRSET / YXRRSET)."""
    p = provider(pdns)
    name = owner()
    mine, theirs = assoc(), assoc()
    before = p.read(name)
    pdns.update(SIGNED, add=((name, 5, "TLSA", str(theirs)),))  # "RRset does not exist" fails
    serial = pdns.serial(SIGNED)
    with pytest.raises(ConflictError, match=r"changed since it was read \(YXRRSET\)"):
        p.apply(plan_publish(before, {mine}, 5))
    assert p.read(name).records == {theirs}
    assert pdns.serial(SIGNED) == serial  # nothing applied
    before = p.read(name)
    pdns.update(SIGNED, add=((name, 5, "TLSA", str(assoc())),))  # value-dependent one fails
    with pytest.raises(ConflictError, match=r"\(NXRRSET\)"):
        p.apply(plan_publish(before, {mine}, 5))
    assert mine not in p.read(name).records
    # A concurrent edit through the HTTP API is caught the same way.
    before = p.read(name)
    pdns.replace(SIGNED, name, 5, "TLSA", str(assoc()))
    with pytest.raises(ConflictError):
        p.apply(plan_withdraw(before, set(before.records), frozenset(), force=True))


def test_apply_many_one_update(pdns: PdnsLab) -> None:
    p = provider(pdns)
    names = [owner() for _ in range(3)]
    serial = pdns.serial(SIGNED)
    changes = [Change(p.read(n), TlsaRRset(n, 5, frozenset({assoc()}))) for n in names]
    for receipt in p.apply_many(changes):
        p.wait(receipt, 10)
    assert [p.read(n) for n in names] == [c.after for c in changes]
    assert pdns.serial(SIGNED) == serial + 1  # one UPDATE, one serial step
    read = [p.read(n) for n in names]
    pdns.update(SIGNED, add=((names[2], 5, "TLSA", str(assoc())),))
    with pytest.raises(ConflictError):
        p.apply_many([Change(r, TlsaRRset(r.owner, 5, r.records | {assoc()})) for r in read])
    assert [p.read(n) for n in names[:2]] == read[:2]


def test_tsig_allow_dnsupdate_is_what_makes_tsig_required(pdns: PdnsLab) -> None:
    """Unlike BIND's allow-update, PowerDNS requires TSIG only in zones with
    TSIG-ALLOW-DNSUPDATE metadata (pdns/rfc2136handler.cc ``processUpdate``): elsewhere an
    update from allow-dnsupdate-from is applied signed or not. The adapter always signs."""
    import dns.query
    import dns.update

    unsigned = dns.update.UpdateMessage(SIGNED)
    unsigned.add(owner(), 5, "TLSA", str(assoc()))
    assert dns.query.tcp(unsigned, ADDRESS, port=pdns.port, timeout=5).rcode() == 5  # REFUSED
    name = owner("noserial.test.")
    unsigned = dns.update.UpdateMessage("noserial.test.")
    unsigned.add(name, 5, "TLSA", str(assoc()))
    assert dns.query.tcp(unsigned, ADDRESS, port=pdns.port, timeout=5).rcode() == 0  # applied
    assert len(provider(pdns).read(name).records) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"secret": b"w" * 32}, {"name": "no-such-key"}, {"algorithm": "hmac-sha512"}],
)
def test_tsig_failures(pdns: PdnsLab, kwargs: dict[str, object]) -> None:
    """PowerDNS answers a wrong secret, key name or algorithm with an unsigned REFUSED and no
    TSIG record (BIND: a TSIG error, BADSIG or BADKEY): dnspython refuses the answer, so the
    error is one line but cannot say which of the three it was."""
    p = provider(pdns, **kwargs)  # type: ignore[arg-type]
    name = owner()
    with pytest.raises(ProviderError, match="response requires a TSIG") as caught:
        p.apply(Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({assoc()}))))
    assert pdns.tsig_secret not in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not provider(pdns).read(name).exists


def test_history_cannot_tell(pdns: PdnsLab) -> None:
    """PowerDNS answers IXFR with the whole zone (it keeps no journal): the adapter says it
    cannot tell what happened in between, and the "current + next" fast path is not taken."""
    p = provider(pdns)
    name = owner()
    since = p.history(name, None).version
    p.wait(p.apply(plan_publish(p.read(name), {assoc()}, 5)), 10)
    history = p.history(name, since)
    assert history.steps is None
    assert int(history.version) == int(since) + 1
