"""The strict DANE sender (tests/dane_sender.py) through rollovers in the lab, and its matcher
against a table of chains and RRsets, cross-checked with the real OpenSSL."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dns.query
import dns.rcode
import dns.rdata
import dns.update
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dns.rdataclass import IN
from dns.rdatatype import TLSA

from tests.certs import NOW, key_pem, make_cert, make_key, make_pki, pem
from tests.dane_sender import (
    AUTHENTICATED,
    AUTHORITATIVE,
    FAILED,
    OPPORTUNISTIC,
    RESOLVER,
    BogusAnswerError,
    Source,
    StrictSender,
    Tlsa,
    assert_clean,
    authenticate,
    fetch_tlsa,
    openssl_dane_verify,
    spki_of,
)
from tests.e2e.test_rollover_lab import _staged, engine_for
from tests.lab import TSIG_NAME, Lab
from tests.rollover_env import ServiceEnv
from tests.smtpserver import SmtpServer

# -- the lab ---------------------------------------------------------------------------------


pytestmark = pytest.mark.lab


@pytest.mark.lab
def test_full_rollover_with_a_strict_sender(env: ServiceEnv, lab: Lab) -> None:
    """Four staggered caches on the primary, the secondary and the sender's resolver, every
    handshake variant, OpenSSL semantics: an ordinary rollover must never fail a delivery."""
    old = Tlsa.of(3, 1, 1, env.pki.leaf)
    new = Tlsa.of(3, 1, 1, env.next_leaf)
    sender = StrictSender.for_env(env, seed=1).start()
    try:
        sender.wait_ready()
        started = env.start_rollover()
        assert started.returncode == 0, started.stderr
        run = env.rollover("run", env.name, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "done" in run.stdout
        time.sleep(env.ttl + 1.5)  # every cache has refetched the final RRset
    finally:
        sender.stop()
    assert_clean(sender, min_checks=50)
    # It saw the whole rollover: every RRset, both keys, through every kind of source.
    rrsets = set(sender.checks_by_rrset)
    assert {frozenset({old}), frozenset({old, new}), frozenset({new})} <= rrsets, rrsets
    assert set(sender.leaves) == {old.data.hex(), new.data.hex()}
    assert {kind for kind, _status in sender.fetched} == {"authoritative", "resolver"}
    assert sender.opportunistic == 0, sender.summary()


@pytest.mark.lab
def test_waits_shortened_below_the_ttl_make_the_strict_sender_fail(
    env: ServiceEnv, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploy right after propagation, ignoring TTLs: the caches holding the old RRset must
    fail the new key, and OpenSSL must agree."""
    import rollover.core.phases

    monkeypatch.setattr(rollover.core.phases, "wait_seconds", lambda *_a: 0.0)
    env.ttl = 5
    env.write_config()
    assert env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode == 0
    # That publish leaves the served TTL at 2 s ("nothing to change": the records are the same);
    # set the 5 s TTL directly, so that caches keep the old RRset for 5 s.
    old = Tlsa.of(3, 1, 1, env.pki.leaf)
    _publish(lab, env, [old])
    lab.unbound_control("flush_zone", "example.test.", resolver="sender")
    engine = engine_for(env)
    sender = StrictSender.for_env(env, seed=2, interval=0.1).start()
    try:
        sender.wait_ready()
        engine.start(_staged(env))
        lab.flush_resolver()  # the tool's resolver sees the new RRset at once; the caches not
        deadline = time.monotonic() + 60
        while engine.advance().rollover.phase != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        sender.stop()
    assert sender.failures, f"with waits below the TTL a DANE sender must fail: {sender.summary()}"
    assert sender.openssl_confirmed >= 1, sender.failures[:5]
    assert sender.openssl_disagreed == 0, [f for f in sender.failures if "verified" in f][:5]
    assert all(f"RRset {{{old}}}" in f for f in sender.failures), sender.failures[:5]


