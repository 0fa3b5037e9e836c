"""The RFC 2136 adapter and publish/withdraw against the lab's real BIND."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import yaml

from rollover.core.association import parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish
from rollover.errors import ConflictError, ProviderError
from rollover.providers.rfc2136 import Rfc2136Provider, Rfc2136Settings
from rollover.providers.tsig import TsigKey
from tests.certs import key_pem, make_pki, pem
from tests.conftest import run_rollover
from tests.lab import TSIG_NAME, Lab
from tests.smtpserver import SmtpServer

pytestmark = pytest.mark.lab


def assoc(params: str = "3 1 1"):  # type: ignore[no-untyped-def]
    return parse_association(f"{params} {secrets.token_hex(32)}")


def provider(
    lab: Lab,
    *,
    name: str = TSIG_NAME,
    secret: bytes | None = None,
    port: int | None = None,
    timeout: float = 2.0,
    retries: int = 2,
    zone: str | None = None,
) -> Rfc2136Provider:
    key = TsigKey(
        name, "hmac-sha256", secret if secret is not None else base64.b64decode(lab.tsig_secret)
    )
    settings = Rfc2136Settings("127.0.0.1", port or lab.port, zone, key, timeout, retries)
    return Rfc2136Provider("lab", settings, sleep=lambda _s: None)


def owner() -> str:
    return f"_25._tcp.mx-{secrets.token_hex(4)}.example.test."


def test_add_replace_remove(lab: Lab) -> None:
    p = provider(lab)
    name = owner()
    assert p.zone_for(name) == "example.test."
    a, b = assoc(), assoc()
    empty = p.read(name)
    assert not empty.exists
    receipt = p.apply(Change(empty, TlsaRRset(name, 5, frozenset({a}))))
    p.wait(receipt, 10)
    assert p.read(name) == TlsaRRset(name, 5, frozenset({a}))
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 7, frozenset({a, b})))), 10)
    assert p.read(name) == TlsaRRset(name, 7, frozenset({a, b}))
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 7, frozenset({b})))), 10)
    assert p.read(name).records == {b}
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name))), 10)
    assert not p.read(name).exists
    # The secondary got every change through NOTIFY/IXFR.
    lab.wait_secondary_serial(lab.serial(lab.primary, "example.test."))


def test_one_connection_per_thread_to_the_primary(lab: Lab) -> None:
    """Reads, an update and its wait on one TCP connection; a connection the server (or a
    proxy) closed meanwhile is replaced before use, without an error or a retry's delay."""
    import threading
    import time

    from tests.dnsfaults import DnsFaults

    p = provider(lab)
    name = owner()
    p.read(name)
    sock = p._local.sock
    p.wait(p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()})))), 10)
    p.read(name)
    assert p._local.sock is sock  # the same connection all along
    seen: list[object] = []
    other = threading.Thread(target=lambda: (p.read(name), seen.append(p._local.sock)))
    other.start()
    other.join()
    assert seen[0] is not sock  # each thread its own
    assert len(p._open) == 2
    p.close()
    assert p._open == set()
    # A proxy that closes every connection after one answer: each message finds its
    # connection closed, opens another, and no attempt is lost to it.
    proxy = DnsFaults(("127.0.0.1", lab.port), lab.keyring).start()
    try:
        slow = provider(lab, port=proxy.port, retries=1)
        began = time.monotonic()
        for _ in range(5):
            slow.read(name)
        assert time.monotonic() - began < 2.5
        assert len([e for e in proxy.log if e.opcode == "QUERY"]) == 5
        slow.close()
    finally:
        proxy.stop()


def test_several_rrsets_of_one_zone_in_one_update(lab: Lab) -> None:
    """apply_many: one UPDATE (counted at a proxy before the primary), each RRset with its
    own prerequisite; a foreign edit at any one of them refuses the whole message."""
    from tests.dnsfaults import DnsFaults
    from tests.lab import PRIMARY

    proxy = DnsFaults((PRIMARY, lab.port), lab.keyring).start()
    try:
        p = provider(lab, port=proxy.port)
        names = [owner() for _ in range(3)]
        first = [Change(p.read(n), TlsaRRset(n, 5, frozenset({assoc()}))) for n in names]
        before = len(proxy.accepted_updates())
        receipts = p.apply_many(first)
        (update,) = proxy.accepted_updates()[before:]  # one message for three RRsets
        assert sorted(update.owners) == sorted(names)
        for receipt in receipts:
            p.wait(receipt, 10)
        assert [p.read(n) for n in names] == [c.after for c in first]

        # A foreign edit at the second name, after the tool read it.
        read = [p.read(n) for n in names]
        second = [Change(r, TlsaRRset(r.owner, 5, r.records | {assoc()})) for r in read]
        foreign = Change(read[1], TlsaRRset(names[1], 5, frozenset({assoc()})))
        p.wait(p.apply(foreign), 10)
        with pytest.raises(ConflictError, match="changed since it was read"):
            p.apply_many(second)
        assert p.read(names[0]) == read[0]  # nothing of the message was applied
        assert p.read(names[2]) == read[2]
        assert p.read(names[1]) == foreign.after
    finally:
        proxy.stop()


