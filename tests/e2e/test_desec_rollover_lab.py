"""A whole rollover through the CLI (separate processes) against the strict local deSEC
(tests/desec_fake.py, a thread of this test process on loopback), a DANE sender reading the
RRset through a cache that honours the TTL deSEC publishes, the way a resolver does.

What it shows: the domain's ``minimum_ttl`` (2 s) raises the configured TTL (1 s) and the
ageing waits on the published one; a write that deSEC throttles waits (Retry-After) instead
of failing; a concurrent edit landing right after the retiring write is reported (exit 6, one
line) and the other party's record survives to the end; zero sender failures; the token is in
no output and no state file. Needs ``"desec": "rollover.providers.desec"`` in
``rollover/providers/__init__.py`` BUILTIN."""

from __future__ import annotations

import http.client
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rollover.core.association import Association, parse_association
from rollover.core.material import spki_der
from tests.desec_fake import DESEC_RATES, DesecFake
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.rollover_env import Sender, ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab

TOKEN = "Cli-token-" + secrets.token_urlsafe(12)
SENDER_TOKEN = "Sender-token-" + secrets.token_urlsafe(12)
FOREIGN = parse_association("2 0 1 " + "fe" * 32)


@dataclass
class DesecSender(Sender):
    """A sender whose resolver caches what deSEC serves for the RRset's TTL."""

    fake: DesecFake | None = None
    domain: str = ""
    subname: str = ""
    _cached: frozenset[Association] | None = None
    _expires: float = 0.0

    def _records(self) -> frozenset[Association] | None:
        if self._cached is None or time.monotonic() >= self._expires:
            assert self.fake is not None
            port = int(self.fake.url.split(":")[2].split("/")[0])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(
                    "GET",
                    f"/api/v1/domains/{self.domain}/rrsets/{self.subname}/TLSA/",
                    headers={"Authorization": f"Token {SENDER_TOKEN}"},
                )
                response = conn.getresponse()
                body = json.loads(response.read() or b"null")
            finally:
                conn.close()
            if response.status == 404:
                return None
            assert response.status == 200, (response.status, body)
            self._cached = frozenset(parse_association(v) for v in body["records"])
            self._expires = time.monotonic() + int(body["ttl"])
        return self._cached


