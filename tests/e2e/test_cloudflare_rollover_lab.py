"""A whole rollover through the CLI with the Cloudflare adapter against the strict fake of the
API (tests/cloudflare_fake.py, in a thread of this process on loopback), with the service's
own faults injected on the way, and a DANE sender whose resolver caches what the API serves
for the RRset's TTL, the way a resolver caches what Cloudflare's edge serves.

Needs ``"cloudflare": "rollover.providers.cloudflare"`` in rollover.providers.BUILTIN."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rollover.core.association import Association, parse_association
from rollover.core.material import spki_der
from tests.cloudflare_fake import DNS_READ, ZONE_READ, FakeCloudflare
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.rollover_env import Sender, ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab

FOREIGN = parse_association("3 1 1 " + "f0" * 32)  # another writer's record


@dataclass
class CloudflareSender(Sender):
    """A sender whose resolver caches what the API serves for the RRset's TTL."""

    api: str = ""
    zone_id: str = ""
    token: str = ""
    _cached: frozenset[Association] | None = None
    _expires: float = 0.0

    def _records(self) -> frozenset[Association] | None:
        if self._cached is None or time.monotonic() >= self._expires:
            response = httpx.get(
                f"{self.api}/zones/{self.zone_id}/dns_records",
                params={"name.exact": self.owner.rstrip("."), "type": "TLSA", "per_page": 100},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=3,
            )
            if response.status_code != 200:
                return self._cached  # a resolver keeps serving what it has (stale)
            records = response.json()["result"]
            if not records:
                return None
            self._cached = frozenset(parse_association(r["content"].lower()) for r in records)
            self._expires = time.monotonic() + max(int(r["ttl"]) for r in records)
        return self._cached


class NoLab:
    primary = secondary = resolver = sender_resolver = "127.0.0.1:1"
    port = 1

    def __init__(self, tmp_path: Path) -> None:
        self.secret_file = tmp_path / "unused"


def one_line(result: Any) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cloudflare_rollover_with_faults(tmp_path: Path) -> None:
    fake = FakeCloudflare()
    zone = fake.add_zone(f"z{time.time_ns()}.example.test", min_ttl=2)  # a short-TTL stand-in
    token = fake.add_token()
    reader = fake.add_token(frozenset({ZONE_READ, DNS_READ}))
    fake.start()
    token_path = tmp_path / "cloudflare.token"
    token_path.write_text(token + "\n")
    token_path.chmod(0o600)
    env = ServiceEnv(NoLab(tmp_path), tmp_path, host=f"mx1.{zone.name}")  # type: ignore[arg-type]
    env.start_server()
    sender: CloudflareSender | None = None
    clean = {"CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_API_KEY": "", "CLOUDFLARE_EMAIL": ""}
    try:
        env.write_config()
        doc = yaml.safe_load(env.config.read_text())
        doc["providers"] = {
            "cf": {
                "type": "cloudflare",
                "api_token_file": str(token_path),
                "api_url": fake.url,
                "zone": zone.name,
                "minimum_ttl": 2,
                "propagation_seconds": 0.2,
                "timeout": 5,
                "max_attempts": 3,
                "rate_limit_wait": 2,
            }
        }
        doc["resolvers"] = []
        service = doc["services"][env.name]
        service.update(provider="cf", observe_via="provider", ttl=2)
        del service["authoritative"]
        env.config.write_text(yaml.safe_dump(doc))
        checked = env.rollover("config", "check", env=clean)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain), env=clean)
        assert published.returncode == 0, published.stderr
        sender = CloudflareSender(
            "", env.owner, env.host, env.endpoint, api=fake.url, zone_id=zone.id, token=reader
        )
        sender.start()
        wait_sender_ready(sender)
        new = rec("3 1 1", env.next_leaf)
        old = rec("3 1 1", env.pki.leaf)

        # 1. A rate-limit storm longer than every retry: start fails in one line, nothing sent.
        before = len(fake.batches)
        fake.retry_after = 1
        fake.inject("batch", "429", times=3)  # max_attempts: 3 requests in all
        started = env.start_rollover(env=clean)  # DNSSEC "active" at the fake: no override
        assert started.returncode == 5, started.stdout + started.stderr
        one_line(started)
        assert "rate-limited by Cloudflare (HTTP 429" in started.stderr
        assert fake.pending() == 0
        assert len(fake.batches) == before

        # 2. Throttled reads and a lost reply after the batch committed, within the retries:
        #    absorbed, the new association goes out exactly once.
        fake.inject("records", "429", times=1)
        fake.inject("batch", "drop-after", times=1)
        advanced = env.rollover("advance", env.name, env=clean)
        assert advanced.returncode == 0, advanced.stdout + advanced.stderr
        assert fake.pending() == 0
        applied = fake.batches[before:]
        assert len(applied) == 1
        assert new.hex.upper() in json.dumps(applied[0][1]).upper()
        published_at = applied[0][0]

        # 3. Another writer adds a record between the adapter's read and its write of the
        #    retiring change: the read-back catches it (exit 6, one line), nothing of theirs
        #    is lost, and the rollover completes around it.
        fake.before_batch(lambda f: f.edit_add(zone.name, env.owner, str(FOREIGN), ttl=2))
        fake.inject("records", "500", times=1)
        deadline = time.monotonic() + 90
        codes = []
        while True:
            result = env.rollover("advance", env.name, env=clean)
            codes.append(result.returncode)
            if result.returncode not in (0, 9):
                one_line(result)
            status = json.loads(env.rollover("status", env.name, "--json", env=clean).stdout)
            if status["phase"] == "done":
                break
            assert status["phase"] not in ("failed", "aborted"), status
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert 6 in codes, codes
        assert fake.pending() == 0
        history = json.loads(env.rollover("history", env.name, "--json", env=clean).stdout)
        removals = [h for h in history if "removed" in h["detail"]]
        assert len(removals) == 1, removals
        assert removals[0]["detail"]["removed"] == [str(old)]
        time.sleep(2.5)  # one more TTL of the sender after the end
        assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    finally:
        if sender is not None:
            sender.stop()
        env.stop_server()
        fake.stop()

    assert sender is not None
    assert sender.failures == []
    assert sender.checks > 5
    assert env.leaks(token, reader) == []
    # Never deploy before the new association is published and aged 2 x TTL (TTL 2 s).
    deployed_at = env.deploy_key.stat().st_mtime
    assert deployed_at >= published_at + 2 * 2
    # What reached the service after the publish: only batches after the deploy, none
    # removing the new association.
    later = fake.batches[before + 1 :]
    assert later
    assert all(at >= deployed_at for at, _body in later)
    final = {parse_association(r["content"].lower()) for r in fake.tlsa(zone.name, env.owner)}
    assert final == {new, FOREIGN}  # the other writer's record survived the rollover
