"""Guards that look at the world, table-driven: the retire and verifying phases, the ageing
deadline on the boot's clock, encrypted staged keys, what a read of the RRset tells ownership."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rollover.core.association import parse_association
from rollover.core.phases import Action, Facts, Phase, apply_decision, decide
from rollover.engine.staging import load_staged, passphrase_source, read_passphrase
from rollover.errors import InputError
from rollover.state.ownership import OwnershipStore
from tests.certs import key_pem, make_pki, pem
from tests.test_phases import NEW, NOW, OLD, TA, rollover

BRIDGE = parse_association("3 1 2 " + "05" * 64)
SWITCH = parse_association("2 0 1 " + "06" * 32)


@pytest.mark.parametrize(
    ("phase", "records", "action", "next_phase"),
    [
        # The new associations deleted out of band during the deploy: put back, old kept.
        (Phase.RETIRING, {OLD, TA}, Action.REPUBLISH, Phase.RETIRING),
        (Phase.RETIRING, {OLD}, Action.REPUBLISH, Phase.RETIRING),
        (Phase.RETIRING, set(), Action.REPUBLISH, Phase.RETIRING),
        (Phase.RETIRING, {OLD, NEW, TA}, Action.RETIRE, Phase.RETIRING),
        (Phase.RETIRING, {NEW, TA}, Action.NONE, Phase.VERIFYING),
        (Phase.VERIFYING, {TA}, Action.REPUBLISH, Phase.VERIFYING),
        (Phase.VERIFYING, set(), Action.REPUBLISH, Phase.VERIFYING),
    ],
)
def test_never_retire_without_the_new(phase, records, action, next_phase) -> None:  # type: ignore[no-untyped-def]
    facts = Facts(provider_records=frozenset(records), authoritative_ok=True, resolvers_ok=True)
    decision = decide(rollover(phase), facts, NOW)
    assert decision.action is action
    assert decision.phase is next_phase


def test_the_switch_records_go_out_with_the_retire() -> None:
    """DANE-EE to DANE-TA: the final set is not yet published when the retire step begins."""
    r = rollover(Phase.RETIRING, final=frozenset({SWITCH}), bridge=frozenset({BRIDGE}))
    facts = Facts(provider_records=frozenset({OLD, NEW, TA, BRIDGE}))
    assert decide(r, facts, NOW).action is Action.RETIRE
    assert r.retiring == {OLD, NEW, TA, BRIDGE}
    done = Facts(provider_records=frozenset({SWITCH}))
    assert decide(r, done, NOW).phase is Phase.VERIFYING


def _aged(boot: str = "b1", boottime: float = 100.0) -> object:
    r = rollover(Phase.PROPAGATING)
    facts = Facts(
        provider_records=r.published,
        authoritative_ok=True,
        resolvers_ok=True,
        horizon=300,
        boot_id=boot,
        boottime=boottime,
    )
    decision = decide(r, facts, NOW)
    return apply_decision(r, decision, NOW)


def test_a_forward_wall_clock_step_does_not_shorten_the_ageing() -> None:
    r = _aged()
    assert r.aging_until_boottime == 100.0 + 600  # type: ignore[attr-defined]
    stepped = NOW + timedelta(hours=1)  # the wall clock jumped; the boot clock moved 10 s
    decision = decide(r, Facts(boot_id="b1", boottime=110.0), stepped)  # type: ignore[arg-type]
    assert decision.phase is Phase.AGING
    assert "stepped forward" in decision.message
    assert decision.waiting_until == stepped + timedelta(seconds=590)
    late = decide(r, Facts(boot_id="b1", boottime=701.0), stepped)  # type: ignore[arg-type]
    assert late.phase is Phase.DEPLOYING


def test_across_a_reboot_the_wall_clock_decides() -> None:
    r = _aged()
    after = NOW + timedelta(seconds=601)
    assert decide(r, Facts(boot_id="b2", boottime=5.0), after).phase is Phase.DEPLOYING  # type: ignore[arg-type]
    early = NOW + timedelta(seconds=599)
    assert decide(r, Facts(boot_id="b2", boottime=5.0), early).phase is Phase.AGING  # type: ignore[arg-type]


def test_a_wait_kept_across_the_ageing_keeps_its_boot_deadline() -> None:
    r = _aged()
    waiting = decide(r, Facts(boot_id="b1", boottime=200.0), NOW + timedelta(seconds=100))  # type: ignore[arg-type]
    kept = apply_decision(r, waiting, NOW + timedelta(seconds=100))  # type: ignore[arg-type]
    assert kept.aging_until_boottime == 700.0
    assert kept.waiting_until == r.waiting_until  # type: ignore[attr-defined]


def test_encrypted_staged_key_is_served_decrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki("p256", tag="guards-encrypted")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(pem(pki.leaf, pki.intermediate))
    key.write_bytes(key_pem(pki.leaf_key, passphrase=b"s3cret"))
    with pytest.raises(InputError, match="encrypted"):
        load_staged(str(chain), str(key), None)
    monkeypatch.setenv("MY_PASS", "s3cret")
    source = passphrase_source(None, "MY_PASS")
    assert source == "env:MY_PASS"  # the source, never the passphrase
    staged = load_staged(str(chain), str(key), read_passphrase(source))
    assert staged.encrypted
    assert b"ENCRYPTED" not in staged.key
    assert b"BEGIN PRIVATE KEY" in staged.key
    monkeypatch.delenv("MY_PASS")
    with pytest.raises(InputError, match=r"\$MY_PASS"):
        read_passphrase(source)
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    assert read_passphrase(passphrase_source(str(secret), "X")) == b"s3cret"
    assert "s3cret" not in (passphrase_source(str(secret), "X") or "")
    plain = load_staged(str(chain), str(key), b"s3cret")
    assert plain.key == staged.key


def test_an_association_seen_missing_loses_its_age(tmp_path: Path) -> None:
    store = OwnershipStore(str(tmp_path))
    owner = "_25._tcp.mx1."
    store.claim(owner, frozenset({NEW}), "mx1", NOW)
    store.confirm(owner, frozenset({NEW}), NOW)
    store.seen(owner, frozenset({NEW}), NOW + timedelta(hours=1))
    assert store.published_at(owner)[NEW] == NOW
    store.seen(owner, frozenset(), NOW + timedelta(hours=2))  # deleted by hand
    assert store.published_at(owner)[NEW] is None
    back = NOW + timedelta(hours=3)
    store.seen(owner, frozenset({NEW}), back)  # re-added: as young as this read
    assert store.published_at(owner)[NEW] == back


def test_resume_fields_round_trip_through_the_store(tmp_path: Path) -> None:
    from rollover.state.store import SqliteStateStore

    store = SqliteStateStore(str(tmp_path))
    r = store.create(
        replace(
            rollover(Phase.PUBLISHING),
            bridge=frozenset({BRIDGE}),
            final=frozenset({SWITCH}),
            notes=("a note",),
            passphrase_source="env:X",
            aging_boot_id="b1",
            aging_until_boottime=12.5,
        )
    )
    again = store.current("mx1")
    assert again is not None
    assert again.bridge == {BRIDGE}
    assert again.final == {SWITCH}
    assert again.notes == ("a note",)
    assert again.passphrase_source == "env:X"
    assert again.aging_until_boottime == 12.5
    assert r.version == again.version
