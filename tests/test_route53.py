"""The Route 53 adapter: moto (server mode, on loopback) for the flows, botocore's Stubber for
what moto is lenient about (PENDING then INSYNC, throttling, stale DELETEs, access denied, the
exact request shapes)."""

from __future__ import annotations

import socket
import time

import boto3
import pytest
from botocore.stub import ANY, Stubber

from rollover.core.association import parse_association
from rollover.core.plan import Change, TlsaRRset, plan_publish
from rollover.errors import ConfigError, ConflictError, ProviderError
from rollover.providers.route53 import Route53Provider, Route53Settings, route53_name
from tests.aws import CREDENTIALS, zone

A = parse_association("3 1 1 " + "aa" * 32)
B = parse_association("3 1 1 " + "bb" * 32)
OWNER = "_25._tcp.mx1.example.com."


@pytest.mark.lab
def test_zone_lookup_publish_read_back(moto_endpoint: str, aws_env: None) -> None:
    suffix = f"z{time.time_ns()}.example.com."
    zone_id = zone(moto_endpoint, suffix)
    zone(moto_endpoint, f"sub.{suffix}", private=True)  # private: ignored by a public lookup
    p = Route53Provider("r53", Route53Settings(endpoint_url=moto_endpoint), sleep=lambda _s: None)
    owner = f"_25._tcp.mx1.sub.{suffix}"
    assert p.zone_for(owner) == suffix  # longest public suffix
    assert p._zone(owner)[0] == zone_id
    assert not p.read(owner).exists
    receipt = p.apply(plan_publish(p.read(owner), {A}, 300))
    p.wait(receipt, 30)
    assert p.read(owner) == TlsaRRset(owner, 300, frozenset({A}))
    receipt = p.apply(plan_publish(p.read(owner), {B}, 300))
    p.wait(receipt, 30)
    assert p.read(owner).records == {A, B}
    p.wait(p.apply(Change(p.read(owner), TlsaRRset(owner, 300, frozenset({B})))), 30)
    assert p.read(owner).records == {B}
    private = Route53Provider("r53", Route53Settings(endpoint_url=moto_endpoint, private_zone=True))
    assert private.zone_for(owner) == f"sub.{suffix}"


@pytest.mark.lab
def test_no_zone_and_explicit_zone_id(moto_endpoint: str, aws_env: None) -> None:
    p = Route53Provider("r53", Route53Settings(endpoint_url=moto_endpoint))
    with pytest.raises(ProviderError, match="no public hosted zone"):
        p.zone_for("_25._tcp.mx.nowhere.invalid.")
    suffix = f"y{time.time_ns()}.example.net."
    zone_id = zone(moto_endpoint, suffix)
    pinned = Route53Provider(
        "r53", Route53Settings(hosted_zone_id=zone_id, endpoint_url=moto_endpoint)
    )
    assert pinned.zone_for(f"_25._tcp.mx.{suffix}") == suffix
    with pytest.raises(ConfigError, match="is not in hosted zone"):
        pinned.zone_for("_25._tcp.mx.other.example.")
    twice = f"t{time.time_ns()}.example.net."
    zone(moto_endpoint, twice)
    zone(moto_endpoint, twice)
    with pytest.raises(ConfigError, match="several hosted zones named"):
        Route53Provider("r53", Route53Settings(endpoint_url=moto_endpoint)).zone_for(
            f"_25._tcp.mx.{twice}"
        )
    missing = Route53Provider(
        "r53", Route53Settings(hosted_zone_id="Z0000000NOSUCH", endpoint_url=moto_endpoint)
    )
    with pytest.raises(ProviderError, match="does not exist"):
        missing.read(f"_25._tcp.mx.{suffix}")