def _publish(lab: Lab, env: ServiceEnv, records: list[Tlsa]) -> None:
    """Replace the owner's TLSA RRset and wait until the primary serves it, signed. The records
    go as RFC 3597 generic RDATA: dnspython refuses to build a malformed TLSA record, BIND
    does not."""
    update = dns.update.UpdateMessage(
        "example.test.", keyring=lab.keyring, keyname=TSIG_NAME, keyalgorithm="hmac-sha256"
    )
    update.delete(env.owner, "TLSA")
    for r in records:
        wire = bytes([r.usage, r.selector, r.mtype]) + r.data
        update.add(env.owner, env.ttl, dns.rdata.GenericRdata(IN, TLSA, wire))
    response = dns.query.tcp(update, "127.0.0.1", port=lab.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    deadline = time.monotonic() + 10
    while True:
        answer = fetch_tlsa(Source(AUTHORITATIVE, lab.primary), env.owner)
        if answer.records == frozenset(records) and answer.secure:
            return
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


@pytest.mark.lab
def test_matcher_and_openssl_agree_on_rrsets_served_by_the_lab(env: ServiceEnv, lab: Lab) -> None:
    """RRsets published through BIND, fetched back signed, judged by the strict matcher and by
    OpenSSL against the live server (leaf + intermediate)."""
    address, port = env.endpoint.rsplit(":", 1)
    leaf, intermediate = env.pki.leaf, env.pki.intermediate
    current, other = Tlsa.of(3, 1, 1, leaf), Tlsa.of(3, 1, 2, env.next_leaf)
    cases: list[tuple[str, list[Tlsa], str]] = [
        ("agility hides the 3 1 1", [current, other], FAILED),
        (
            "agility keeps the 3 1 2",
            [Tlsa.of(3, 1, 2, leaf), Tlsa.of(3, 1, 1, env.next_leaf)],
            AUTHENTICATED,
        ),
        ("DANE-TA of the leaf", [Tlsa.of(2, 1, 1, leaf)], FAILED),
        ("DANE-TA of the intermediate", [Tlsa.of(2, 0, 1, intermediate)], AUTHENTICATED),
    ]
    # BIND 9.18 takes and serves these; dnspython could not even parse the answer.
    malformed = [
        ("a 31-byte digest beside", [current, Tlsa(3, 1, 1, bytes(31))], AUTHENTICATED),
        ("only a 31-byte digest", [Tlsa(3, 1, 1, bytes(31))], OPPORTUNISTIC),
        ("a 63-byte 3 1 2 hides nothing", [current, Tlsa(3, 1, 2, bytes(63))], AUTHENTICATED),
        ("unknown usage 4", [Tlsa(4, 1, 1, current.data)], OPPORTUNISTIC),
    ]
    chain = [x509.load_der_x509_certificate(d) for d in _served_chain(env)]
    for label, records, expected in cases + malformed:
        _publish(lab, env, records)
        answer = fetch_tlsa(Source(AUTHORITATIVE, lab.primary), env.owner)
        verdict = authenticate(answer.records, chain, env.host)
        assert verdict.status == expected, (label, verdict)
        ok, said = openssl_dane_verify(address, int(port), env.host, answer.records)
        assert ok == (expected == AUTHENTICATED), (label, said)
        if expected != AUTHENTICATED:
            assert "no verdict" not in said, (label, said)

    # A running sender on the agility RRset: every delivery fails, and OpenSSL says so too.
    _publish(lab, env, [current, other])
    lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))
    lab.unbound_control("flush_zone", "example.test.", resolver="sender")
    sender = StrictSender.for_env(env, seed=3, caches=3).start()
    try:
        deadline = time.monotonic() + 15
        while len(sender.failures) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.stop()
    assert sender.checks == 0, sender.summary()
    assert len(sender.failures) >= 6, sender.summary()
    assert sender.openssl_confirmed == len(sender.failures), sender.failures[:3]
    assert all("hidden by digest agility" not in f for f in sender.failures)  # reason: no match
    assert all("no matching DANE TLSA records" in f for f in sender.failures), sender.failures[:3]


