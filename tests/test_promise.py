"""The rollover promise, table-driven: every plan keeps every sender working in every window."""

from __future__ import annotations

import pytest
from cryptography import x509

from rollover.core.association import Association
from rollover.core.params import TlsaParams, parse_params
from rollover.core.promise import (
    Context,
    RolloverPlan,
    Window,
    associations_for,
    exposures,
    plan_rollover,
    starting_point,
    violations,
)
from rollover.errors import PreconditionError
from tests.certs import NOW, make_cert, make_key, make_pki
from tests.test_matching import rec

HOST = "mx1.example.test"
PKI = make_pki("p256", tag="promise", host=HOST)
OTHER_CA = make_pki("p256", tag="promise-other-ca", host=HOST)
NEXT_KEY = make_key("p256", "promise-next")
NEXT_LEAF = make_cert(HOST, NEXT_KEY, (PKI.intermediate, PKI.intermediate_key), dns_names=(HOST,))
OLD_CHAIN = (PKI.leaf, PKI.intermediate)
NEW_CHAIN = (NEXT_LEAF, PKI.intermediate)
NEW_CA_CHAIN = (OTHER_CA.leaf, OTHER_CA.intermediate)  # another CA and key
BACKUP = make_key("p256", "promise-backup")
BACKUP_LEAF = make_cert(HOST, BACKUP, dns_names=(HOST,))


def ctx(*params: str) -> Context:
    return Context(port=25, host=HOST, now=NOW, configured=tuple(parse_params(p) for p in params))


def of(chain: tuple[x509.Certificate, ...], *params: str) -> frozenset[Association]:
    found: frozenset[Association] = frozenset()
    for p in params:
        found |= associations_for(chain, parse_params(p))
    return found


def plan(
    before: frozenset[Association],
    params: tuple[str, ...],
    new_chain: tuple[x509.Certificate, ...] = NEW_CHAIN,
    old_chains: tuple[tuple[x509.Certificate, ...], ...] = (OLD_CHAIN,),
) -> RolloverPlan:
    return plan_rollover(before, old_chains, new_chain, of(new_chain, *params), ctx(*params))


def params_of(records: frozenset[Association], chain: tuple[x509.Certificate, ...]) -> set[str]:
    mine = {a for a in records if any(a in of(chain, p) for p in ALL_PARAMS)}
    return {str(a.params) for a in mine}


ALL_PARAMS = ("3 1 1", "3 1 2", "3 0 1", "2 0 1", "2 1 1", "2 0 2")

# (name, RRset before, configured params, new chain,
#  the transitional RRset's shapes: old chain / new chain,  the final RRset's shapes: new chain)
CASES = [
    ("same shape", of(OLD_CHAIN, "3 1 1"), ("3 1 1",), NEW_CHAIN, {"3 1 1"}, {"3 1 1"}, {"3 1 1"}),
    # 1. First publication: the current key's association beside the new one.
    ("empty owner", frozenset(), ("3 1 1",), NEW_CHAIN, {"3 1 1"}, {"3 1 1"}, {"3 1 1"}),
    # 2. Adding a matching type: for the current key too (RFC 7671 section 8.3).
    (
        "add 3 1 2",
        of(OLD_CHAIN, "3 1 1"),
        ("3 1 1", "3 1 2"),
        NEW_CHAIN,
        {"3 1 1", "3 1 2"},
        {"3 1 1", "3 1 2"},
        {"3 1 1", "3 1 2"},
    ),
    # 3. Removing a matching type: the new key keeps it until caches dropped the RRset.
    (
        "remove 3 1 2",
        of(OLD_CHAIN, "3 1 1", "3 1 2"),
        ("3 1 1",),
        NEW_CHAIN,
        {"3 1 1", "3 1 2"},
        {"3 1 1", "3 1 2"},
        {"3 1 1"},
    ),
    # 4. DANE-EE to DANE-TA (RFC 7671 section 8.2): a transitional 3 1 1, then the switch.
    ("EE to TA", of(OLD_CHAIN, "3 1 1"), ("2 0 1",), NEW_CA_CHAIN, {"3 1 1"}, {"3 1 1"}, {"2 0 1"}),
    ("TA to EE", of(OLD_CHAIN, "2 0 1"), ("3 1 1",), NEW_CA_CHAIN, {"2 0 1"}, {"2 0 1"}, {"3 1 1"}),
    (
        "EE to EE + TA, same CA",
        of(OLD_CHAIN, "3 1 1"),
        ("3 1 1", "2 0 1"),
        NEW_CHAIN,
        {"3 1 1"},
        {"3 1 1"},
        {"3 1 1", "2 0 1"},
    ),
    ("empty owner to TA", frozenset(), ("2 0 1",), NEW_CA_CHAIN, {"2 0 1"}, {"2 0 1"}, {"2 0 1"}),
]