@pytest.mark.lab
def test_unreachable_endpoint(aws_env: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = Route53Provider(
        "r53", Route53Settings(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    )
    with pytest.raises(ProviderError, match="cannot reach the Route 53 endpoint"):
        p.zone_for(OWNER)


# -- Stubber: the exact behaviour of the real service ------------------------------------------

ZONE_ID = "Z123EXAMPLE"


def stubbed() -> tuple[Route53Provider, Stubber]:
    client = boto3.client(
        "route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    provider = Route53Provider(
        "r53",
        Route53Settings(hosted_zone_id=ZONE_ID, max_attempts=3),
        client=client,
        sleep=lambda _s: None,
    )
    provider._zones[OWNER] = (ZONE_ID, "example.com.")
    return provider, stub


def rrsets(values: list[str], ttl: int = 300, name: str = OWNER) -> dict:  # type: ignore[type-arg]
    return {
        "ResourceRecordSets": [
            {
                "Name": name,
                "Type": "TLSA",
                "TTL": ttl,
                "ResourceRecords": [{"Value": v} for v in values],
            }
        ],
        "IsTruncated": False,
        "MaxItems": "1",
    }


READ = {
    "HostedZoneId": ZONE_ID,
    "StartRecordName": OWNER,
    "StartRecordType": "TLSA",
    "MaxItems": "1",
}


def change_info(status: str = "PENDING") -> dict:  # type: ignore[type-arg]
    return {
        "ChangeInfo": {"Id": "/change/C1", "Status": status, "SubmittedAt": "2026-11-28T00:00:00Z"}
    }


def test_exact_request_shape_delete_plus_create_and_polling() -> None:
    p, stub = stubbed()
    # Route 53 hands back the value as stored (upper-case hex): the DELETE repeats it exactly.
    stored = "3 1 1 " + "AA" * 32
    stub.add_response("list_resource_record_sets", rrsets([stored], ttl=600), READ)
    expected_batch = {
        "Comment": ANY,
        "Changes": [
            {
                "Action": "DELETE",
                "ResourceRecordSet": {
                    "Name": OWNER,
                    "Type": "TLSA",
                    "TTL": 600,
                    "ResourceRecords": [{"Value": stored}],
                },
            },
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": OWNER,
                    "Type": "TLSA",
                    "TTL": 300,
                    "ResourceRecords": [{"Value": str(A)}, {"Value": str(B)}],
                },
            },
        ],
    }
    stub.add_response(
        "change_resource_record_sets",
        change_info(),
        {"HostedZoneId": ZONE_ID, "ChangeBatch": expected_batch},
    )
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    stub.add_response("get_change", change_info("INSYNC"), {"Id": "C1"})
    stub.add_response("list_resource_record_sets", rrsets([str(A), str(B)]), READ)
    with stub:
        current = p.read(OWNER)
        assert current.records == {A}  # parsed, not compared as strings
        receipt = p.apply(plan_publish(current, {B}, 300))
        assert receipt.change_id == "C1"
        p.wait(receipt, 60)
    stub.assert_no_pending_responses()


def test_create_alone_when_there_was_none() -> None:
    p, stub = stubbed()
    stub.add_response(
        "list_resource_record_sets",
        rrsets(["1.2.3.4"], name="mx1.example.com.")
        | {
            "ResourceRecordSets": [
                {
                    "Name": "_25._tcp.mx2.example.com.",
                    "Type": "TLSA",
                    "TTL": 300,
                    "ResourceRecords": [{"Value": str(B)}],
                }
            ]
        },
        READ,
    )
    stub.add_response(
        "change_resource_record_sets",
        change_info(),
        {
            "HostedZoneId": ZONE_ID,
            "ChangeBatch": {
                "Comment": ANY,
                "Changes": [
                    {
                        "Action": "CREATE",
                        "ResourceRecordSet": {
                            "Name": OWNER,
                            "Type": "TLSA",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": str(A)}],
                        },
                    }
                ],
            },
        },
    )
    with stub:
        current = p.read(OWNER)  # the next name in order is another owner: not ours
        assert not current.exists
        p.apply(plan_publish(current, {A}, 300))
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "message",
    [
        "[Tried to delete resource record set [name='_25._tcp.mx1.example.com.', type='TLSA'] but "
        "the values provided do not match the current values]",
        "[Tried to create resource record set [name='_25._tcp.mx1.example.com.', type='TLSA'] but "
        "it already exists]",
    ],
)
def test_stale_change_is_a_conflict(message: str) -> None:
    p, stub = stubbed()
    stub.add_response("list_resource_record_sets", rrsets([str(A)]), READ)
    stub.add_client_error("change_resource_record_sets", "InvalidChangeBatch", message, 400)
    with stub, pytest.raises(ConflictError, match="changed since it was read"):
        p.apply(plan_publish(p.read(OWNER), {B}, 300))