@pytest.mark.lab
def test_denials_insecure_and_bogus_answers(env: ServiceEnv, lab: Lab) -> None:
    """RFC 2308 negative TTLs, AD or not, SERVFAIL: what each source says, and what the sender
    does with it (opportunistic TLS for denials and insecure answers, a failure for bogus)."""
    missing = f"_25._tcp.nowhere-{env.host}."
    insecure = "_25._tcp.mx.insecure.example.test."
    bogus = "_25._tcp.mx.bogus.test."
    primary, resolver = Source(AUTHORITATIVE, lab.primary), Source(RESOLVER, lab.sender_resolver)
    denial = fetch_tlsa(primary, missing)
    assert (denial.status, denial.records, denial.ttl) == ("secure denial", frozenset(), 5)
    assert fetch_tlsa(resolver, missing).status == "secure denial"
    assert fetch_tlsa(primary, insecure).status == "insecure denial"
    assert fetch_tlsa(resolver, insecure).status == "insecure denial"
    with pytest.raises(BogusAnswerError):
        fetch_tlsa(resolver, bogus)

    def run(owner: str) -> StrictSender:
        sender = StrictSender(
            owner,
            env.host,
            [env.endpoint],
            authoritative=[lab.primary],
            resolvers=[lab.sender_resolver],
            caches=2,
            ttl_hint=0.3,
        ).start()
        time.sleep(1.5)
        sender.stop()
        return sender

    quiet = run(insecure)
    assert (quiet.checks, quiet.failures) == (0, []), quiet.summary()
    assert quiet.opportunistic > 0, quiet.summary()
    assert quiet.denials > 0, quiet.summary()
    with pytest.raises(AssertionError, match="only 0 successful checks"):
        assert_clean(quiet, min_checks=1)
    broken = run(bogus)
    assert broken.bogus > 0, broken.summary()
    assert broken.checks == 0, broken.summary()
    assert broken.failures, broken.summary()
    assert all("SERVFAIL" in f for f in broken.failures), broken.failures[:3]


@pytest.mark.lab
def test_a_cname_owner_is_followed(env: ServiceEnv, lab: Lab) -> None:
    """A TLSA owner that is a CNAME (a shared RRset): every source gives the target's RRset,
    secure, for the smallest TTL along the chain; a dangling one is a secure denial."""
    alias = f"_25._tcp.alias-{env.host}."
    dangling = f"_25._tcp.dangling-{env.host}."
    lab.update(
        "example.test.",
        add=(
            (alias, 1, "CNAME", env.owner),
            (dangling, 3, "CNAME", f"_25._tcp.nothing-{env.host}."),
        ),
    )
    lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))
    current = frozenset({Tlsa.of(3, 1, 1, env.pki.leaf)})
    for source in (
        Source(AUTHORITATIVE, lab.primary),
        Source(AUTHORITATIVE, lab.secondary),
        Source(RESOLVER, lab.sender_resolver),
    ):
        answer = fetch_tlsa(source, alias)
        assert (answer.status, answer.records) == ("secure", current), (source, answer)
        assert answer.ttl <= 1, (source, answer)
        denial = fetch_tlsa(source, dangling)
        assert denial.status == "secure denial", (source, denial)
        assert denial.ttl <= 3, (source, denial)
    sender = StrictSender(
        alias,
        env.host,
        [env.endpoint],
        authoritative=[lab.primary, lab.secondary],
        resolvers=[lab.sender_resolver],
        ttl_hint=1,
    ).start()
    try:
        sender.wait_ready(checks=20)
    finally:
        sender.stop()
    assert_clean(sender, min_checks=20)


def _served_chain(env: ServiceEnv) -> tuple[bytes, ...]:
    from rollover.edges.probe import TlsProbe

    address, port = env.endpoint.rsplit(":", 1)
    result = TlsProbe(timeout=5).probe(address, int(port), env.host, "smtp", ("default",))
    assert result.error is None, result.error
    return result.chains[0].certificates