@pytest.mark.parametrize(
    ("before", "params", "new_chain", "r1_old", "r1_new", "r2_new"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plans_keep_the_rule(before, params, new_chain, r1_old, r1_new, r2_new) -> None:  # type: ignore[no-untyped-def]
    p = plan(before, params, new_chain)
    assert params_of(p.transitional, OLD_CHAIN) == r1_old
    assert params_of(p.transitional, new_chain) == r1_new
    assert params_of(p.final_rrset, new_chain) == r2_new
    assert not params_of(p.final_rrset, OLD_CHAIN) - params_of(p.final_rrset, new_chain)
    assert p.final_rrset.isdisjoint(before - p.final_rrset)
    assert violations(exposures(p, [OLD_CHAIN], new_chain), ctx(*params)) == []


def test_a_foreign_3_1_2_of_the_current_key_gets_one_for_the_new_key() -> None:
    """Shape 3: the operator's own 3 1 2 beside the tool's 3 1 1."""
    before = of(OLD_CHAIN, "3 1 1", "3 1 2")
    p = plan(before, ("3 1 1",))
    assert of(NEW_CHAIN, "3 1 2") <= p.new
    assert p.final_rrset == of(NEW_CHAIN, "3 1 1")


def test_the_naive_plan_fails_each_shape() -> None:
    """The rule sees what the old planner did: new records beside the old, nothing else."""
    cases = [
        (frozenset(), ("3 1 1",)),
        (of(OLD_CHAIN, "3 1 1"), ("3 1 1", "3 1 2")),
        (of(OLD_CHAIN, "3 1 1", "3 1 2"), ("3 1 1",)),
        (of(OLD_CHAIN, "3 1 1"), ("2 0 1",)),
    ]
    for before, params in cases:
        chain = NEW_CA_CHAIN if params == ("2 0 1",) else NEW_CHAIN
        new = of(chain, *params)
        naive = RolloverPlan(before, new, frozenset(), new, before)
        assert violations(exposures(naive, [OLD_CHAIN], chain), ctx(*params)), (before, params)


def test_several_current_chains_all_get_bridged() -> None:
    rsa = make_pki("rsa2048", tag="promise-rsa", host=HOST)
    p = plan(frozenset(), ("3 1 1",), old_chains=(OLD_CHAIN, (rsa.leaf, rsa.intermediate)))
    assert of((rsa.leaf, rsa.intermediate), "3 1 1") <= p.bridge
    assert of(OLD_CHAIN, "3 1 1") <= p.bridge


def test_a_starting_point_that_already_fails_is_refused() -> None:
    """Shape 9: a 3 1 2 of another key hides the matching 3 1 1 (digest agility)."""
    before = of(OLD_CHAIN, "3 1 1") | frozenset({rec("3 1 2", BACKUP_LEAF)})
    assert starting_point(before, [OLD_CHAIN], ctx("3 1 1"))
    with pytest.raises(PreconditionError, match="already fails"):
        plan(before, ("3 1 1",))


def test_unusable_records_do_not_count() -> None:
    malformed = Association(TlsaParams(3, 1, 1), b"\x01" * 31)
    before = of(OLD_CHAIN, "3 1 1") | {malformed}
    assert starting_point(before, [OLD_CHAIN], ctx("3 1 1")) == []
    p = plan(before, ("3 1 1",))
    assert malformed in p.final_rrset  # foreign, untouched


def test_a_plan_without_a_way_is_refused() -> None:
    """DANE-TA for a new chain that carries no issuer: nothing can carry it."""
    lonely = make_cert(HOST, NEXT_KEY, dns_names=(HOST,))
    with pytest.raises(PreconditionError):
        plan(of(OLD_CHAIN, "3 1 1"), ("2 0 1",), new_chain=(lonely,))


def test_each_configured_parameter_set_on_its_own() -> None:
    """201 of another CA beside a matching 311: OpenSSL accepts, the per-set rule does not."""
    rrset = of(OLD_CHAIN, "3 1 1") | of(NEW_CA_CHAIN, "2 0 1")
    window = [Window("w", (rrset,), (OLD_CHAIN,))]
    assert violations(window, ctx("3 1 1")) == []
    assert violations(window, ctx("3 1 1", "2 0 1"))


def test_dane_ta_never_matches_the_leaf_itself() -> None:
    self_signed = make_cert(HOST, BACKUP, dns_names=(HOST,), ca=True)
    rrset = frozenset({rec("2 0 1", self_signed)})
    assert violations([Window("w", (rrset,), ((self_signed,),))], ctx("2 0 1"))


def test_a_shared_rrset_keeps_the_other_hosts_matching() -> None:
    """tlsa_owner: mx1 and mx2 share one RRset through CNAMEs, each with its own key."""
    mx2 = make_pki("p256", tag="promise-mx2", host=HOST)
    other = (mx2.leaf, mx2.intermediate)
    before = of(OLD_CHAIN, "3 1 1") | of(other, "3 1 1")
    p = plan_rollover(
        before, [OLD_CHAIN], NEW_CHAIN, of(NEW_CHAIN, "3 1 1"), ctx("3 1 1"), steady=[other]
    )
    assert of(other, "3 1 1") <= p.final_rrset
    assert of(OLD_CHAIN, "3 1 1").isdisjoint(p.final_rrset)
    assert violations(exposures(p, [OLD_CHAIN], NEW_CHAIN, [other]), ctx("3 1 1")) == []
    # First publication at a shared name: DANE starts for mx2 too, so mx2 is bridged and kept.
    empty = plan_rollover(
        frozenset(), [OLD_CHAIN], NEW_CHAIN, of(NEW_CHAIN, "3 1 1"), ctx("3 1 1"), steady=[other]
    )
    assert of(other, "3 1 1") <= empty.transitional
    assert of(other, "3 1 1") <= empty.final_rrset
    # A shared key: the old record is mx2's too, and it stays.
    shared_key = plan_rollover(
        of(OLD_CHAIN, "3 1 1"),
        [OLD_CHAIN],
        NEW_CHAIN,
        of(NEW_CHAIN, "3 1 1"),
        ctx("3 1 1"),
        steady=[OLD_CHAIN],
    )
    assert of(OLD_CHAIN, "3 1 1") <= shared_key.final_rrset


def test_ta_back_to_ee_retires_the_shared_issuers_2_0_1() -> None:
    """From ["2 0 1"] to ["3 1 1"] under the same CA: the 2 0 1 carries the deploy, then goes."""
    p = plan(of(OLD_CHAIN, "2 0 1"), ("3 1 1",))
    assert p.final_rrset == of(NEW_CHAIN, "3 1 1")
    assert of(NEW_CHAIN, "2 0 1") <= p.transitional