def test_throttling_then_success_and_retries_exhausted() -> None:
    p, stub = stubbed()
    stub.add_client_error("list_resource_record_sets", "Throttling", "Rate exceeded", 400)
    stub.add_client_error("list_resource_record_sets", "PriorRequestNotComplete", "busy", 400)
    stub.add_response("list_resource_record_sets", rrsets([str(A)]), READ)
    for _ in range(3):
        stub.add_client_error("list_resource_record_sets", "Throttling", "Rate exceeded", 400)
    with stub:
        assert p.read(OWNER).records == {A}
        with pytest.raises(ProviderError, match=r"throttled.*3 attempts"):
            p.read(OWNER)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("operation", "permission"),
    [
        ("list_resource_record_sets", "route53:ListResourceRecordSets"),
        ("change_resource_record_sets", "route53:ChangeResourceRecordSets"),
    ],
)
def test_access_denied_names_the_permission(operation: str, permission: str) -> None:
    p, stub = stubbed()
    if operation == "change_resource_record_sets":
        stub.add_response("list_resource_record_sets", rrsets([str(A)]), READ)
    stub.add_client_error(operation, "AccessDenied", "User is not authorized", 403)
    with stub, pytest.raises(ProviderError, match=permission):
        p.apply(plan_publish(p.read(OWNER), {B}, 300))


def test_change_stays_pending_past_the_timeout() -> None:
    p, stub = stubbed()
    p.settings = Route53Settings(hosted_zone_id=ZONE_ID, wait_timeout=1.0)
    for _ in range(50):
        stub.add_response("get_change", change_info("PENDING"), {"Id": "C1"})
    from rollover.ports import Receipt

    receipt = Receipt("r53", "C1", Change(TlsaRRset(OWNER), TlsaRRset(OWNER, 300, frozenset({A}))))
    real_sleep = time.sleep
    p._sleep = lambda s: real_sleep(min(s, 0.05))
    with stub, pytest.raises(ProviderError, match="still PENDING"):
        p.wait(receipt, 60)


def test_batch_limits_are_checked_before_sending() -> None:
    p, _stub = stubbed()
    many = frozenset(parse_association(f"3 1 2 {i:0128x}") for i in range(260))
    with pytest.raises(ProviderError, match="too large for Route 53"):
        p.change_batch([Change(TlsaRRset(OWNER), TlsaRRset(OWNER, 300, many))])
    fine = frozenset(parse_association(f"3 1 1 {i:064x}") for i in range(200))
    batch = p.change_batch([Change(TlsaRRset(OWNER), TlsaRRset(OWNER, 300, fine))])
    assert len(batch["Changes"][0]["ResourceRecordSet"]["ResourceRecords"]) == 200


def test_several_owners_one_batch() -> None:
    p, stub = stubbed()
    other = "_25._tcp.mx2.example.com."
    p._zones[other] = (ZONE_ID, "example.com.")
    stub.add_response(
        "change_resource_record_sets",
        change_info(),
        {
            "HostedZoneId": ZONE_ID,
            "ChangeBatch": {
                "Comment": ANY,
                "Changes": [
                    {
                        "Action": "CREATE",
                        "ResourceRecordSet": {
                            "Name": OWNER,
                            "Type": "TLSA",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": str(A)}],
                        },
                    },
                    {
                        "Action": "CREATE",
                        "ResourceRecordSet": {
                            "Name": other,
                            "Type": "TLSA",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": str(B)}],
                        },
                    },
                ],
            },
        },
    )
    with stub:
        receipts = p.apply_many(
            [
                Change(TlsaRRset(OWNER), TlsaRRset(OWNER, 300, frozenset({A}))),
                Change(TlsaRRset(other), TlsaRRset(other, 300, frozenset({B}))),
            ]
        )
    assert [r.change_id for r in receipts] == ["C1", "C1"]


def test_dnssec_status() -> None:
    p, stub = stubbed()
    stub.add_response(
        "get_dnssec",
        {"Status": {"ServeSignature": "SIGNING"}, "KeySigningKeys": []},
        {"HostedZoneId": ZONE_ID},
    )
    stub.add_response(
        "get_dnssec",
        {"Status": {"ServeSignature": "NOT_SIGNING"}, "KeySigningKeys": []},
        {"HostedZoneId": ZONE_ID},
    )
    with stub:
        assert p.dnssec_signing(OWNER) is True
        assert p.dnssec_signing(OWNER) is False


def test_route53_names() -> None:
    assert route53_name("\\052.example.com.") == "*.example.com."
    assert route53_name("_25._TCP.MX1.Example.COM") == "_25._tcp.mx1.example.com."


