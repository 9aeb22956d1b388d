"""The streams `pipelines generate` sends: deterministic, with exactly the late and malformed events
asked for, each malformed one broken the way its reason code says (checked by a reference
classifier written here, independently of the generator)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipelines.generators.common import DEFAULT_START
from pipelines.generators.events import (
    DEFAULT_LATE_BY_S,
    REASON_FAMILIES,
    GeneratedEvent,
    event_fields,
    fault_counts,
    generate_events,
)
from tests.helpers import CONTRACT_TIMESTAMP, event_time

TWO_DECIMALS = re.compile(rb'"amount":-?\d+\.\d{2}[,}]')


def expected_reason(value: bytes, fields: tuple[str, ...]) -> str | None:
    """What a strict parser says about a value, checking in the documented order: bytes, encoding,
    JSON, presence, types, amount, timestamp. None for a contract-valid event."""
    if value == b"":
        return "empty_value"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        doc = json.loads(text, parse_float=Decimal)
    except ValueError:
        return "invalid_json"
    if not isinstance(doc, dict):
        return "invalid_json"
    for name in fields:
        if name not in doc:
            return f"missing_field:{name}"
    for name in fields:
        v = doc[name]
        is_number = isinstance(v, int | Decimal) and not isinstance(v, bool)
        if not (is_number if name == "amount" else isinstance(v, str)):
            return f"bad_type:{name}"
    if doc["amount"] < 0:
        return "negative_amount"
    if not CONTRACT_TIMESTAMP.match(doc["timestamp"]):
        return "bad_timestamp"
    try:
        datetime.strptime(doc["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return "bad_timestamp"
    return None


def fingerprint(events: list[GeneratedEvent]) -> list[tuple[object, ...]]:
    return [(e.seq, e.key, e.value, e.kind, e.reason, e.late_by_ms) for e in events]


@pytest.mark.parametrize("event_type", ["orders", "sales"])
def test_same_seed_and_arguments_same_bytes_in_the_same_order(event_type: str) -> None:
    a = list(generate_events(event_type, 1000, seed=5, late_fraction=0.1, malformed_fraction=0.2))
    b = list(generate_events(event_type, 1000, seed=5, late_fraction=0.1, malformed_fraction=0.2))
    c = list(generate_events(event_type, 1000, seed=6, late_fraction=0.1, malformed_fraction=0.2))
    assert fingerprint(a) == fingerprint(b)
    assert [e.seq for e in a] == list(range(1000))
    assert len({e.value for e in a} & {e.value for e in c}) <= 2  # at most some empty values alike
    assert [e.seq for e in a if e.kind != "valid"] != [e.seq for e in c if e.kind != "valid"]


def test_same_bytes_in_another_process_with_another_hash_seed() -> None:
    # Seeds derived from strings must not depend on Python's per-process hash randomisation.
    code = (
        "import hashlib, sys\n"
        "from pipelines.generators.events import generate_events\n"
        "h = hashlib.sha256()\n"
        "for e in generate_events('orders', 2000, seed=9, late_fraction=0.1, malformed_fraction=0.1):\n"
        "    h.update(repr((e.key, e.value, e.kind, e.reason, e.late_by_ms)).encode())\n"
        "print(h.hexdigest())\n"
    )
    here = hashlib.sha256()
    for e in generate_events("orders", 2000, seed=9, late_fraction=0.1, malformed_fraction=0.1):
        here.update(repr((e.key, e.value, e.kind, e.reason, e.late_by_ms)).encode())
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert there.stdout.strip() == here.hexdigest()


@pytest.mark.parametrize("event_type", ["orders", "sales"])
def test_valid_events_do_not_depend_on_the_fractions(event_type: str) -> None:
    clean = list(generate_events(event_type, 1500, seed=3))
    faulty = list(generate_events(event_type, 1500, seed=3, late_fraction=0.2, malformed_fraction=0.3))
    assert {e.kind for e in clean} == {"valid"}
    valid = [e for e in faulty if e.kind == "valid"]
    assert len(valid) == 1500 - 300 - 450
    for e in valid:
        assert (e.key, e.value) == (clean[e.seq].key, clean[e.seq].value)
    # Late and malformed events keep the key of the event they replace.
    assert [e.key for e in faulty] == [e.key for e in clean]


@pytest.mark.parametrize(
    ("count", "late", "malformed", "expected"),
    [
        (2000, 0.1, 0.05, (200, 100)),
        (1000, 0.0, 0.0, (0, 0)),
        (1000, 0.333, 0.667, (333, 667)),
        (10, 0.04, 0.06, (0, 1)),
        (3, 0.5, 0.5, (1, 2)),  # both round up to 2; the late ones get what is left
        (0, 0.5, 0.5, (0, 0)),
    ],
)
def test_the_fractions_give_exactly_that_many_marked_events(
    count: int, late: float, malformed: float, expected: tuple[int, int]
) -> None:
    assert fault_counts(count, late, malformed) == expected
    events = list(generate_events("orders", count, seed=1, late_fraction=late, malformed_fraction=malformed))
    kinds = Counter(e.kind for e in events)
    assert (kinds["late"], kinds["malformed"], kinds["valid"]) == (*expected, count - sum(expected))
    assert all((e.reason is not None) == (e.kind == "malformed") for e in events)
    assert all((e.late_by_ms is not None) == (e.kind == "late") for e in events)


@pytest.mark.parametrize("event_type", ["orders", "sales"])
def test_every_event_is_exactly_what_its_mark_says(event_type: str) -> None:
    fields = event_fields(event_type)
    events = list(generate_events(event_type, 4000, seed=21, late_fraction=0.1, malformed_fraction=0.3))
    for e in events:
        assert expected_reason(e.value, fields) == e.reason, (e.kind, e.value)
        if e.kind != "malformed":
            assert list(json.loads(e.value)) == list(fields)
            assert TWO_DECIMALS.search(e.value)
            assert json.loads(e.value)[fields[0]].encode() == e.key
    reasons = Counter(e.reason or "" for e in events if e.kind == "malformed")
    families = {reason.split(":")[0] for reason in reasons}
    assert families == set(REASON_FAMILIES)
    # Every field goes missing, and every field comes with a wrong type, somewhere in the mix.
    assert {r for r in reasons if r.startswith("missing_field:")} == {f"missing_field:{f}" for f in fields}
    assert {r for r in reasons if r.startswith("bad_type:")} == {f"bad_type:{f}" for f in fields}
    # The mix follows its weights (invalid_json 20 ... empty_value 5 of 100), within sampling noise.
    by_family = Counter(reason.split(":")[0] for reason in reasons.elements())
    assert by_family["invalid_json"] > 2 * by_family["empty_value"]
    assert sum(by_family.values()) == 1200


def test_malformed_values_are_broken_in_the_way_their_reason_says() -> None:
    events = [
        e for e in generate_events("orders", 3000, seed=8, malformed_fraction=0.5) if e.kind == "malformed"
    ]
    assert len(events) == 1500
    for e in events:
        family, _, field = (e.reason or "").partition(":")
        if family == "empty_value":
            assert e.value == b""
            continue
        if family == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                e.value.decode("utf-8")
            continue
        text = e.value.decode("utf-8")
        if family == "invalid_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        doc = json.loads(text, parse_float=Decimal)
        if family == "missing_field":
            assert field not in doc and len(doc) == 4
        elif family == "bad_type":
            assert isinstance(doc[field], str if field == "amount" else int)
        elif family == "negative_amount":
            assert isinstance(doc["amount"], Decimal) and doc["amount"] < 0
        else:
            assert family == "bad_timestamp"
            with pytest.raises(ValueError):
                datetime.strptime(doc["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    variants = {e.value[:1] for e in events if e.reason == "invalid_json"}
    assert variants == {b"{", b"o"}  # truncated JSON and Python reprs start with "{", CSV lines with the id
    assert any(e.value.startswith(b"\x00") for e in events if e.reason == "invalid_utf8")  # Avro bytes
    assert any(b'"currency":"\x80"' in e.value for e in events if e.reason == "invalid_utf8")  # cp1252


@pytest.mark.parametrize("late_by_s", [DEFAULT_LATE_BY_S, 30.0])
def test_late_events_are_exactly_as_far_behind_as_marked_and_valid_ones_barely(late_by_s: float) -> None:
    events = list(
        generate_events(
            "sales", 5000, seed=4, late_fraction=0.05, malformed_fraction=0.05, late_by_s=late_by_s
        )
    )
    # Recompute the stream's event time from the events themselves: the latest valid timestamp.
    stream_time = DEFAULT_START
    late = 0
    for e in events:
        if e.kind == "malformed":
            continue
        t = event_time(e)
        if e.kind == "late":
            late += 1
            assert e.late_by_ms == (stream_time - t) // timedelta(milliseconds=1)
            assert late_by_s * 1000 <= e.late_by_ms < late_by_s * 1000 + 1000
        else:
            assert stream_time - t <= timedelta(milliseconds=500)
            stream_time = max(stream_time, t)
    assert late == 250


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"late_fraction": 1.5}, "the late fraction must be between 0 and 1, not 1.5"),
        ({"malformed_fraction": -0.1}, "the malformed fraction must be between 0 and 1, not -0.1"),
        ({"late_fraction": 0.6, "malformed_fraction": 0.5}, "add up to 1.1, more than 1"),
        ({"late_by_s": 0.5}, "more than the normal disorder (0.5 s) behind, not 0.5 s"),
    ],
)
def test_bad_arguments_fail_at_once(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_events("orders", 10, **kwargs)  # no event drawn: the check is not lazy


def test_unknown_event_type_and_negative_count_fail() -> None:
    with pytest.raises(ValueError, match="unknown event type 'shipments'; known: orders, sales"):
        generate_events("shipments", 10)
    with pytest.raises(ValueError, match="the count must not be negative, not -1"):
        generate_events("sales", -1)
