"""Output formats: zone and generic text re-parse with dnspython to the same rdata."""

from __future__ import annotations

import json

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollover.core.association import Association
from rollover.core.derive import DerivedRecord
from rollover.core.params import MTYPE_DIGEST_SIZE, TlsaParams
from rollover.errors import InputError
from rollover.render.records import render, unique

hosts = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4
).map(lambda labels: ".".join(labels) + ".test.")


@st.composite
def records(draw: st.DrawFn) -> DerivedRecord:
    params = TlsaParams(draw(st.integers(0, 3)), draw(st.integers(0, 1)), draw(st.integers(0, 2)))
    size = MTYPE_DIGEST_SIZE[params.mtype] or draw(st.integers(1, 300))
    data = draw(st.binary(min_size=size, max_size=size))
    port = draw(st.integers(1, 65535))
    owner = f"_{port}._tcp.{draw(hosts)}"
    ttl = draw(st.none() | st.integers(0, 2**31 - 1))
    return DerivedRecord(owner, ttl, Association(params, data), "src", "EC-P256")


def tlsa_rdata(text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, text)


@given(st.lists(records(), min_size=1, max_size=5))
def test_zone_and_generic_reparse_to_the_same_rdata(recs: list[DerivedRecord]) -> None:
    for fmt, expected_type in (("zone", "TLSA"), ("generic", "TYPE52")):
        lines = render(recs, fmt).splitlines()
        assert len(lines) == len(recs)
        for line, rec in zip(lines, recs, strict=True):
            fields = line.split()
            assert fields[0] == rec.owner
            if rec.ttl is not None:
                assert fields[1] == str(rec.ttl)
                fields.pop(1)
            assert fields[1:3] == ["IN", expected_type]
            parsed = tlsa_rdata(" ".join(fields[3:]))
            expected = tlsa_rdata(str(rec.association))
            assert parsed == expected
            assert parsed.cert == rec.association.data  # type: ignore[attr-defined]


@given(st.lists(records(), min_size=1, max_size=5))
def test_zone_output_loads_as_a_zone(recs: list[DerivedRecord]) -> None:
    text = "$TTL 60\n@ SOA ns. h. 1 2 3 4 5\n@ NS ns.\n" + render(recs, "zone")
    zone = dns.zone.from_text(text, origin="test.", relativize=False)
    for rec in recs:
        rdataset = zone.find_rdataset(rec.owner, "TLSA")
        assert tlsa_rdata(str(rec.association)) in rdataset


@given(st.lists(records(), min_size=1, max_size=6))
def test_json_route53_and_nsupdate_carry_every_record(recs: list[DerivedRecord]) -> None:
    recs = unique(recs)
    objects = json.loads(render(recs, "json"))
    assert [
        (o["owner"], o["usage"], o["selector"], o["mtype"], bytes.fromhex(o["data"]))
        for o in objects
    ] == [
        (
            r.owner,
            r.association.params.usage,
            r.association.params.selector,
            r.association.params.mtype,
            r.association.data,
        )
        for r in recs
    ]
    batch = json.loads(render(recs, "route53"))
    values = {
        (c["ResourceRecordSet"]["Name"], tlsa_rdata(v["Value"]))
        for c in batch["Changes"]
        for v in c["ResourceRecordSet"]["ResourceRecords"]
    }
    assert values == {(r.owner, tlsa_rdata(str(r.association))) for r in recs}
    assert all(
        c["Action"] == "UPSERT" and c["ResourceRecordSet"]["Type"] == "TLSA"
        for c in batch["Changes"]
    )
    assert len({c["ResourceRecordSet"]["Name"] for c in batch["Changes"]}) == len(batch["Changes"])
    script = render(recs, "nsupdate").splitlines()
    adds = [line for line in script if line.startswith("update add ")]
    assert len(adds) == len(recs)
    assert script[-1] == "send"


def test_unique_keeps_first_source() -> None:
    a = Association(TlsaParams(3, 1, 1), b"\x01" * 32)
    recs = [DerivedRecord("o.", None, a, "first", "k"), DerivedRecord("o.", None, a, "second", "k")]
    assert [r.source for r in unique(recs)] == ["first"]


def test_nsupdate_and_route53_need_a_host() -> None:
    rec = DerivedRecord("_25._tcp", None, Association(TlsaParams(3, 1, 1), b"\x01" * 32), "s", "k")
    for fmt in ("nsupdate", "route53"):
        with pytest.raises(InputError, match="--host"):
            render([rec], fmt)
