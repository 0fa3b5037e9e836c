"""Route 53 misbehaving during a whole rollover: moto in server mode behind a proxy that injects
the service's own faults (tests/awsfaults.py), a DANE sender that caches the RRset for its TTL
the way a resolver does, and the invariants checked against what reached the service."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from rollover.core.association import Association, parse_association
from rollover.core.material import spki_der
from tests.aws import CREDENTIALS, zone
from tests.awsfaults import CHANGE, GET_CHANGE, LIST, AwsFaults
from tests.e2e.test_rollover_lab import wait_sender_ready
from tests.rollover_env import Sender, ServiceEnv
from tests.test_matching import rec

pytestmark = pytest.mark.lab


@dataclass
class Route53Sender(Sender):
    """A sender whose resolver caches what Route 53 serves for the RRset's TTL."""

    client: Any = None
    zone_id: str = ""
    _cached: frozenset[Association] | None = None
    _expires: float = 0.0

    def _records(self) -> frozenset[Association] | None:
        if self._cached is None or time.monotonic() >= self._expires:
            found = self.client.list_resource_record_sets(
                HostedZoneId=self.zone_id,
                StartRecordName=self.owner,
                StartRecordType="TLSA",
                MaxItems="1",
            )["ResourceRecordSets"]
            rrset = [r for r in found if r["Name"] == self.owner and r["Type"] == "TLSA"]
            if not rrset:
                return None
            self._cached = frozenset(
                parse_association(v["Value"]) for v in rrset[0]["ResourceRecords"]
            )
            self._expires = time.monotonic() + int(rrset[0]["TTL"])
        return self._cached


class NoLab:
    primary = secondary = resolver = sender_resolver = "127.0.0.1:1"
    port = 1

    def __init__(self, tmp_path: Path) -> None:
        self.secret_file = tmp_path / "unused"


def one_line(result: Any, code: int, needle: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_route53_faults_during_a_rollover(
    moto_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    suffix = f"f{time.time_ns()}.example.org."
    zone_id = zone(moto_endpoint, suffix)
    proxy = AwsFaults(moto_endpoint).start()
    env = ServiceEnv(NoLab(tmp_path), tmp_path, host=f"mx1.{suffix.rstrip('.')}")  # type: ignore[arg-type]
    env.start_server()
    aws = dict(CREDENTIALS.items())
    sender: Route53Sender | None = None
    try:
        env.write_config()
        doc = yaml.safe_load(env.config.read_text())
        doc["providers"] = {
            "aws": {
                "type": "route53",
                "endpoint_url": proxy.endpoint,
                "wait_timeout": 30,
                "max_attempts": 2,
            }
        }
        doc["resolvers"] = []
        service = doc["services"][env.name]
        service.update(provider="aws", observe_via="provider", ttl=1)
        del service["authoritative"]
        env.config.write_text(yaml.safe_dump(doc))
        published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain), env=aws)
        assert published.returncode == 0, published.stderr
        client = boto3.client("route53", endpoint_url=moto_endpoint, region_name="us-east-1")
        sender = Route53Sender(
            "", env.owner, env.host, env.endpoint, client=client, zone_id=zone_id
        ).start()
        wait_sender_ready(sender)
        new = rec("3 1 1", env.next_leaf)

        # 1. A throttling storm longer than every retry: start fails in one line, nothing sent.
        before = len(proxy.applied_changes())
        proxy.inject(CHANGE, "Throttling", times=2)  # max_attempts: 2 requests in all
        started = env.start_rollover("--allow-insecure", env=aws)
        one_line(started, 5, "throttled by Route 53 (Throttling); gave up after 2 attempts")
        assert proxy.pending() == 0
        assert len(proxy.applied_changes()) == before
        status = json.loads(env.rollover("status", env.name, "--json", env=aws).stdout)
        assert status["phase"] == "publishing"
        assert "Throttling" in status["error"]

        # 2. PriorRequestNotComplete on the change and throttling of reads and GetChange, within
        #    the retries: absorbed, the new association goes out exactly once.
        proxy.inject(CHANGE, "PriorRequestNotComplete", times=1)
        proxy.inject(LIST, "Throttling", times=1)
        proxy.inject(GET_CHANGE, "Throttling", times=1)
        advanced = env.rollover("advance", env.name, env=aws)
        assert advanced.returncode == 0, advanced.stdout + advanced.stderr
        assert proxy.pending() == 0
        applied = proxy.applied_changes()[before:]
        assert len(applied) == 1
        assert b"CREATE" in applied[0].body
        published_at = applied[0].at

        # 3. The reply to the retiring change is lost after Route 53 applied it; then a
        #    PriorRequestNotComplete storm on the next try: one line each, never a second
        #    removal, and the rollover completes once the storm is over.
        proxy.inject(CHANGE, "drop-after", times=1)
        proxy.inject(CHANGE, "PriorRequestNotComplete", times=2)
        deadline = time.monotonic() + 60
        codes = []
        while True:
            result = env.rollover("advance", env.name, env=aws)
            codes.append(result.returncode)
            if result.returncode not in (0, 9):
                assert len(result.stderr.strip().splitlines()) == 1, result.stderr
                assert "Traceback" not in result.stderr
            status = json.loads(env.rollover("status", env.name, "--json", env=aws).stdout)
            if status["phase"] == "done":
                break
            assert status["phase"] not in ("failed", "aborted")
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        proxy.clear()  # the storm may outlast the need: the lost reply's change did apply
        assert any(code in (5, 6) for code in codes), codes
        history = json.loads(env.rollover("history", env.name, "--json", env=aws).stdout)
        removals = [h for h in history if "removed" in h["detail"]]
        assert len(removals) == 1, removals  # the removal is on record exactly once
        assert removals[0]["detail"]["removed"] == [str(rec("3 1 1", env.pki.leaf))]
        time.sleep(1.5)  # one more TTL of the sender after the end
        assert spki_der(env.served_leaf()) == spki_der(env.next_leaf)
    finally:
        if sender is not None:
            sender.stop()
        env.stop_server()
        proxy.stop()

    assert sender is not None
    assert sender.failures == []
    assert env.leaks(CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) == []
    assert sender.checks > 5
    # Never deploy before the new association is published and aged 2 x TTL (TTL 1 s).
    deployed_at = env.deploy_key.stat().st_mtime
    assert deployed_at >= published_at + 2 * 1
    # What reached the service: the publish, then only removals after the deploy.
    retires = proxy.applied_changes()[before + 1 :]
    assert retires
    assert all(e.at >= deployed_at for e in retires)
    assert all(new.data.hex().encode() in e.body for e in retires)  # kept in every batch
    found = client.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=env.owner, StartRecordType="TLSA", MaxItems="1"
    )["ResourceRecordSets"][0]
    assert {parse_association(v["Value"]) for v in found["ResourceRecords"]} == {new}
