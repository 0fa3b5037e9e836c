"""The posture checks of `verify --domain` (rollover.core.posture): pure, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from rollover.core.association import parse_association
from rollover.core.posture import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    Dnskey,
    Ds,
    Finding,
    HostTlsa,
    Part,
    Posture,
    Rrsig,
    SignedRRset,
    TxtAnswer,
    ZoneKeys,
    check_coverage,
    check_mta_sts,
    check_signing,
    check_tlsrpt,
    fold,
    fold_into,
    mx_pattern_matches,
    parse_sts_policy,
    parse_sts_record,
    parse_tlsrpt,
    rua_problem,
    uncovered,
)
from rollover.core.posture.grammar import _GrammarError

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
GOOD = parse_association("3 1 1 " + "ab" * 32)
PKIX_ONLY = parse_association("1 1 1 " + "cd" * 32)
SHORT = parse_association("3 1 1 abcd")  # 2 bytes for SHA-256: unusable

# -- TLS-RPT -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rua", "bad"),
    [
        ("v=TLSRPTv1; rua=mailto:tlsrpt@example.com", ("mailto:tlsrpt@example.com",), ()),
        ("v=TLSRPTv1;rua=mailto:a@example.com;", ("mailto:a@example.com",), ()),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com, https://r.example.net/v1/tls",
            ("mailto:a@example.com", "https://r.example.net/v1/tls"),
            (),
        ),
        (
            "v=TLSRPTv1; rua=https://r.example.net:8443/x; ext-1=yes",
            ("https://r.example.net:8443/x",),
            (),
        ),
        ("v=TLSRPTv1; rua=mailto:nobody", (), ("mailto:nobody",)),
        ("v=TLSRPTv1; rua=ftp://example.com/x", (), ("ftp://example.com/x",)),
        ("v=TLSRPTv1; rua=https:/noslashes", (), ("https:/noslashes",)),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", ("mailto:a@example.com",), ("",)),
    ],
)
def test_tlsrpt_record_parses(text: str, rua: tuple[str, ...], bad: tuple[str, ...]) -> None:
    record = parse_tlsrpt(text)
    assert record.rua == rua
    assert record.bad_rua == bad


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("v=TLSRPTv2; rua=mailto:a@example.com", "does not begin with v=TLSRPTv1"),
        ("rua=mailto:a@example.com; v=TLSRPTv1", "does not begin"),
        ("v=TLSRPTv1", "no field"),
        ("v=TLSRPTv1; ext=1", "no rua"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", "2 rua"),
        ("v=TLSRPTv1; rua mailto:a@example.com", "not key=value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; x=", "bad value"),
    ],
)
def test_tlsrpt_record_refused(text: str, why: str) -> None:
    with pytest.raises(_GrammarError, match=why):
        parse_tlsrpt(text)


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("mailto:reports@example.com", True),
        ("MAILTO:reports@example.com", True),
        ("mailto:reports@localhost", False),
        ("mailto:@example.com", False),
        ("mailto:a b@example.com", False),
        ("https://reports.example.com/tlsrpt", True),
        ("https://[2001:db8::1]/x", True),
        ("https://reports.example.com:99999/x", False),
        ("https:///x", False),
        ("http://reports.example.com/", False),
    ],
)
def test_rua_uri(uri: str, ok: bool) -> None:
    assert (rua_problem(uri) is None) is ok


RUA = "v=TLSRPTv1; rua=mailto:tls@example.com"


@pytest.mark.parametrize(
    ("texts", "error", "level", "says"),
    [
        ((RUA,), None, OK, "reports to mailto:tls@example.com"),
        ((RUA, "v=spf1 -all"), None, OK, "reports to"),  # other TXT records are discarded
        ((), None, WARNING, "no TLS-RPT record"),
        (("v=spf1 -all",), None, WARNING, "no TLS-RPT record"),
        ((RUA, "v=TLSRPTv1; rua=mailto:other@example.com"), None, WARNING, "2 v=TLSRPTv1"),
        (("v=TLSRPTv1; rua=mailto:nobody",), None, WARNING, "no well-formed rua"),
        (
            ("v=TLSRPTv1; rua=mailto:x@example.com; rua=mailto:y@example.com",),
            None,
            WARNING,
            "2 rua",
        ),
        ((), "timed out", UNKNOWN, "timed out"),
    ],
)
def test_tlsrpt_check(texts: tuple[str, ...], error: str | None, level: int, says: str) -> None:
    part = check_tlsrpt(TxtAnswer("_smtp._tls.example.com.", texts, error))
    assert max(f.level for f in part.findings) == level
    assert any(says in f.message for f in part.findings), part.findings
    assert part.exit == min(level, WARNING)  # the cap: TLS-RPT never counts above WARNING
    assert part.json()["records"][0]["valid"] is (level == OK)


def test_tlsrpt_at_mx_hosts_is_a_note_when_missing_and_checked_when_present() -> None:
    domain = TxtAnswer("_smtp._tls.example.com.", (RUA,))
    part = check_tlsrpt(
        domain,
        [
            TxtAnswer("_smtp._tls.mx1.example.com.", ()),
            TxtAnswer("_smtp._tls.mx2.example.com.", ("v=TLSRPTv1; rua=gopher://x",)),
            TxtAnswer("_smtp._tls.example.com.", (RUA,)),  # the domain is its own MX: once
        ],
    )
    records = part.json()["records"]
    assert [r["name"] for r in records] == [
        "_smtp._tls.example.com.",
        "_smtp._tls.mx1.example.com.",
        "_smtp._tls.mx2.example.com.",
    ]
    levels = {f.message.split(":")[0]: f.level for f in part.findings}
    assert (
        levels[
            "no TLS-RPT record at _smtp._tls.mx1.example.com. (senders that take the MX host as the DANE policy domain send no reports for it)"
        ]
        == OK
    )
    assert part.exit == WARNING
    assert any("gopher" in f.message and f.level == WARNING for f in part.findings)


# -- MTA-STS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ident"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=a", "a"),
        ("v=STSv1; id=" + "x" * 32, "x" * 32),
        ("v=STSv1; id=abc; ext=1", "abc"),
    ],
)
def test_sts_record(text: str, ident: str) -> None:
    assert parse_sts_record(text).id == ident


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("v=STSv1; id=" + "x" * 33, "1 to 32"),
        ("v=STSv1; id=a-b", "1 to 32"),
        ("v=STSv1; id=", "1 to 32"),
        ("v=STSv1;", "no field"),
        ("v=STSv1; id=a; id=b", "2 id"),
        ("v=STSv2; id=a", "does not begin"),
        ("id=a; v=STSv1", "does not begin"),
    ],
)
def test_sts_record_refused(text: str, why: str) -> None:
    with pytest.raises(_GrammarError, match=why):
        parse_sts_record(text)


POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"


@pytest.mark.parametrize(
    ("text", "mode", "max_age", "mx"),
    [
        (POLICY, "enforce", 604800, ("mx1.example.com", "*.example.net")),
        (
            "version: STSv1\nmode: testing\nmx: a.example.com\nmax_age: 0",
            "testing",
            0,
            ("a.example.com",),
        ),
        ("version: STSv1\nmode: none\nmax_age: 31557600\n", "none", 31557600, ()),
        (
            "mode:enforce\nversion:STSv1\nmax_age:86400\nmx:mx.example.com\nfoo: bar\n",
            "enforce",
            86400,
            ("mx.example.com",),
        ),
        (
            "version: STSv1 \nmode: enforce\t\n\nmx: mx.example.com\nmax_age: 1\n",
            "enforce",
            1,
            ("mx.example.com",),
        ),
    ],
)
def test_sts_policy(text: str, mode: str, max_age: int, mx: tuple[str, ...]) -> None:
    policy = parse_sts_policy(text)
    assert (policy.mode, policy.max_age, policy.mx) == (mode, max_age, mx)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("version: STSv2\nmode: enforce\nmx: a.example.com\nmax_age: 1", "not STSv1"),
        ("version: STSv1\nmode: strict\nmx: a.example.com\nmax_age: 1", "not enforce, testing"),
        ("version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 31557601", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: -1", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 12345678901", "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 86400", "without any mx"),
        ("version: STSv1\nmode: enforce\nmx: a..example.com\nmax_age: 1", "not a host name"),
        ("version: STSv1\nmode: enforce\nmx: *.*.example.com\nmax_age: 1", "not a host name"),
        ("version: STSv1\nmode: enforce\nmx: mx\nmax_age: 1", "not a host name"),
        ("mode: enforce\nmx: a.example.com\nmax_age: 1", "no version"),
        ("version: STSv1\nmode: enforce\nmode: none\nmx: a.example.com\nmax_age: 1", "2 mode"),
        ("version: STSv1\nmode enforce\nmx: a.example.com\nmax_age: 1", "line 2"),
        ("<html>hello</html>", "line 1"),
    ],
)
def test_sts_policy_refused(text: str, why: str) -> None:
    with pytest.raises(_GrammarError, match=why):
        parse_sts_policy(text)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mx1.example.com", "mx1.example.com.", True),
        ("MX1.Example.com", "mx1.example.COM", True),
        ("mx1.example.com", "mx2.example.com", False),
        ("*.example.com", "mx.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "mx.example.com.evil.net", False),
        ("*.example.com", "mxexample.com", False),
        ("*.mail.example.com", "a.mail.example.com.", True),
    ],
)
def test_mx_patterns(pattern: str, host: str, matches: bool) -> None:
    assert mx_pattern_matches(pattern, host) is matches


def test_uncovered_keeps_order() -> None:
    policy = parse_sts_policy(POLICY)
    hosts = ["mx1.example.com.", "b.example.net.", "mx2.example.com.", "a.b.example.net."]
    assert uncovered(policy, hosts) == ["mx2.example.com.", "a.b.example.net."]


def dane(host: str) -> HostTlsa:
    return HostTlsa(host, f"_25._tcp.{host}", "secure", frozenset({GOOD}))


def plain(host: str, state: str = "insecure") -> HostTlsa:
    return HostTlsa(host, f"_25._tcp.{host}", state)


STS = TxtAnswer("_mta-sts.example.com.", ("v=STSv1; id=20250601",))
URL = "https://mta-sts.example.com/.well-known/mta-sts.txt"


def policy(mode: str, *mx: str) -> str:
    return (
        "version: STSv1\nmode: "
        + mode
        + "\n"
        + "".join(f"mx: {m}\n" for m in mx)
        + "max_age: 604800\n"
    )


@pytest.mark.parametrize(
    ("record", "text", "error", "hosts", "level", "says"),
    [
        (
            STS,
            policy("enforce", "*.example.com"),
            None,
            [dane("mx1.example.com")],
            OK,
            "mode enforce",
        ),
        (
            TxtAnswer("_mta-sts.example.com.", ()),
            None,
            None,
            [dane("mx1.example.com")],
            OK,
            "not published",
        ),
        (
            TxtAnswer("_mta-sts.example.com.", ("v=STSv1; id=a", "v=STSv1; id=b")),
            None,
            None,
            [],
            WARNING,
            "2 v=STSv1",
        ),
        (
            TxtAnswer("_mta-sts.example.com.", ("v=STSv1; id=a-b",)),
            None,
            None,
            [],
            WARNING,
            "senders ignore",
        ),
        (TxtAnswer("_mta-sts.example.com.", (), "SERVFAIL"), None, None, [], UNKNOWN, "SERVFAIL"),
        (STS, None, "HTTP 301 redirect (x) refused", [], WARNING, "redirect"),
        (STS, "garbage", None, [], WARNING, "line 1"),
        (
            STS,
            policy("enforce", "mx1.example.com"),
            None,
            [dane("mx1.example.com"), plain("mx2.example.com")],
            WARNING,
            "mx2.example.com not in",
        ),
        (
            STS,
            policy("enforce", "other.example.net"),
            None,
            [dane("mx1.example.com"), plain("mx2.example.com")],
            CRITICAL,
            "no MX host matches",
        ),
        (
            STS,
            policy("testing", "other.example.net"),
            None,
            [dane("mx1.example.com")],
            WARNING,
            "mode testing",
        ),
        (STS, policy("none"), None, [dane("mx1.example.com")], OK, "mode none"),
    ],
)
def test_mta_sts_check(
    record: TxtAnswer,
    text: str | None,
    error: str | None,
    hosts: list[HostTlsa],
    level: int,
    says: str,
) -> None:
    part = check_mta_sts(record, text, error, hosts, url=URL)
    assert part.exit == level, part.findings
    assert any(says in f.message for f in part.findings), part.findings


def test_mta_sts_json_and_disagreements() -> None:
    hosts = [dane("mx1.example.com."), plain("mx2.example.com."), dane("mx3.example.com.")]
    part = check_mta_sts(
        STS, policy("enforce", "mx1.example.com", "mx2.example.com"), None, hosts, url=URL
    )
    doc = part.json()
    assert doc["record"] == {
        "name": "_mta-sts.example.com.",
        "txt": ["v=STSv1; id=20250601"],
        "id": "20250601",
    }
    assert doc["policy"]["mode"] == "enforce"
    assert doc["policy"]["mx"] == ["mx1.example.com", "mx2.example.com"]
    assert doc["uncovered_mx"] == ["mx3.example.com."]
    notes = doc["disagreements"]
    assert any("senders that do both use DANE" in n for n in notes)
    assert any(n.startswith("mx3.example.com.: DANE-protected but outside") for n in notes)
    assert any(n.startswith("mx2.example.com.: no usable secure TLSA") for n in notes)
    assert doc["status"] == "WARNING"


def test_short_max_age_is_a_note() -> None:
    text = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 3600\n"
    part = check_mta_sts(STS, text, None, [dane("mx1.example.com")], url=URL)
    assert part.exit == OK
    assert any("is short" in f.message for f in part.findings)


# -- coverage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "level", "warned"),
    [
        ([dane("mx1.example.com"), dane("mx2.example.com")], OK, []),
        ([plain("mx1.example.com"), plain("mx2.example.com")], OK, []),
        ([dane("mx1.example.com"), plain("mx2.example.com")], WARNING, ["mx2.example.com"]),
        (
            [dane("mx1.example.com"), plain("mx2.example.com", "bogus")],
            WARNING,
            ["mx2.example.com"],
        ),
        (
            [
                dane("mx1.example.com"),
                HostTlsa(
                    "mx2.example.com",
                    "_25._tcp.mx2.example.com",
                    "secure",
                    frozenset({PKIX_ONLY, SHORT}),
                ),
                HostTlsa("mx3.example.com", "_25._tcp.mx3.example.com", "secure"),
                HostTlsa("mx4.example.com", "_25._tcp.mx4.example.com", None, error="timed out"),
            ],
            WARNING,
            ["mx2.example.com", "mx3.example.com", "mx4.example.com"],
        ),
        ([], UNKNOWN, []),
    ],
)
def test_coverage(hosts: list[HostTlsa], level: int, warned: list[str]) -> None:
    part = check_coverage(hosts)
    assert part.exit == level
    assert [f.message.split(" ")[0] for f in part.findings if f.level == WARNING] == warned
    rows = part.json()["hosts"]
    assert [r["dane"] for r in rows] == [h.dane() for h in hosts]


def test_coverage_says_why() -> None:
    part = check_coverage(
        [
            dane("a.example.com"),
            HostTlsa("b.example.com", "_25._tcp.b.example.com", "secure", frozenset({PKIX_ONLY})),
            HostTlsa("c.example.com", "_25._tcp.c.example.com", "secure"),
            plain("d.example.com"),
        ]
    )
    text = " | ".join(f.message for f in part.findings)
    assert "only unusable records" in text
    assert "no TLSA records" in text
    assert "TLSA RRset insecure" in text
    assert "RFC 7672 section 2.2.1" in text


def test_pkix_usages_count_on_other_ports() -> None:
    host = HostTlsa(
        "imap.example.com", "_993._tcp.imap.example.com", "secure", frozenset({PKIX_ONLY})
    )
    assert not host.dane(25)
    assert host.dane(993)


# -- signing health ------------------------------------------------------------------------


def sig(
    days: float, tag: int = 1234, *, verified: bool | None = True, inception_days: float = -7
) -> Rrsig:
    return Rrsig(
        tag,
        13,
        "example.com.",
        NOW + dt.timedelta(days=inception_days),
        NOW + dt.timedelta(days=days),
        verified,
    )


def tlsa_rrset(*sigs: Rrsig) -> SignedRRset:
    return SignedRRset("_25._tcp.mx1.example.com.", "TLSA", "example.com.", True, sigs)


KEY = Dnskey(1234, 13, 257, ((2, "aa" * 32),))
DS = Ds(1234, 13, 2, "AA" * 32)


def zone(
    *sigs: Rrsig,
    keys: tuple[Dnskey, ...] = (KEY,),
    ds: tuple[Ds, ...] = (DS,),
    ds_error: str | None = None,
) -> ZoneKeys:
    return ZoneKeys(
        "example.com.",
        SignedRRset("example.com.", "DNSKEY", "example.com.", True, sigs),
        keys,
        ds,
        ds_error,
    )


@pytest.mark.parametrize(
    ("days", "warn_days", "level"),
    [
        (30, 7, OK),
        (7.5, 7, OK),
        (6.9, 7, WARNING),
        (6.9, 3, OK),
        (1.5, 7, WARNING),
        (0.9, 7, CRITICAL),
        (0.9, 0, CRITICAL),
        (-2, 7, CRITICAL),
    ],
)
def test_signing_thresholds(days: float, warn_days: int, level: int) -> None:
    part = check_signing([tlsa_rrset(sig(days))], [zone(sig(60))], now=NOW, warn_days=warn_days)
    assert part.exit == level, part.findings
    doc = part.json()
    assert doc["seconds_left"] == int(days * 86400)
    assert doc["rrsets"][0]["seconds_left"] == int(days * 86400)
    assert doc["zones"][0]["chain_ok"] is True


def test_earliest_signature_counts_and_dnskey_expiry_too() -> None:
    part = check_signing([tlsa_rrset(sig(20), sig(10, tag=99))], [zone(sig(3))], now=NOW)
    doc = part.json()
    assert doc["rrsets"][0]["seconds_left"] == 10 * 86400
    assert doc["zones"][0]["seconds_left"] == 3 * 86400
    assert doc["seconds_left"] == 3 * 86400
    assert doc["earliest_expiration"] == "2025-06-04T12:00:00Z"
    assert part.exit == WARNING
    assert any("example.com. DNSKEY" in f.message and f.level == WARNING for f in part.findings)


def test_signature_not_yet_valid_is_critical() -> None:
    part = check_signing([tlsa_rrset(sig(20, inception_days=0.5))], [zone(sig(20))], now=NOW)
    assert part.exit == CRITICAL
    assert any("not valid before" in f.message for f in part.findings)


@pytest.mark.parametrize(
    ("keys", "ds", "sigs", "ds_error", "level", "says", "chain_ok"),
    [
        ((KEY,), (DS,), (sig(30),), None, OK, "valid for", True),
        (
            (KEY,),
            (Ds(1234, 13, 2, "bb" * 32),),
            (sig(30),),
            None,
            CRITICAL,
            "chain of trust is broken",
            False,
        ),
        (
            (KEY,),
            (Ds(4321, 13, 2, "aa" * 32),),
            (sig(30),),
            None,
            CRITICAL,
            "chain of trust",
            False,
        ),
        (
            (KEY, Dnskey(77, 13, 256, ((2, "cc" * 32),))),
            (Ds(77, 13, 2, "cc" * 32),),
            (sig(30),),
            None,
            CRITICAL,
            "broken",
            False,
        ),  # the DS key signs nothing
        (
            (KEY,),
            (DS,),
            (sig(30, verified=False),),
            None,
            CRITICAL,
            "broken",
            False,
        ),  # a forged signature
        (
            (KEY,),
            (DS,),
            (sig(30, verified=None),),
            None,
            OK,
            "valid for",
            True,
        ),  # unverifiable algorithm: trusted
        ((KEY,), (), (sig(30),), None, WARNING, "no DS", False),
        ((KEY,), (), (sig(30),), "timed out", UNKNOWN, "timed out", False),
        ((), (DS,), (), None, CRITICAL, "no DNSKEY", False),
    ],
)
def test_ds_matching(
    keys: tuple[Dnskey, ...],
    ds: tuple[Ds, ...],
    sigs: tuple[Rrsig, ...],
    ds_error: str | None,
    level: int,
    says: str,
    chain_ok: bool,
) -> None:
    part = check_signing([], [zone(*sigs, keys=keys, ds=ds, ds_error=ds_error)], now=NOW)
    assert part.exit == level, part.findings
    assert any(says in f.message for f in part.findings), part.findings
    assert part.json()["zones"][0]["chain_ok"] is chain_ok


def test_unsigned_and_absent_rrsets() -> None:
    unsigned = SignedRRset("_25._tcp.mx.plain.test.", "TLSA", "plain.test.", True)
    absent = SignedRRset("_25._tcp.mx.example.com.", "TLSA", "example.com.", False)
    failed = SignedRRset("_25._tcp.mx.example.org.", "TLSA", None, False, error="timed out")
    part = check_signing([unsigned, absent, failed], [], now=NOW)
    assert part.exit == UNKNOWN
    assert [r["signed"] for r in part.json()["rrsets"]] == [False, False, False]
    assert part.json()["seconds_left"] is None
    assert check_signing([absent], [], now=NOW).exit == OK


# -- the fold ------------------------------------------------------------------------------


def part(level: int, cap: int | None = None) -> Part:
    return Part((Finding(level, "x"),), cap=cap)


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ((OK, OK, OK, OK), OK),
        ((WARNING, OK, OK, OK), WARNING),
        ((UNKNOWN, OK, OK, OK), WARNING),  # a failed TLS-RPT look-up: at most WARNING
        ((CRITICAL, OK, OK, OK), WARNING),
        ((OK, UNKNOWN, WARNING, OK), UNKNOWN),
        ((OK, UNKNOWN, OK, CRITICAL), CRITICAL),
        ((WARNING, WARNING, OK, OK), WARNING),
    ],
)
def test_fold(levels: tuple[int, int, int, int], expected: int) -> None:
    tlsrpt, sts, coverage, signing = levels
    posture = Posture(part(tlsrpt, WARNING), part(sts), part(coverage), part(signing))
    assert fold(posture.parts.values()) == expected
    doc = posture.json()
    assert doc["exit"] == expected
    assert set(doc) == {"tlsrpt", "mta_sts", "coverage", "signing", "status", "exit"}
    assert doc["tlsrpt"]["findings"][0] == {
        "level": tlsrpt,
        "status": ["OK", "WARNING", "CRITICAL", "UNKNOWN"][tlsrpt],
        "message": "x",
    }


def test_text_rendering() -> None:
    posture = Posture(
        check_tlsrpt(TxtAnswer("_smtp._tls.example.com.", ())),
        check_mta_sts(
            STS, policy("enforce", "*.example.com"), None, [dane("mx1.example.com")], url=URL
        ),
        check_coverage([dane("mx1.example.com")]),
        check_signing([tlsa_rrset(sig(3))], [], now=NOW),
    )
    text = posture.text()
    assert "WARNING  TLS-RPT\n  - no TLS-RPT record at _smtp._tls.example.com." in text
    assert "OK       MTA-STS" in text
    assert "note: DANE and MTA-STS both apply" in text
    assert (
        "WARNING  signing\n  - _25._tcp.mx1.example.com. TLSA: signatures expire in 3.0 days"
        in text
    )
    assert posture.exit == WARNING


def test_fold_into_verify_output() -> None:
    from rollover.core.verdicts import report_json, report_text

    posture = Posture(
        check_tlsrpt(TxtAnswer("_smtp._tls.example.com.", ())),
        check_mta_sts(TxtAnswer("_mta-sts.example.com.", ()), None, None, [], url=URL),
        check_coverage([dane("mx1.example.com.")]),
        check_signing([tlsa_rrset(sig(0.5))], [], now=NOW),
    )
    document, text = report_json([], ["a note"]), report_text([], ["a note"])
    assert document["exit"] == UNKNOWN  # no host reports
    merged, out = fold_into(document, text, posture)
    assert merged["exit"] == CRITICAL  # signatures under one day outrank the UNKNOWN
    assert merged["status"] == "CRITICAL"
    assert merged["notes"] == ["a note"]
    assert merged["signing"]["exit"] == CRITICAL
    assert merged["tlsrpt"]["exit"] == WARNING
    assert {"tlsrpt", "mta_sts", "coverage", "signing", "results"} <= set(merged)
    assert out.startswith("note: a note\nWARNING  TLS-RPT\n")
    assert out.endswith("\nCRITICAL\n")
    assert "UNKNOWN\n" not in out