def test_compare_and_swap_conflict_changes_nothing(lab: Lab) -> None:
    p = provider(lab)
    name = owner()
    mine, theirs = assoc(), assoc()
    before = p.read(name)
    # Another writer creates the RRset after we read it.
    lab.update("example.test.", add=((name, 5, "TLSA", str(theirs)),))
    with pytest.raises(ConflictError, match="changed since it was read"):
        p.apply(plan_publish(before, {mine}, 5))
    assert p.read(name).records == {theirs}
    # And a value-dependent prerequisite catches a change to an existing RRset too.
    before = p.read(name)
    lab.update("example.test.", add=((name, 5, "TLSA", str(assoc())),))
    with pytest.raises(ConflictError):
        p.apply(plan_publish(before, {mine}, 5))
    assert mine not in p.read(name).records


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"secret": b"w" * 32}, "BADSIG"),
        ({"name": "no-such-key"}, "BADKEY"),
    ],
)
def test_tsig_failures_are_named(lab: Lab, kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    p = provider(lab, **kwargs)
    name = owner()
    with pytest.raises(ProviderError, match=needle):
        p.apply(Change(TlsaRRset(name), TlsaRRset(name, 5, frozenset({assoc()}))))
    assert not provider(lab).read(name).exists


def test_zone_without_updates_is_refused(lab: Lab) -> None:
    p = provider(lab, zone="inline.test.")
    name = "_25._tcp.mx.inline.test."
    with pytest.raises(ProviderError, match="REFUSED"):
        p.apply(Change(p.read(name), TlsaRRset(name, 5, frozenset({assoc()}))))


def test_name_outside_the_zone(lab: Lab) -> None:
    p = provider(lab, zone="example.test.")
    with pytest.raises(Exception, match="not in zone"):
        p.zone_for("_25._tcp.mx.plain.test.")


def test_unreachable_server(lab: Lab) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = provider(lab, port=port, timeout=0.5)
    with pytest.raises(ProviderError, match=r"connection failed|timed out"):
        p.read(owner())


def test_server_that_stops_answering_mid_way(lab: Lab) -> None:
    """Read succeeds, then the primary stops answering: a clear error; once it answers again a
    fresh plan converges. (An UPDATE already in the server's socket buffer when it stopped is
    applied when it resumes, so after a timeout the outcome is unknown until read back.)"""
    p = provider(lab, timeout=0.5, retries=2)
    name = owner()
    a = assoc()
    before = p.read(name)
    daemon = lab.daemons["primary"]
    daemon.pause()
    try:
        with pytest.raises(ProviderError, match="timed out"):
            p.apply(plan_publish(before, {a}, 5))
    finally:
        daemon.resume()
    after_fault = p.read(name)
    assert after_fault.records in (frozenset(), frozenset({a}))
    p.wait(p.apply(plan_publish(after_fault, {a}, 5)), 10)
    assert p.read(name).records == {a}


def test_cname_owner_is_refused(lab: Lab) -> None:
    name = owner()
    lab.update("example.test.", add=((name, 5, "CNAME", "_dane-shared.example.test."),))
    with pytest.raises(ProviderError, match="is a CNAME"):
        provider(lab).read(name)


@pytest.fixture
def lab_config(lab: Lab, tmp_path: Path) -> Path:
    host = f"mx-{secrets.token_hex(4)}.example.test"
    doc = {
        "providers": {
            "lab": {
                "type": "rfc2136",
                "server": "127.0.0.1",
                "port": lab.port,
                "tsig": {"name": TSIG_NAME, "secret_file": str(lab.secret_file)},
            }
        },
        "resolvers": [lab.resolver],
        "state_dir": str(tmp_path / "state"),
        "services": {
            "mx1": {"host": host, "provider": "lab", "records": ["3 1 1", "2 0 1"], "ttl": 5}
        },
    }
    path = tmp_path / "rollover.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def with_probe(lab_config: Path, endpoint: str) -> None:
    doc = yaml.safe_load(lab_config.read_text())
    doc["services"]["mx1"]["probe"] = {"connect": [endpoint], "starttls": "smtp", "timeout": 3}
    lab_config.write_text(yaml.safe_dump(doc))


def serve_cert(tmp_path: Path, name: str, pki) -> SmtpServer:  # type: ignore[no-untyped-def]
    chain, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    chain.write_bytes(pem(pki.leaf, pki.intermediate))
    key.write_bytes(key_pem(pki.leaf_key))
    return SmtpServer([(chain, key)]).start()


def test_publish_and_withdraw_commands(lab: Lab, lab_config: Path, tmp_path: Path) -> None:
    pki = make_pki("p256", tag="publish")
    cert = tmp_path / "full.pem"
    cert.write_bytes(pem(pki.leaf, pki.intermediate))
    server = serve_cert(tmp_path, "live", pki)
    with_probe(lab_config, server.endpoint)
    try:
        _publish_and_withdraw(lab, lab_config, tmp_path, cert)
    finally:
        server.stop()


def _publish_and_withdraw(lab: Lab, lab_config: Path, tmp_path: Path, cert: Path) -> None:
    host = yaml.safe_load(lab_config.read_text())["services"]["mx1"]["host"]
    name = f"_25._tcp.{host}."
    args = ["--config", str(lab_config)]
    dry = run_rollover("publish", "mx1", "--cert", str(cert), "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("\n+ ") + dry.stdout.startswith("+ ") == 2
    assert not provider(lab).read(name).exists  # a dry run sends nothing
    first = run_rollover("publish", "mx1", "--cert", str(cert), *args)
    assert first.returncode == 0, first.stderr
    records = provider(lab).read(name).records
    assert len(records) == 2
    again = run_rollover("publish", "mx1", "--cert", str(cert), *args)
    assert again.returncode == 0
    assert "nothing to change" in again.stdout
    from rollover.state.ownership import OwnershipStore

    assert OwnershipStore(str(tmp_path / "state")).owned(name) == records
    assert oct((tmp_path / "state" / "state.db").stat().st_mode & 0o777) == "0o600"
    # A foreign record appears; withdrawing ours would leave only it: refused without --force.
    foreign = assoc()
    lab.update("example.test.", add=((name, 5, "TLSA", str(foreign)),))
    shown = run_rollover("dns", "--owner", name, "-a", lab.primary, "-r", lab.resolver)
    assert str(foreign) in shown.stdout
    refused = run_rollover("withdraw", "mx1", "--cert", str(cert), *args)
    assert refused.returncode == 8
    assert "--force" in refused.stderr
    assert provider(lab).read(name).records == records | {foreign}
    plan = run_rollover("publish", "mx1", "--cert", str(cert), "--dry-run", *args)
    assert "foreign" in plan.stdout
    # Withdrawing the foreign record by name is allowed, and touches nothing else.
    by_data = run_rollover("withdraw", "mx1", "--data", foreign.hex, *args)
    assert by_data.returncode == 0, by_data.stderr
    assert provider(lab).read(name).records == records
    forced = run_rollover("withdraw", "mx1", "--cert", str(cert), "--force", *args)
    assert forced.returncode == 0, forced.stderr
    assert not provider(lab).read(name).exists
    assert OwnershipStore(str(tmp_path / "state")).owned(name) == frozenset()


def test_publish_conflict_exit_code(lab: Lab, lab_config: Path, tmp_path: Path) -> None:
    """A provider error and a bad secret surface as one line with their exit codes."""
    doc = yaml.safe_load(lab_config.read_text())
    bad_secret = tmp_path / "bad.secret"
    bad_secret.write_text(base64.b64encode(b"x" * 32).decode())
    bad_secret.chmod(0o600)
    doc["providers"]["lab"]["tsig"]["secret_file"] = str(bad_secret)
    lab_config.write_text(yaml.safe_dump(doc))
    cert = tmp_path / "c.pem"
    cert.write_bytes(pem(make_pki("p256", tag="conflict").leaf))
    result = run_rollover("publish", "mx1", "--cert", str(cert), "--config", str(lab_config))
    assert result.returncode == 5
    assert "BADSIG" in result.stderr
    assert "Traceback" not in result.stderr
    assert base64.b64encode(b"x" * 32).decode() not in result.stderr + result.stdout


def test_withdraw_never_removes_the_last_live_association(
    lab: Lab, lab_config: Path, tmp_path: Path
) -> None:
    live_pki, spare_pki = make_pki("p256", tag="live-guard"), make_pki("p256", tag="spare-guard")
    live_cert, spare_cert = tmp_path / "live.pem", tmp_path / "spare.pem"
    live_cert.write_bytes(pem(live_pki.leaf, live_pki.intermediate))
    spare_cert.write_bytes(pem(spare_pki.leaf, spare_pki.intermediate))
    server = serve_cert(tmp_path, "served", live_pki)
    with_probe(lab_config, server.endpoint)
    args = ["--config", str(lab_config)]
    host = yaml.safe_load(lab_config.read_text())["services"]["mx1"]["host"]
    name = f"_25._tcp.{host}."
    try:
        for cert in (live_cert, spare_cert):
            assert run_rollover("publish", "mx1", "--cert", str(cert), *args).returncode == 0
        before = provider(lab).read(name).records
        refused = run_rollover("withdraw", "mx1", "--cert", str(live_cert), *args)
        assert refused.returncode == 8, refused.stderr
        assert "the server presents" in refused.stderr
        assert provider(lab).read(name).records == before
        spare = run_rollover("withdraw", "mx1", "--cert", str(spare_cert), *args)
        assert spare.returncode == 0, spare.stderr
        assert len(provider(lab).read(name).records) == 2  # the live 3 1 1 and 2 0 1 stay
    finally:
        server.stop()
    # The server is gone: the guard cannot tell, so it refuses.
    assert run_rollover("publish", "mx1", "--cert", str(spare_cert), *args).returncode == 0
    blind = run_rollover("withdraw", "mx1", "--cert", str(spare_cert), *args)
    assert blind.returncode == 8
    assert "cannot tell" in blind.stderr
