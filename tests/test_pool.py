"""Pools: the ``members`` configuration, and each member's state read from the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollover import providers
from rollover.config import parse_config
from rollover.core.members import member_states, not_staged
from rollover.errors import ConfigError
from tests.test_config import SECRET, base


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "lab.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def pooled(secret: Path, **service: Any) -> dict[str, Any]:
    doc = base(secret)
    mx1 = doc["services"]["mx1"]
    del mx1["probe"]["connect"]
    mx1.update(service)
    return doc


MEMBERS = [
    {"name": "a", "connect": ["192.0.2.10:25"]},
    {"name": "b", "connect": ["192.0.2.11:25", "[2001:db8::11]:25"]},
]


def test_members_are_probed_at_every_address(secret: Path) -> None:
    config = parse_config(pooled(secret, members=MEMBERS), "c.yaml", providers.settings_parser)
    service = config.service("mx1")
    assert service.pool == "shared-key"
    assert [m.name for m in service.members] == ["a", "b"]
    assert service.probe.connect == ("192.0.2.10:25", "192.0.2.11:25", "[2001:db8::11]:25")
    assert service.member_at("192.0.2.11:25").name == "b"  # type: ignore[union-attr]
    assert service.member_at("192.0.2.99:25") is None


@pytest.mark.parametrize(
    ("service", "needle"),
    [
        ({"pool": "shared-key"}, "services.mx1.pool: needs members"),
        ({"pool": "round-robin", "members": MEMBERS}, "use one of shared-key, key-per-member"),
        ({"members": []}, "services.mx1.members: list at least one member"),
        ({"members": [{"name": "a"}]}, "members[0].connect: list the addresses"),
        ({"members": [MEMBERS[0], MEMBERS[0]]}, "members[1].name: 'a' is listed twice"),
        (
            {"members": [MEMBERS[0], {"name": "b", "connect": ["192.0.2.10:25"]}]},
            "192.0.2.10:25 is another member's too",
        ),
        ({"members": [{"name": "a b", "connect": ["192.0.2.1"]}]}, "members[0].name"),
        ({"members": [{"name": "a", "connect": ["x:y:z"]}]}, "members[0].connect[0]"),
        ({"members": [{"name": "a", "connect": ["192.0.2.1"], "color": 1}]}, "color"),
        ({"members": MEMBERS, "probe": {"connect": ["192.0.2.1:25"]}}, "probe.connect"),
    ],
)
def test_bad_pools_name_their_key(secret: Path, service: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(pooled(secret, **service), "c.yaml", providers.settings_parser)
    assert needle in str(caught.value)


def test_a_member_needs_a_deploy_of_its_own_or_the_service_one(secret: Path) -> None:
    doc = pooled(secret, members=MEMBERS)
    del doc["services"]["mx1"]["deploy"]
    with pytest.raises(ConfigError, match=r"members\[0\]\.deploy: give the member a deploy"):
        parse_config(doc, "c.yaml", providers.settings_parser)
    doc["services"]["mx1"]["members"] = [
        {**m, "deploy": {"chain": f"/srv/{m['name']}.pem", "key": f"/srv/{m['name']}.key"}}
        for m in MEMBERS
    ]
    config = parse_config(doc, "c.yaml", providers.settings_parser)
    assert config.service("mx1").members[1].deploy.chain == "/srv/b.pem"  # type: ignore[union-attr]


def test_an_agent_reads_no_provider_secrets(secret: Path) -> None:
    doc = pooled(secret, members=MEMBERS)
    doc["providers"]["lab"]["tsig"]["secret_file"] = "/nonexistent/lab.secret"
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(doc, "c.yaml", providers.settings_parser)
    config = parse_config(doc, "c.yaml", providers.settings_parser, provider_settings=False)
    assert config.providers["lab"].settings is None


def entry(rollover: int, event: str, member: str, spki: str, **detail: Any) -> dict[str, Any]:
    return {
        "rollover": rollover,
        "at": f"2026-12-01T10:0{len(detail)}:00+00:00",
        "event": event,
        "phase": "aging",
        "detail": {"member": member, "spki_sha256": spki, **detail},
    }


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], {"a": "waiting", "b": "waiting"}),
        ([entry(7, "member-staged", "a", "new")], {"a": "staged", "b": "waiting"}),
        ([entry(6, "member-staged", "a", "new")], {"a": "waiting", "b": "waiting"}),  # other one
        ([entry(7, "member-staged", "a", "old")], {"a": "waiting", "b": "waiting"}),  # other key
        (
            [
                entry(7, "member-staged", "a", "new"),
                entry(7, "member-deployed", "a", "new", presenting={"192.0.2.10:25": "new"}),
                entry(7, "member-staged", "a", "new"),
            ],
            {"a": "deployed", "b": "waiting"},
        ),
        (
            [entry(7, "member-fault", "b", "new", fault="the key staged here is not it")],
            {"a": "waiting", "b": "fault"},
        ),
        (
            [
                entry(7, "member-deployed", "b", "new"),
                entry(7, "member-rolled-back", "b", "new"),
            ],
            {"a": "waiting", "b": "rolled-back"},
        ),
        ([entry(7, "member-staged", "z", "new")], {"a": "waiting", "b": "waiting"}),  # unknown
    ],
)
def test_member_states(history: list[dict[str, Any]], expected: dict[str, str]) -> None:
    states = member_states(["a", "b"], history, 7, "new")
    assert {s.name: s.state for s in states} == expected
    assert not_staged(states) == [n for n, s in expected.items() if s not in ("staged", "deployed")]


def test_a_deployed_member_says_when_and_what_it_presents() -> None:
    history = [entry(7, "member-deployed", "a", "new", presenting={"192.0.2.10:25": "new"})]
    state = member_states(["a"], history, 7, "new")[0].as_json()
    assert state["deployed_at"] == state["last_seen"] == history[0]["at"]
    assert state["presenting"] == {"192.0.2.10:25": "new"}


def test_a_key_per_member_pool_is_one_service_per_member(secret: Path) -> None:
    doc = pooled(secret, pool="key-per-member", members=MEMBERS)
    config = parse_config(doc, "c.yaml", providers.settings_parser)
    assert sorted(config.services) == ["mx1@a", "mx1@b"]
    a, b = config.service("mx1@a"), config.service("mx1@b")
    assert a.owner == b.owner == "_25._tcp.mx1.example.test."
    assert [m.name for m in a.members] == ["a"]
    assert b.probe.connect == ("192.0.2.11:25", "[2001:db8::11]:25")
    doc["services"]["mx1@a"] = {"host": "other.example.test", "provider": "lab"}
    with pytest.raises(ConfigError, match=r"services.mx1@a: named twice \(a key-per-member pool"):
        parse_config(doc, "c.yaml", providers.settings_parser)
