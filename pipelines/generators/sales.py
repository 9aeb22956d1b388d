"""Seeded `sales` events with a realistic shape.

Categories are skewed (a few sell most), amounts have cents, and event times move forward with a
little disorder, as they do when many shops report through one topic. Event time comes from the
seed and the start time, never from the wall clock, so a run is reproducible.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.schemas import Sale

DEFAULT_START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
CATEGORIES: tuple[tuple[str, int], ...] = (
    ("electronics", 30),
    ("books", 22),
    ("clothing", 18),
    ("home", 12),
    ("toys", 8),
    ("grocery", 6),
    ("garden", 4),
)
"""(category, weight): a long tail, like real catalogues."""


def format_timestamp(ts: datetime) -> str:
    """The contract's timestamp: ISO-8601 UTC with milliseconds and a `Z`."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def generate_sales(
    count: int,
    *,
    seed: int = 42,
    start: datetime = DEFAULT_START,
    mean_gap_ms: int = 100,
    disorder_ms: int = 500,
) -> Iterator[Sale]:
    """Yield `count` sales. The stream's clock advances by about `mean_gap_ms` per event, and each
    event's time is that clock minus up to `disorder_ms` (small, bounded out-of-orderness)."""
    rng = random.Random(seed)
    names = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    clock = start
    for n in range(count):
        clock += timedelta(milliseconds=rng.randint(0, 2 * mean_gap_ms))
        event_time = clock - timedelta(milliseconds=rng.randint(0, disorder_ms))
        event_time = event_time.replace(microsecond=event_time.microsecond // 1000 * 1000)
        cents = int(rng.lognormvariate(7.5, 1.0)) + 1  # median ~ 18 EUR, long tail
        yield Sale(
            sale_id=f"sale-{seed}-{n:08d}",
            order_id=f"order-{seed}-{rng.randrange(count * 2 + 10):08d}",
            category=rng.choices(names, weights)[0],
            amount=Decimal(cents).scaleb(-2),
            currency="EUR",
            timestamp=event_time,
        )


def encode_sale(sale: Sale) -> tuple[bytes, bytes]:
    """(key, value) bytes of a sale as it goes on the `sales` topic."""
    value = {
        "sale_id": sale["sale_id"],
        "order_id": sale["order_id"],
        "category": sale["category"],
        # A JSON number with two decimals, written from the Decimal's text so no float rounding
        # can touch it (the placeholder is replaced below).
        "amount": "__AMOUNT__",
        "currency": sale["currency"],
        "timestamp": format_timestamp(sale["timestamp"]),
    }
    text = json.dumps(value, separators=(",", ":")).replace('"__AMOUNT__"', f"{sale['amount']:.2f}")
    return sale["sale_id"].encode(), text.encode()