@pytest.mark.lab
def test_rollover_start_to_done_on_route53(moto_endpoint: str, aws_env: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The whole rollover against moto, DNS checks served by the provider's read-back."""
    import json

    import yaml

    from tests.rollover_env import ServiceEnv

    suffix = f"r{time.time_ns()}.example.org."
    zone(moto_endpoint, suffix)

    class NoLab:
        primary = secondary = resolver = sender_resolver = "127.0.0.1:1"
        port = 1
        secret_file = tmp_path / "unused"

    env = ServiceEnv(NoLab(), tmp_path, host=f"mx1.{suffix.rstrip('.')}")  # type: ignore[arg-type]
    env.start_server()
    try:
        env.write_config()
        doc = yaml.safe_load(env.config.read_text())
        doc["providers"] = {
            "aws": {"type": "route53", "endpoint_url": moto_endpoint, "wait_timeout": 30}
        }
        doc["resolvers"] = []
        service = doc["services"][env.name]
        service.update(provider="aws", observe_via="provider", ttl=1)
        del service["authoritative"]
        env.config.write_text(yaml.safe_dump(doc))
        aws = dict(CREDENTIALS.items())
        published = env.rollover("publish", env.name, "--cert", str(env.deploy_chain), env=aws)
        assert published.returncode == 0, published.stderr
        # moto reports the zone as not signing: refused without --allow-insecure.
        refused = env.start_rollover(env=aws)
        assert refused.returncode == 8
        assert "does not sign" in refused.stderr
        started = env.start_rollover("--allow-insecure", env=aws)
        assert started.returncode == 0, started.stderr
        run = env.rollover("run", env.name, env=aws, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        status = json.loads(env.rollover("status", env.name, "--json", env=aws).stdout)
        assert status["phase"] == "done"
        p = Route53Provider("r53", Route53Settings(endpoint_url=moto_endpoint))
        from tests.test_matching import rec

        assert p.read(f"_25._tcp.mx1.{suffix}").records == {rec("3 1 1", env.next_leaf)}
        assert "testing-secret" not in run.stdout + run.stderr + started.stdout
    finally:
        env.stop_server()


@pytest.mark.lab
def test_several_services_in_one_zone_go_out_as_one_batch(
    moto_endpoint: str, aws_env: None, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """advance --all: two rollovers in one hosted zone due in the same tick, one change batch."""
    import json

    import yaml

    import rollover.providers as provider_registry
    from rollover.config import load_config
    from rollover.engine.batching import batch_provider_changes
    from rollover.engine.build import build_engine
    from rollover.engine.staging import load_staged
    from tests.rollover_env import ServiceEnv

    suffix = f"b{time.time_ns()}.example.org."
    zone(moto_endpoint, suffix)

    class NoLab:
        primary = secondary = resolver = sender_resolver = "127.0.0.1:1"
        port = 1
        secret_file = tmp_path / "unused"

    envs = [
        ServiceEnv(
            NoLab(),
            tmp_path / f"s{i}",
            name=f"mx{i}",  # type: ignore[arg-type]
            host=f"mx{i}.{suffix.rstrip('.')}",
        )
        for i in range(2)
    ]
    try:
        services = {}
        for env in envs:
            env.start_server()
            env.write_config()
            service = yaml.safe_load(env.config.read_text())["services"][env.name]
            service.update(provider="aws", observe_via="provider", ttl=1)
            del service["authoritative"]
            services[env.name] = service
        doc = {
            "providers": {"aws": {"type": "route53", "endpoint_url": moto_endpoint}},
            "state_dir": str(tmp_path / "state"),
            "services": services,
        }
        config = tmp_path / "rollover.yaml"
        config.write_text(yaml.safe_dump(doc))
        for env in envs:
            env.config = config
            assert (
                env.rollover(
                    "publish", env.name, "--cert", str(env.deploy_chain), env=CREDENTIALS
                ).returncode
                == 0
            )
        cfg = load_config(str(config), provider_registry.settings_parser)
        engines = [build_engine(cfg, env.name) for env in envs]
        for engine, env in zip(engines, envs, strict=True):
            engine.start(
                load_staged(str(env.staged_chain), str(env.staged_key), None), allow_insecure=True
            )
        assert batch_provider_changes(engines, lambda _l: None) == 1
        ids = set()
        for env in envs:
            history = json.loads(
                env.rollover("history", env.name, "--json", env=CREDENTIALS).stdout
            )
            changes = [h for h in history if h["event"] == "provider-change"]
            assert len(changes) == 1
            ids.add(changes[0]["detail"]["change_id"])
        assert len(ids) == 1  # one ChangeResourceRecordSets for both services
        # The ordinary advance then carries both to done without publishing again.
        run = envs[0].rollover("advance", "--all", env=CREDENTIALS)
        assert run.returncode == 0, run.stderr
    finally:
        for env in envs:
            env.stop_server()
