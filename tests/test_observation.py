"""The pure decisions of the observer: DNSSEC state, consistency, cache horizon, verdict."""

from __future__ import annotations

import pytest

from rollover.core.association import Association
from rollover.core.observation import (
    DnssecState,
    Observation,
    ResolverAnswer,
    ServerAnswer,
    cache_horizon,
    classify,
    disagreements,
    is_consistent,
    resolver_lag,
    verdict,
)
from rollover.core.params import TlsaParams

A = Association(TlsaParams(3, 1, 1), b"\x01" * 32)
B = Association(TlsaParams(3, 1, 1), b"\x02" * 32)


@pytest.mark.parametrize(
    ("rcode", "ad", "signed", "state"),
    [
        ("NOERROR", True, True, DnssecState.SECURE),
        ("NXDOMAIN", True, True, DnssecState.SECURE),
        ("SERVFAIL", False, True, DnssecState.BOGUS),
        ("SERVFAIL", False, False, DnssecState.BOGUS),
        ("NOERROR", False, False, DnssecState.INSECURE),
        ("NXDOMAIN", False, False, DnssecState.INSECURE),
        ("NOERROR", False, True, DnssecState.INDETERMINATE),
    ],
)
def test_classify(rcode: str, ad: bool, signed: bool, state: DnssecState) -> None:
    assert classify(rcode, ad, signed) is state


SECURE_ONLY = {DnssecState.SECURE}


@pytest.mark.parametrize(
    ("answer", "allowed", "serves", "reason"),
    [
        (ResolverAnswer("r", DnssecState.SECURE), SECURE_ONLY, True, None),
        (ResolverAnswer("r", DnssecState.SECURE), SECURE_ONLY, False, "still serves the old RRset"),
        (ResolverAnswer("r", error="timed out"), SECURE_ONLY, True, "timed out"),
        (
            ResolverAnswer("r", DnssecState.BOGUS, "SERVFAIL", extended_errors=("EDE 6: sig",)),
            SECURE_ONLY,
            True,
            "bogus: SERVFAIL, EDE 6: sig",
        ),
        (ResolverAnswer("r", DnssecState.BOGUS, "SERVFAIL"), SECURE_ONLY, True, "bogus: SERVFAIL"),
        (ResolverAnswer("r", DnssecState.INSECURE), SECURE_ONLY, True, "insecure, not validated"),
        (
            ResolverAnswer("r", DnssecState.INSECURE),
            {DnssecState.SECURE, DnssecState.INSECURE},
            True,
            None,
        ),
    ],
)
def test_resolver_lag(
    answer: ResolverAnswer, allowed: set[DnssecState], serves: bool, reason: str | None
) -> None:
    assert resolver_lag(answer, allowed, serves) == reason


def srv(address: str = "a", **kw: object) -> ServerAnswer:
    defaults: dict[str, object] = {
        "serial": 1,
        "exists": True,
        "ttl": 300,
        "records": frozenset({A}),
    }
    defaults.update(kw)
    return ServerAnswer(address, **defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answers", "consistent"),
    [
        ([srv("a"), srv("b")], True),
        ([srv("a"), srv("b", serial=2)], True),  # same RRset, serial lag alone is reported apart
        ([srv("a"), srv("b", records=frozenset({A, B}))], False),
        ([srv("a"), srv("b", error="timed out")], False),
        (
            [
                srv("a", exists=False, records=frozenset()),
                srv("b", exists=False, records=frozenset()),
            ],
            True,
        ),
        ([srv("a"), srv("b", exists=False, records=frozenset())], False),
        ([], False),
    ],
)
def test_is_consistent(answers: list[ServerAnswer], consistent: bool) -> None:
    assert is_consistent(answers) is consistent


def test_disagreements_name_each_server() -> None:
    lines = disagreements(
        [
            srv("p", serial=7, records=frozenset({A, B})),
            srv("s", serial=6),
            srv("x", error="timed out after 4 s"),
        ]
    )
    assert "x: timed out after 4 s" in lines
    assert "s: serial 6 is behind 7" in lines
    assert "s: serves a different TLSA RRset than p" in lines
    assert not [line for line in lines if line.startswith("p:")]


@pytest.mark.parametrize(
    ("answers", "horizon"),
    [
        ([srv(ttl=300)], 300),
        ([srv(ttl=60, rrsig_original_ttl=3600)], 3600),  # a lowered TTL: the signature remembers
        ([srv(ttl=300), srv(ttl=900)], 900),
        ([srv(exists=False, records=frozenset(), ttl=None, negative_ttl=120)], 120),
        ([srv(exists=False, records=frozenset(), negative_ttl=120), srv(ttl=30)], 120),
        ([srv(error="timed out", ttl=9999)], 0),
        ([], 0),
    ],
)
def test_cache_horizon(answers: list[ServerAnswer], horizon: int) -> None:
    assert cache_horizon(answers) == horizon


def obs(
    auth: list[ServerAnswer], resolvers: list[ResolverAnswer], error: str | None = None
) -> Observation:
    return Observation(
        "_25._tcp.mx.", "example.", "_25._tcp.mx.", (), tuple(auth), tuple(resolvers), error
    )


SECURE = ResolverAnswer("r", DnssecState.SECURE, ad=True, records=frozenset({A}))


@pytest.mark.parametrize(
    ("observation", "exit_code", "needle"),
    [
        (obs([srv()], [SECURE]), 0, None),
        (obs([srv()], [ResolverAnswer("r", DnssecState.INSECURE)]), 1, "insecure"),
        (obs([srv()], [ResolverAnswer("r", DnssecState.INDETERMINATE)]), 1, "indeterminate"),
        (
            obs(
                [srv()],
                [
                    ResolverAnswer(
                        "r", DnssecState.BOGUS, rcode="SERVFAIL", extended_errors=("EDE 6: bogus",)
                    )
                ],
            ),
            2,
            "EDE 6",
        ),
        (obs([srv("p"), srv("s", serial=0)], [SECURE]), 2, "behind"),
        (obs([srv("p"), srv("s", error="timed out")], [SECURE]), 2, "timed out"),
        (obs([srv()], [ResolverAnswer("r", error="timed out")]), 1, "timed out"),
        (
            obs(
                [srv()], [ResolverAnswer("r", DnssecState.SECURE, ad=True, records=frozenset({B}))]
            ),
            1,
            "different RRset",
        ),
        (
            obs(
                [srv(exists=False, records=frozenset())],
                [ResolverAnswer("r", DnssecState.SECURE, ad=True)],
            ),
            1,
            "no TLSA records",
        ),
        (obs([srv(error="x")], [ResolverAnswer("r", error="y")]), 3, "no authoritative"),
        (obs([], [], error="cannot find the zone"), 3, "cannot find"),
    ],
)
def test_verdict(observation: Observation, exit_code: int, needle: str | None) -> None:
    result = verdict(observation)
    assert result.exit == exit_code
    assert result.status == ["OK", "WARNING", "CRITICAL", "UNKNOWN"][exit_code]
    if needle is None:
        assert result.reasons == ()
    else:
        assert any(needle in r for r in result.reasons), result.reasons