# -- the matcher, without DNS ------------------------------------------------------------------

HOST = "mx.dane.test"


@dataclass(frozen=True)
class Case:
    chain: tuple[x509.Certificate, ...]  # as presented, leaf first
    key: object  # the leaf's private key (to serve the chain)
    records: tuple[Tlsa, ...]
    expected: str
    host: str = HOST
    openssl: str | None = None  # where OpenSSL 3.0 knowingly differs (see the case)


def _build(
    name: str,
    key: object,
    issuer: tuple[x509.Certificate, object] | None,
    *,
    ca: bool | None,
    path_length: int | None = None,
    dns_names: tuple[str, ...] = (),
    eku: tuple[x509.ObjectIdentifier, ...] = (),
    key_usage: dict[str, bool] | None = None,
) -> x509.Certificate:
    """Certificates with what tests/certs.py does not make: path lengths, EKUs, key usages, no
    basicConstraints at all (``ca=None``)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, path_length), critical=True)
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if key_usage is not None:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        flags.update(key_usage)
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


@cache
def _cases() -> dict[str, Case]:
    pki = make_pki("p256", tag="strict", host=HOST)
    leaf, inter, root, key = pki.leaf, pki.intermediate, pki.root, pki.leaf_key
    ikey, rkey = pki.intermediate_key, pki.root_key
    chain = (leaf, inter)
    other_key = make_key("p256", "strict-other")
    other = make_cert(HOST, other_key, (inter, ikey), dns_names=(HOST,))

    def ee(selector: int, mtype: int, cert: x509.Certificate = leaf) -> Tlsa:
        return Tlsa.of(3, selector, mtype, cert)

    def ta(selector: int, mtype: int, cert: x509.Certificate = inter) -> Tlsa:
        return Tlsa.of(2, selector, mtype, cert)

    def leaf_with(**kw: object) -> x509.Certificate:
        return make_cert(HOST, key, (inter, ikey), **kw)  # type: ignore[arg-type]

    days = dt.timedelta(days=1)
    expired = leaf_with(not_before=NOW - 10 * days, not_after=NOW - days, dns_names=(HOST,))
    future = leaf_with(not_before=NOW + days, not_after=NOW + 10 * days, dns_names=(HOST,))
    # An intermediate that expired, one that is no CA, one with a forged signature.
    xkey = make_key("p256", "strict-x")
    inter_expired = make_cert(
        "Expired Int", xkey, (root, rkey), ca=True, not_before=NOW - 9 * days, not_after=NOW - days
    )
    leaf_under_expired = make_cert(HOST, key, (inter_expired, xkey), dns_names=(HOST,))
    okey = make_key("p256", "strict-old-root")
    old_root = make_cert(
        "Old Root", okey, None, ca=True, not_before=NOW - 9 * days, not_after=NOW - days
    )
    inter_under_old_root = make_cert("Int Under Old Root", xkey, (old_root, okey), ca=True)
    leaf_under_old_root = make_cert(HOST, key, (inter_under_old_root, xkey), dns_names=(HOST,))
    inter_not_ca = make_cert("Not A CA", xkey, (root, rkey), ca=False)
    leaf_under_not_ca = make_cert(HOST, key, (inter_not_ca, xkey), dns_names=(HOST,))
    inter_no_bc = _build("No BC Int", xkey, (root, rkey), ca=None)
    leaf_under_no_bc = make_cert(HOST, key, (inter_no_bc, xkey), dns_names=(HOST,))
    inter_ku = _build("No CertSign", xkey, (root, rkey), ca=True, key_usage={"crl_sign": True})
    leaf_under_ku = make_cert(HOST, key, (inter_ku, xkey), dns_names=(HOST,))
    forged = make_cert(inter.subject.rfc4514_string()[3:], xkey, (root, rkey), ca=True)
    unrelated = make_cert("Unrelated CA", xkey, None, ca=True)
    # Path length 0 on the root, with an intermediate below it.
    pkey = make_key("p256", "strict-plen-root")
    plen_root = _build("Plen Root", pkey, None, ca=True, path_length=0)
    plen_inter = _build("Plen Int", xkey, (plen_root, pkey), ca=True)
    plen_leaf = make_cert(HOST, key, (plen_inter, xkey), dns_names=(HOST,))
    client_only = _build(
        HOST,
        key,
        (inter, ikey),
        ca=False,
        dns_names=(HOST,),
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    sign_only = _build(
        HOST, key, (inter, ikey), ca=False, dns_names=(HOST,), key_usage={"crl_sign": True}
    )
    skey = make_key("p256", "strict-self")
    self_signed = make_cert(HOST, skey, None, dns_names=(HOST,))
    self_signed_ca = make_cert(HOST, skey, None, ca=True, dns_names=(HOST,))
    wildcard = leaf_with(dns_names=("*.dane.test",))
    tld_wildcard = leaf_with(dns_names=("*.test",))
    cn_only = leaf_with()
    san_elsewhere = leaf_with(dns_names=("other.dane.test",))
    short = Tlsa(3, 1, 1, bytes(31))
    return {
        # DANE-EE: certificate or SPKI, every matching type; names and dates ignored.
        "EE 3 1 1": Case(chain, key, (ee(1, 1),), AUTHENTICATED),
        "EE 3 0 1": Case(chain, key, (ee(0, 1),), AUTHENTICATED),
        "EE 3 1 2": Case(chain, key, (ee(1, 2),), AUTHENTICATED),
        "EE 3 0 2": Case(chain, key, (ee(0, 2),), AUTHENTICATED),
        "EE 3 1 0": Case(chain, key, (ee(1, 0),), AUTHENTICATED),
        "EE 3 0 0": Case(chain, key, (ee(0, 0),), AUTHENTICATED),
        "EE another key": Case(chain, key, (ee(1, 1, other),), FAILED),
        "EE expired leaf": Case((expired, inter), key, (ee(1, 1, expired),), AUTHENTICATED),
        "EE leaf not valid yet": Case((future, inter), key, (ee(0, 1, future),), AUTHENTICATED),
        "EE wrong name": Case((san_elsewhere, inter), key, (ee(1, 1),), AUTHENTICATED),
        "EE client-only EKU": Case((client_only, inter), key, (ee(1, 1),), AUTHENTICATED),
        "EE self-signed single": Case(
            (self_signed,), skey, (ee(0, 1, self_signed),), AUTHENTICATED
        ),
        # Digest agility (RFC 7671 section 9): per usage/selector, the strongest digest counts.
        "agility hides 3 1 1": Case(chain, key, (ee(1, 1), ee(1, 2, other)), FAILED),
        "agility keeps 3 1 2": Case(chain, key, (ee(1, 2), ee(1, 1, other)), AUTHENTICATED),
        "agility never hides Full": Case(chain, key, (ee(1, 0), ee(1, 2, other)), AUTHENTICATED),
        "agility per selector": Case(chain, key, (ee(0, 1), ee(1, 2, other)), AUTHENTICATED),
        "agility per usage": Case(chain, key, (ta(0, 1), ee(1, 2, other)), AUTHENTICATED),
        "agility within DANE-TA": Case(chain, key, (ta(0, 1), ta(0, 2, other)), FAILED),
        "malformed 3 1 2 hides nothing": Case(
            chain, key, (ee(1, 1), Tlsa(3, 1, 2, bytes(63))), AUTHENTICATED
        ),
        "unknown mtype hides nothing": Case(
            chain, key, (ee(1, 1), Tlsa(3, 1, 3, bytes(32))), AUTHENTICATED
        ),
        # Unusable records are ignored; none usable: opportunistic.
        "31-byte digest beside a good one": Case(chain, key, (ee(1, 1), short), AUTHENTICATED),
        "only a 31-byte digest": Case(chain, key, (short,), OPPORTUNISTIC),
        "only a 33-byte digest": Case(
            chain, key, (Tlsa(3, 1, 1, ee(1, 1).data + b"\0"),), OPPORTUNISTIC
        ),
        "usage 4": Case(chain, key, (Tlsa(4, 1, 1, ee(1, 1).data),), OPPORTUNISTIC),
        "selector 2": Case(chain, key, (Tlsa(3, 2, 1, ee(1, 1).data),), OPPORTUNISTIC),
        "mtype 3": Case(chain, key, (Tlsa(3, 1, 3, ee(1, 1).data),), OPPORTUNISTIC),
        "Full that is no certificate": Case(
            chain, key, (Tlsa(3, 0, 0, b"\x30\x03abc"),), OPPORTUNISTIC
        ),
        "PKIX-EE only": Case(chain, key, (Tlsa.of(1, 1, 1, leaf),), OPPORTUNISTIC),
        "PKIX-TA only": Case(chain, key, (Tlsa.of(0, 0, 1, root),), OPPORTUNISTIC),
        "PKIX-EE beside a wrong DANE-EE": Case(
            chain, key, (Tlsa.of(1, 1, 1, leaf), ee(1, 1, other)), FAILED
        ),
        # DANE-TA: a presented CA at depth >= 1, a valid path to it, the name on the leaf.
        "TA 2 0 1 intermediate": Case(chain, key, (ta(0, 1),), AUTHENTICATED),
        "TA 2 1 1 intermediate": Case(chain, key, (ta(1, 1),), AUTHENTICATED),
        "TA 2 0 0 intermediate": Case(chain, key, (ta(0, 0),), AUTHENTICATED),
        "TA 2 1 2 intermediate": Case(chain, key, (ta(1, 2),), AUTHENTICATED),
        "TA root presented": Case((leaf, inter, root), key, (ta(0, 1, root),), AUTHENTICATED),
        "TA root, chain out of order": Case(
            (leaf, root, inter), key, (ta(0, 1, root),), AUTHENTICATED
        ),
        "TA root not presented": Case(chain, key, (ta(0, 1, root),), FAILED),
        "TA of the leaf, single self-signed": Case(
            (self_signed,), skey, (ta(0, 1, self_signed),), FAILED
        ),
        "TA of the leaf, single self-signed CA": Case(
            (self_signed_ca,), skey, (ta(1, 1, self_signed_ca),), FAILED
        ),
        "TA of the leaf in a chain": Case(chain, key, (ta(1, 1, leaf),), FAILED),
        "TA unrelated CA presented": Case(
            (leaf, inter, unrelated), key, (ta(0, 1, unrelated),), FAILED
        ),
        "TA forged intermediate": Case((leaf, forged), key, (ta(0, 1, forged),), FAILED),
        "TA expired leaf": Case((expired, inter), key, (ta(0, 1),), FAILED),
        "TA leaf not valid yet": Case((future, inter), key, (ta(0, 1),), FAILED),
        # OpenSSL's internal_verify checks the dates of a self-issued anchor only: an expired
        # intermediate anchor passes there. The strict sender refuses it all the same.
        "TA expired anchor": Case(
            (leaf_under_expired, inter_expired),
            key,
            (ta(0, 1, inter_expired),),
            FAILED,
            openssl=AUTHENTICATED,
        ),
        "TA expired self-signed root anchor": Case(
            (leaf_under_old_root, inter_under_old_root, old_root),
            key,
            (ta(0, 1, old_root),),
            FAILED,
        ),
        "TA expired root above the anchor": Case(
            (leaf_under_old_root, inter_under_old_root, old_root),
            key,
            (ta(0, 1, inter_under_old_root),),
            AUTHENTICATED,
        ),
        "TA expired intermediate below the root": Case(
            (leaf_under_expired, inter_expired, root), key, (ta(0, 1, root),), FAILED
        ),
        "TA anchor not a CA": Case(
            (leaf_under_not_ca, inter_not_ca), key, (ta(0, 1, inter_not_ca),), FAILED
        ),
        "TA non-CA intermediate below the root": Case(
            (leaf_under_not_ca, inter_not_ca, root), key, (ta(0, 1, root),), FAILED
        ),
        "TA anchor without basicConstraints": Case(
            (leaf_under_no_bc, inter_no_bc), key, (ta(0, 1, inter_no_bc),), FAILED
        ),
        "TA keyUsage without keyCertSign": Case(
            (leaf_under_ku, inter_ku), key, (ta(0, 1, inter_ku),), FAILED
        ),
        "TA path length exceeded": Case(
            (plen_leaf, plen_inter, plen_root), key, (ta(0, 1, plen_root),), FAILED
        ),
        "TA path length 0, anchor just above": Case(
            (plen_leaf, plen_inter, plen_root), key, (ta(0, 1, plen_inter),), AUTHENTICATED
        ),
        "TA client-only EKU": Case((client_only, inter), key, (ta(0, 1),), FAILED),
        "TA keyUsage unfit for TLS": Case((sign_only, inter), key, (ta(0, 1),), FAILED),
        "TA wildcard": Case((wildcard, inter), key, (ta(0, 1),), AUTHENTICATED),
        "TA wildcard, two labels": Case(
            (wildcard, inter), key, (ta(0, 1),), FAILED, "a.mx.dane.test"
        ),
        "TA wildcard over a TLD": Case((tld_wildcard, inter), key, (ta(0, 1),), FAILED, "mx.test"),
        "TA name case-insensitive": Case(chain, key, (ta(0, 1),), AUTHENTICATED, "MX.Dane.TEST"),
        "TA CN without DNS-ID": Case((cn_only, inter), key, (ta(0, 1),), AUTHENTICATED),
        "TA CN ignored beside a DNS-ID": Case((san_elsewhere, inter), key, (ta(0, 1),), FAILED),
        "TA beside a wrong EE": Case(chain, key, (ta(0, 1), ee(1, 1, other)), AUTHENTICATED),
    }


CASES = (
    "EE 3 1 1",
    "EE 3 0 1",
    "EE 3 1 2",
    "EE 3 0 2",
    "EE 3 1 0",
    "EE 3 0 0",
    "EE another key",
    "EE expired leaf",
    "EE leaf not valid yet",
    "EE wrong name",
    "EE client-only EKU",
    "EE self-signed single",
    "agility hides 3 1 1",
    "agility keeps 3 1 2",
    "agility never hides Full",
    "agility per selector",
    "agility per usage",
    "agility within DANE-TA",
    "malformed 3 1 2 hides nothing",
    "unknown mtype hides nothing",
    "31-byte digest beside a good one",
    "only a 31-byte digest",
    "only a 33-byte digest",
    "usage 4",
    "selector 2",
    "mtype 3",
    "Full that is no certificate",
    "PKIX-EE only",
    "PKIX-TA only",
    "PKIX-EE beside a wrong DANE-EE",
    "TA 2 0 1 intermediate",
    "TA 2 1 1 intermediate",
    "TA 2 0 0 intermediate",
    "TA 2 1 2 intermediate",
    "TA root presented",
    "TA root, chain out of order",
    "TA root not presented",
    "TA of the leaf, single self-signed",
    "TA of the leaf, single self-signed CA",
    "TA of the leaf in a chain",
    "TA unrelated CA presented",
    "TA forged intermediate",
    "TA expired leaf",
    "TA leaf not valid yet",
    "TA expired anchor",
    "TA expired self-signed root anchor",
    "TA expired root above the anchor",
    "TA expired intermediate below the root",
    "TA anchor not a CA",
    "TA non-CA intermediate below the root",
    "TA anchor without basicConstraints",
    "TA keyUsage without keyCertSign",
    "TA path length exceeded",
    "TA path length 0, anchor just above",
    "TA client-only EKU",
    "TA keyUsage unfit for TLS",
    "TA wildcard",
    "TA wildcard, two labels",
    "TA wildcard over a TLD",
    "TA name case-insensitive",
    "TA CN without DNS-ID",
    "TA CN ignored beside a DNS-ID",
    "TA beside a wrong EE",
)


def test_the_case_table_is_complete() -> None:
    assert sorted(CASES) == sorted(_cases())


@pytest.mark.parametrize("name", CASES)
def test_strict_matcher(name: str) -> None:
    case = _cases()[name]
    verdict = authenticate(case.records, case.chain, case.host)
    assert verdict.status == case.expected, verdict


@pytest.fixture(scope="module")
def serve_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Case], str]]:
    """A STARTTLS server per distinct chain of the table, started on first use."""
    directory: Path = tmp_path_factory.mktemp("strict-cases")
    servers: dict[tuple[bytes, ...], SmtpServer] = {}

    def endpoint(case: Case) -> str:
        ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in case.chain)
        if ders not in servers:
            chain, key = directory / f"{len(servers)}.pem", directory / f"{len(servers)}.key"
            chain.write_bytes(pem(*case.chain))
            key.write_bytes(key_pem(case.key))  # type: ignore[arg-type]
            servers[ders] = SmtpServer([(chain, key)], hostname=HOST).start()
        return servers[ders].endpoint

    yield endpoint
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("name", CASES)
def test_openssl_agrees_with_the_strict_matcher(
    name: str, serve_case: Callable[[Case], str]
) -> None:
    """The same table through ``openssl s_client -dane_tlsa_rrdata`` against a real server:
    OpenSSL authenticates exactly what the strict matcher authenticates."""
    case = _cases()[name]
    address, port = serve_case(case).rsplit(":", 1)
    ok, said = openssl_dane_verify(address, int(port), case.host, case.records)
    assert "no verdict" not in said, said
    assert ok == ((case.openssl or case.expected) == AUTHENTICATED), said


def test_spki_is_cut_out_of_the_certificate() -> None:
    pki = make_pki("p256", tag="strict", host=HOST)
    spki = pki.leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_of(pki.leaf) == spki
    assert Tlsa.parse(str(Tlsa.of(3, 1, 1, pki.leaf))) == Tlsa.of(3, 1, 1, pki.leaf)


def test_the_sender_only_contacts_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        StrictSender("_25._tcp.mx.", "mx", ["192.0.2.1:25"], authoritative=["127.0.0.1:53"])
    with pytest.raises(ValueError, match="loopback"):
        StrictSender("_25._tcp.mx.", "mx", ["127.0.0.1:25"], resolvers=["198.51.100.1:53"])
    with pytest.raises(ValueError, match="loopback"):
        openssl_dane_verify("192.0.2.1", 25, "mx", ["3 1 1 00"])


def _ran(times: list[float], stopped: float) -> StrictSender:
    sender = StrictSender("_25._tcp.mx.", "mx", ["127.0.0.1:1"], authoritative=["127.0.0.1:1"])
    sender.started_at = 0.0
    sender.success_times = times
    sender.checks = len(times)
    sender.stopped_at = stopped
    return sender


def test_assert_clean_wants_successes_all_through() -> None:
    steady = [i * 0.2 for i in range(50)]
    assert_clean(_ran(steady, 10.0), min_checks=50)
    with pytest.raises(AssertionError, match="only 50 successful checks"):
        assert_clean(_ran(steady, 10.0), min_checks=51)
    with pytest.raises(AssertionError, match=r"stopped for 4\.00 s"):
        assert_clean(_ran([*steady, 9.8 + 4.0], 14.0), min_checks=1)
    with pytest.raises(AssertionError, match="no successful check in the last"):
        assert_clean(_ran(steady, 20.0), min_checks=1)
    failed = _ran(steady, 10.0)
    failed.failures.append("12:00:00 a failure")
    with pytest.raises(AssertionError, match="1 DANE failures"):
        assert_clean(failed, min_checks=1)