def api(fake: DesecFake, method: str, path: str, body: object) -> int:
    """A write by another deSEC client of the same account (it counts against the limits)."""
    port = int(fake.url.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            method,
            "/api/v1" + path,
            body=json.dumps(body),
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class NoLab:
    primary = secondary = resolver = sender_resolver = "127.0.0.1:1"
    port = 1

    def __init__(self, tmp_path: Path) -> None:
        self.secret_file = tmp_path / "unused"


def test_desec_rollover_with_throttling_and_a_concurrent_edit(tmp_path: Path) -> None:
    domain = f"d{secrets.token_hex(3)}.example"
    rates = dict(DESEC_RATES)
    rates["dns_api_per_domain_expensive"] = [(1, 8), (15, 60), (100, 3600), (300, 86400)]
    rates["dns_api_cheap"] = [(10, 1), (600, 60)]  # the sender and the CLI read a lot
    fake = DesecFake(rates=rates).start()
    fake.add_domain(domain, minimum_ttl=2)
    fake.add_token(TOKEN)
    fake.add_token(SENDER_TOKEN, writable=set())
    token_file = tmp_path / "desec.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = ServiceEnv(NoLab(tmp_path), tmp_path, host=f"mx1.{domain}")  # type: ignore[arg-type]
    env.start_server()
    subname = env.owner[: -len(domain) - 2]
    other = [{"subname": "_443._tcp.www", "type": "TLSA", "ttl": 3600, "records": [str(FOREIGN)]}]
    sender: DesecSender | None = None
    try:
        env.write_config()
        doc = yaml.safe_load(env.config.read_text())
        doc["providers"] = {
            "desec": {
                "type": "desec",
                "token_file": str(token_file),
                "api_url": fake.url,
                "timeout": 5,
                "max_wait": 30,
            }
        }
        doc["resolvers"] = []
        service = doc["services"][env.name]
        service.update(provider="desec", observe_via="provider", ttl=1)
        del service["authoritative"]
        env.config.write_text(yaml.safe_dump(doc))
        checked = env.rollover("config", "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain))
        assert published.returncode == 0, published.stderr
        old = rec("3 1 1", env.pki.leaf)
        new = rec("3 1 1", env.next_leaf)
        assert fake.rrset(domain, subname) == (2, {str(old)})  # TTL 1 raised to minimum_ttl 2
        sender = DesecSender(
            "", env.owner, env.host, env.endpoint, fake=fake, domain=domain, subname=subname
        ).start()
        wait_sender_ready(sender)

        # 1. The publish of ``start`` comes within 8 s of the last write: deSEC throttles it
        #    (1 write per 8 s here); the CLI waits the Retry-After and goes on, exit 0.
        dry = env.start_rollover("--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "TTL 1 raised to 2 by desec (its minimum TTL): the waits count 2 s" in dry.stdout
        while api(fake, "POST", f"/domains/{domain}/rrsets/", other) == 429:  # another tool
            time.sleep(0.5)
        before = len(fake.writes(domain)) - 1
        started = env.start_rollover()
        assert started.returncode == 0, started.stdout + started.stderr
        sent = [(w.method, w.status) for w in fake.writes(domain)[before:]]
        assert sent[:3] == [("POST", 201), ("PATCH", 429), ("PATCH", 200)], sent
        publish_at = fake.writes(domain)[before + 2].at

        # 2. The other party adds a record right after the retiring write: the read-back sees
        #    it (exit 6, one line), nothing of it is undone, the rollover still completes.
        fake.inject(
            kind="edit",
            when="after-write",
            method="PATCH",
            domain=domain,
            subname=subname,
            ttl=2,
            records=[str(new), str(FOREIGN)],
        )
        codes = []
        deadline = time.monotonic() + 90
        while True:
            result = env.rollover("advance", env.name)
            codes.append(result.returncode)
            if result.returncode not in (0, 9):
                assert len(result.stderr.strip().splitlines()) == 1, result.stderr
                assert "Traceback" not in result.stderr
            status = json.loads(env.rollover("status", env.name, "--json").stdout)
            if status["phase"] == "done":
                break
            assert status["phase"] not in ("failed", "aborted"), status
            assert time.monotonic() < deadline, (status, codes)
            time.sleep(0.3)
        assert 6 in codes, codes
        assert fake.pending() == 0
        time.sleep(2.5)  # one more TTL of the sender after the end
        assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    finally:
        if sender is not None:
            sender.stop()
        env.stop_server()
        fake.stop()

    assert sender.failures == []
    assert sender.checks > 5
    assert env.leaks(TOKEN) == []
    throttled = [w for w in fake.writes(domain) if w.status == 429]
    assert throttled, "no write was throttled: the test did not test the wait"
    # Never deployed before the new association aged 2 x the TTL deSEC published (2 s), not
    # 2 x the configured 1 s.
    deployed_at = env.deploy_key.stat().st_mtime
    wall_publish = time.time() - (time.monotonic() - publish_at)
    assert deployed_at >= wall_publish + 2 * 2 - 0.2
    final = fake.rrset(domain, subname)
    assert final == (2, {str(new), str(FOREIGN)})  # the other party's record survived
    assert fake.rrset(domain, "_443._tcp.www") == (3600, {str(FOREIGN)})


def test_several_services_of_one_domain_go_out_as_one_bulk_request(tmp_path: Path) -> None:
    """advance --all: two rollovers in one deSEC domain due in the same tick, one bulk PATCH,
    then both carried to done by the ordinary advance."""
    import rollover.providers as provider_registry
    from rollover.config import load_config
    from rollover.engine.batching import batch_provider_changes
    from rollover.engine.build import build_engine
    from rollover.engine.staging import load_staged

    domain = f"b{secrets.token_hex(3)}.example"
    rates = {**DESEC_RATES, "dns_api_cheap": [(100, 1), (6000, 60)]}
    fake = DesecFake(rates=rates).start()
    fake.add_domain(domain, minimum_ttl=1)
    fake.add_token(TOKEN)
    token_file = tmp_path / "desec.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    envs = [
        ServiceEnv(
            NoLab(tmp_path),  # type: ignore[arg-type]
            tmp_path / f"s{i}",
            name=f"mx{i}",
            host=f"mx{i}.{domain}",
        )
        for i in range(2)
    ]
    try:
        services = {}
        for env in envs:
            env.start_server()
            env.write_config()
            service = yaml.safe_load(env.config.read_text())["services"][env.name]
            service.update(provider="desec", observe_via="provider", ttl=1)
            del service["authoritative"]
            services[env.name] = service
        doc = {
            "providers": {
                "desec": {"type": "desec", "token_file": str(token_file), "api_url": fake.url}
            },
            "state_dir": str(tmp_path / "state"),
            "services": services,
        }
        config = tmp_path / "rollover.yaml"
        config.write_text(yaml.safe_dump(doc))
        for env in envs:
            env.config = config
            while (
                env.rollover("publish", env.name, "--cert", str(env.deploy_chain)).returncode != 0
            ):
                time.sleep(0.5)  # 2 writes/s per domain: a second one may wait (max_wait)
        cfg = load_config(str(config), provider_registry.settings_parser)
        engines = [build_engine(cfg, env.name) for env in envs]
        for engine, env in zip(engines, envs, strict=True):
            engine.start(load_staged(str(env.staged_chain), str(env.staged_key), None))
        before = len(fake.writes(domain))
        assert batch_provider_changes(engines, lambda _l: None) == 1
        batch = [w for w in fake.writes(domain)[before:] if w.status != 429]  # 429: waited
        assert [(w.method, w.status) for w in batch] == [("PATCH", 200)]
        assert sorted(i["subname"] for i in batch[0].body) == ["_25._tcp.mx0", "_25._tcp.mx1"]
        deadline = time.monotonic() + 60
        while True:
            run = envs[0].rollover("advance", "--all")
            assert run.returncode in (0, 9), run.stderr
            phases = [
                json.loads(env.rollover("status", env.name, "--json").stdout)["phase"]
                for env in envs
            ]
            if phases == ["done", "done"]:
                break
            assert time.monotonic() < deadline, phases
            time.sleep(0.3)
        for env in envs:
            assert fake.rrset(domain, f"_25._tcp.{env.name}") == (
                1,
                {str(rec("3 1 1", env.next_leaf))},
            )
        assert all(TOKEN not in text for env in envs for text in env.transcript)
    finally:
        for env in envs:
            env.stop_server()
        fake.stop()
