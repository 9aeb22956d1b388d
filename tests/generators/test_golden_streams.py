"""The generators' streams, byte for byte, as they were before their hot loops were optimised.

The seeded streams are a contract (pipelines.generators.events: the same seed gives the same events
on one Python minor version): ledgers, tests and published benchmark results depend on them. These
digests were taken from the generators as they were before the draws were inlined (`_randbelow` and
`bisect` instead of `randint` and `choices`), JSON moved to orjson and events became NamedTuples; a
change that alters a single byte, kind, reason, lateness or event time of a stream from a UTC start
fails here. (Taken on Python 3.11, the version CI runs; `random` keeps its algorithms within a minor
version.)
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipelines.generators.common import DEFAULT_START
from pipelines.generators.events import DISORDER_MS, generate_events
from pipelines.generators.orders import encode_order, generate_orders
from pipelines.generators.sales import encode_sale, generate_sales

GOLDEN = {
    "sales": "2f7d88e536b8b4d80d820119ee2f36e3d137869cea03bfb22195c6efc1a90aa2",
    "orders": "c9c9c96103d57c44372ebb79f4654faf7d632fa6418185fd1415f6aae85a52d9",
}


@pytest.mark.parametrize("event_type", list(GOLDEN))
def test_the_seeded_stream_is_byte_for_byte_what_it_was(event_type: str) -> None:
    events = generate_events(event_type, 20_000, seed=11, late_fraction=0.02, malformed_fraction=0.03)
    lines = [
        e.key + b"|" + e.value + b"|" + str((e.kind, e.reason, e.late_by_ms, e.event_time)).encode()
        for e in events
    ]
    assert hashlib.sha256(b"\n".join(lines)).hexdigest() == GOLDEN[event_type]


@pytest.mark.parametrize(
    "start",
    [
        DEFAULT_START,
        datetime(2026, 12, 31, 23, 59, 58, 123456, tzinfo=UTC),  # sub-millisecond, over a new year
        datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC),  # before the epoch
    ],
)
@pytest.mark.parametrize("seed", [0, -3, 123_456_789])
def test_valid_events_are_the_generators_events_encoded_as_json(seed: int, start: datetime) -> None:
    # `generate_events` writes a valid event's JSON from its draws in one step; it must be the very
    # bytes and event time of the public generators' event, encoded by `dump_json`.
    count = 3_000
    events = list(generate_events("sales", count, seed=seed, start=start, malformed_fraction=0.1))
    sales = list(generate_sales(count, seed=seed, start=start, disorder_ms=DISORDER_MS))
    orders = list(generate_orders(count, seed=seed, start=start, disorder_ms=DISORDER_MS))
    order_events = list(generate_events("orders", count, seed=seed, start=start, late_fraction=0.1))
    for stream, expected, encode in ((events, sales, encode_sale), (order_events, orders, encode_order)):
        valid = [e for e in stream if e.kind == "valid"]
        assert len(valid) == count - 300
        for event in valid:
            thing = expected[event.seq]
            assert (event.key, event.value) == encode(thing)  # type: ignore[arg-type]
            assert event.event_time == thing["timestamp"]


def test_a_start_is_its_utc_instant_and_must_say_its_zone() -> None:
    in_kolkata = DEFAULT_START.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert list(generate_events("sales", 500, seed=4, start=in_kolkata, malformed_fraction=0.2)) == list(
        generate_events("sales", 500, seed=4, malformed_fraction=0.2)
    )
    with pytest.raises(ValueError, match="the start must say its time zone"):
        generate_events("orders", 10, start=datetime(2026, 11, 27, 10, 0))
