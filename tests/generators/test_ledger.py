"""The ledger file: every byte survives a round trip, lines come out in the order events were sent."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pipelines.generators.ledger import LedgerEntry, LedgerWriter, iter_ledger, read_ledger

ENTRIES = [
    LedgerEntry(0, b"order-1-00000000", b'{"order_id":"order-1-00000000"}', "valid", partition=2, offset=0),
    LedgerEntry(
        1, b"order-1-00000001", b'{"amount":1.00}', "late", partition=0, offset=0, late_by_ms=300_412
    ),
    LedgerEntry(2, b"order-1-00000002", b"\x00\x00\x00\x00\x07\xff\xfe", "malformed", 1, 0, "invalid_utf8"),
    LedgerEntry(3, b"order-1-00000003", b"", "malformed", partition=1, offset=1, reason="empty_value"),
    LedgerEntry(4, b"order-1-00000004", '{"x":"€"}'.encode(), "valid", error="Local: Message timed out"),
    LedgerEntry(5, None, b"{}", "malformed", partition=0, offset=1, reason="missing_field:order_id"),
]


def test_entries_round_trip_byte_for_byte() -> None:
    for entry in ENTRIES:
        assert LedgerEntry.from_json(entry.to_json()) == entry
    assert [e.acknowledged for e in ENTRIES] == [True, True, True, True, False, True]


def test_lines_are_json_with_text_values_and_base64_for_bytes_that_are_not_utf8() -> None:
    lines = [json.loads(e.to_json()) for e in ENTRIES]
    assert lines[0] == {
        "seq": 0,
        "partition": 2,
        "offset": 0,
        "key": "order-1-00000000",
        "value": '{"order_id":"order-1-00000000"}',
        "kind": "valid",
    }
    assert lines[1]["late_by_ms"] == 300_412
    assert lines[2]["value_base64"] == "AAAAAAf//g==" and "value" not in lines[2]
    assert lines[2]["reason"] == "invalid_utf8"
    assert lines[3]["value"] == ""
    assert (lines[4]["partition"], lines[4]["offset"], lines[4]["error"]) == (
        None,
        None,
        "Local: Message timed out",
    )
    assert lines[4]["value"] == '{"x":"€"}'
    assert lines[5]["key"] is None


def test_the_writer_puts_entries_in_seq_order_whatever_order_they_arrive_in(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    shuffled = ENTRIES[:]
    random.Random(3).shuffle(shuffled)
    assert [e.seq for e in shuffled] != [e.seq for e in ENTRIES]
    with LedgerWriter(path) as writer:
        for entry in shuffled:
            writer.add(entry)
    assert writer.written == len(ENTRIES)
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [0, 1, 2, 3, 4, 5]
    assert list(iter_ledger(path)) == ENTRIES
    assert read_ledger(path) == ENTRIES


def test_the_writer_holds_only_what_waits_for_an_earlier_entry(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    writer = LedgerWriter(path)
    writer.add(ENTRIES[1])
    writer.add(ENTRIES[2])
    assert writer.written == 0  # seq 0 is still in flight
    writer.add(ENTRIES[0])
    assert writer.written == 3
    writer.add(ENTRIES[5])
    writer.close()  # a gap (3, 4 never reported) must not lose what came after it
    assert [e.seq for e in read_ledger(path)] == [0, 1, 2, 5]


def test_a_broken_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text(ENTRIES[0].to_json() + "\n" + '{"seq": 1, "kind": "valid"}\n')
    with pytest.raises(ValueError, match=r"ledger.jsonl:2: not a ledger line"):
        read_ledger(path)
    path.write_text(ENTRIES[0].to_json().replace('"valid"', '"weird"') + "\n")
    with pytest.raises(ValueError, match=r"ledger.jsonl:1: not a ledger line .*unknown kind 'weird'"):
        read_ledger(path)
