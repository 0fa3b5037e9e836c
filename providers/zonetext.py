"""Edit the TLSA RRset of an RFC 1035 zone file as text, keeping every other byte.

Pure (text in, text out). Comments, ordering, spacing, $ORIGIN/$TTL, multi-line records and
other TLSA names stay as they are; only the lines of the one RRset change, the SOA serial is
bumped in place, and the result is re-parsed with dnspython and compared with the original, record
by record, before anyone may write it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from rollover.core.association import associations_from_rdata
from rollover.core.dnsparse import tolerate_malformed_tlsa
from rollover.core.plan import TlsaRRset
from rollover.errors import ProviderError

_TTL = re.compile(r"^\d+([smhdw](\d+[smhdw])*)?$", re.IGNORECASE)
_CLASS = re.compile(r"^(IN|CH|HS|ANY|CLASS\d+)$", re.IGNORECASE)


@dataclass
class Token:
    text: str
    line: int
    column: int


@dataclass
class LogicalRecord:
    """One record or directive, possibly spanning lines through parentheses."""

    start: int
    end: int
    tokens: list[Token] = field(default_factory=list)
    explicit_owner: bool = False
    owner: dns.name.Name | None = None
    rdtype: str | None = None
    rdata_index: int = 0  # index in tokens of the first rdata token


def _tokenize(lines: list[str], source: str) -> list[LogicalRecord]:
    records: list[LogicalRecord] = []
    current: LogicalRecord | None = None
    depth = 0
    for number, line in enumerate(lines):
        if current is None:
            current = LogicalRecord(
                number,
                number,
                explicit_owner=bool(line[:1].strip()) and not line.lstrip().startswith(";"),
            )
        column = 0
        length = len(line)
        while column < length:
            char = line[column]
            if char == ";":
                break
            if char in " \t\r\n":
                column += 1
                continue
            if char == "(":
                depth += 1
                column += 1
                continue
            if char == ")":
                depth -= 1
                if depth < 0:
                    raise ProviderError(f"{source}: line {number + 1}: unbalanced ')'")
                column += 1
                continue
            start = column
            if char == '"':
                column += 1
                while column < length and line[column] != '"':
                    column += 2 if line[column] == "\\" else 1
                column += 1
            else:
                while column < length and line[column] not in ' \t\r\n;()"':
                    column += 2 if line[column] == "\\" else 1
            current.tokens.append(Token(line[start:column], number, start))
        current.end = number
        if depth == 0:
            if current.tokens:
                records.append(current)
            current = None
    if depth != 0 or (current is not None and current.tokens):
        raise ProviderError(f"{source}: unbalanced '(' at end of file")
    return records


def _classify(records: list[LogicalRecord], zone: dns.name.Name, source: str) -> None:
    """Fill in owner and type, tracking $ORIGIN and the inherited owner as BIND does."""
    origin = zone
    last_owner: dns.name.Name | None = None
    for record in records:
        first = record.tokens[0].text
        if first.startswith("$"):
            directive = first.upper()
            if directive == "$INCLUDE":
                raise ProviderError(
                    f"{source}: line {record.start + 1}: $INCLUDE is not "
                    "supported; point the provider at the included file"
                )
            if directive == "$ORIGIN" and len(record.tokens) > 1:
                origin = _name(record.tokens[1].text, origin, source, record.start)
            record.rdtype = directive
            continue
        index = 0
        if record.explicit_owner:
            owner_text = record.tokens[0].text
            last_owner = (
                origin if owner_text == "@" else _name(owner_text, origin, source, record.start)
            )
            index = 1
        record.owner = last_owner
        while index < len(record.tokens) and (
            _TTL.match(record.tokens[index].text) or _CLASS.match(record.tokens[index].text)
        ):
            index += 1
        if index < len(record.tokens):
            record.rdtype = record.tokens[index].text.upper()
            record.rdata_index = index + 1


def _name(text: str, origin: dns.name.Name, source: str, line: int) -> dns.name.Name:
    try:
        return dns.name.from_text(text, origin)
    except dns.exception.DNSException as exc:
        raise ProviderError(f"{source}: line {line + 1}: bad name {text[:40]!r}: {exc}") from None


def next_serial(old: int, today: date) -> int:
    """Date-based serials (YYYYMMDDnn) move to today's first or the next; counters count.

    RFC 1982 arithmetic: the new serial is always "greater" than the old one.
    """
    text = str(old)
    date_based = False
    if len(text) == 10:
        try:
            date(int(text[:4]), int(text[4:6]), int(text[6:8]))
            date_based = 1970 <= int(text[:4]) <= 2200
        except ValueError:
            date_based = False
    if date_based:
        return max(old + 1, int(today.strftime("%Y%m%d")) * 100) % 2**32
    return (old + 1) % 2**32


def parse_zone(text: str, zone: str, source: str) -> dns.zone.Zone:
    try:
        return dns.zone.from_text(text, origin=zone, relativize=False, filename=source)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ProviderError(f"{source}: cannot parse zone file: {exc}") from None


def read_rrset(text: str, zone: str, owner: str, source: str) -> TlsaRRset:
    parsed = parse_zone(text, zone, source)
    rdataset = parsed.get_rdataset(dns.name.from_text(owner), dns.rdatatype.TLSA)
    if rdataset is None:
        return TlsaRRset(owner)
    return TlsaRRset(owner, rdataset.ttl, associations_from_rdata(rdataset))


@dataclass(frozen=True)
class Edit:
    text: str
    serial: int


def replace_rrset(text: str, zone: str, after: TlsaRRset, today: date, source: str) -> Edit:
    """The zone text with the TLSA RRset at ``after.owner`` replaced by ``after``."""
    zone_name = dns.name.from_text(zone)
    owner = dns.name.from_text(after.owner)
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    records = _tokenize(lines, source)
    _classify(records, zone_name, source)
    soa = next((r for r in records if r.rdtype == "SOA" and r.owner == zone_name), None)
    if soa is None or len(soa.tokens) < soa.rdata_index + 3:
        raise ProviderError(f"{source}: no SOA record for {zone} found")
    serial_token = soa.tokens[soa.rdata_index + 2]
    if not (serial_token.text.isascii() and serial_token.text.isdigit()):
        raise ProviderError(
            f"{source}: line {serial_token.line + 1}: SOA serial "
            f"{serial_token.text!r} is not a number"
        )
    serial = next_serial(int(serial_token.text), today)
    line = lines[serial_token.line]
    lines[serial_token.line] = (
        line[: serial_token.column]
        + str(serial)
        + line[serial_token.column + len(serial_token.text) :]
    )

    doomed = [r for r in records if r.rdtype == "TLSA" and r.owner == owner]
    doomed_ids = {id(r) for r in doomed}
    doomed_lines = {n for r in doomed for n in range(r.start, r.end + 1)}
    for r in records:
        if id(r) not in doomed_ids and (r.start in doomed_lines or r.end in doomed_lines):
            raise ProviderError(
                f"{source}: line {r.start + 1}: another record shares a line "
                f"with a TLSA record at {after.owner}; refusing to edit"
            )
    # A kept record that inherits its owner from a removed line gets the owner written out.
    carrier: LogicalRecord | None = None
    for r in records:
        if (r.rdtype or "").startswith("$"):
            continue
        if r.explicit_owner:
            carrier = r
        elif id(r) not in doomed_ids and id(carrier) in doomed_ids and r.owner is not None:
            lines[r.start] = r.owner.to_text() + lines[r.start]
    new_lines = [
        f"{owner.to_text()}\t{after.ttl}\tIN\tTLSA\t{a}{newline}" for a in sorted(after.records)
    ]
    if doomed:
        position = doomed[0].start
        kept = [line for n, line in enumerate(lines) if n not in doomed_lines]
        before_count = sum(1 for n in range(position) if n not in doomed_lines)
        lines = kept[:before_count] + new_lines + kept[before_count:]
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        lines += new_lines
    result = "".join(lines)
    _verify(text, result, zone, after, source)
    return Edit(result, serial)


def _verify(old_text: str, new_text: str, zone: str, after: TlsaRRset, source: str) -> None:
    """The edit changed the one RRset and the SOA serial, and nothing else whatsoever."""
    old = parse_zone(old_text, zone, source)
    new = parse_zone(new_text, zone, source)
    owner = dns.name.from_text(after.owner)
    zone_name = dns.name.from_text(zone)

    def inventory(parsed: dns.zone.Zone) -> dict[tuple[dns.name.Name, int, int], object]:
        items: dict[tuple[dns.name.Name, int, int], object] = {}
        for name, node in parsed.nodes.items():
            for rdataset in node.rdatasets:
                if name == owner and rdataset.rdtype == dns.rdatatype.TLSA:
                    continue
                if name == zone_name and rdataset.rdtype == dns.rdatatype.SOA:
                    soa = rdataset[0]
                    items[(name, rdataset.rdtype, rdataset.covers)] = (
                        rdataset.ttl,
                        soa.replace(serial=0),
                    )
                    continue
                items[(name, rdataset.rdtype, rdataset.covers)] = (rdataset.ttl, set(rdataset))
        return items

    if inventory(old) != inventory(new):
        raise ProviderError(
            f"{source}: the edit would change records other than the TLSA "
            f"RRset at {after.owner}; refusing to write (please report this)"
        )
    written = read_rrset(new_text, zone, after.owner, source)
    if written.records != after.records or (after.exists and written.ttl != after.ttl):
        raise ProviderError(
            f"{source}: the edit did not produce the intended TLSA RRset at "
            f"{after.owner}; refusing to write (please report this)"
        )


tolerate_malformed_tlsa()  # a malformed TLSA record is unusable, not unreadable
