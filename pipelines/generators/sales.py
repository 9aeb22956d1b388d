"""Seeded `sales` events with a realistic shape.

Categories are skewed (a few sell most), amounts have cents, and event times move forward with a
little disorder, as they do when many shops report through one topic. Event time comes from the
seed and the start time, never from the wall clock, so a run is reproducible.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from pipelines.contracts import SALE_FIELDS
from pipelines.generators.common import DEFAULT_START, dump_json, format_timestamp

__all__ = [
    "CATEGORIES",
    "DEFAULT_START",
    "SALE_FIELDS",
    "Sale",
    "encode_sale",
    "format_timestamp",
    "generate_sales",
    "sale_document",
]

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


class Sale(TypedDict):
    """A `sales` event, keyed by `sale_id`."""

    sale_id: str
    order_id: str
    category: str
    amount: Decimal
    currency: str
    timestamp: datetime


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
    if mean_gap_ms < 0 or disorder_ms < 0:
        raise ValueError(f"gaps and disorder must not be negative, not {mean_gap_ms} and {disorder_ms}")
    rng = random.Random(seed)
    names = [c for c, _ in CATEGORIES]
    # The same draws as rng.choices(names, cum_weights=...), rng.randint(0, k) and rng.randrange(k)
    # (their bodies, inlined: a third of the generator's time went to those calls' argument checks).
    cum_weights = list(itertools.accumulate(w for _, w in CATEGORIES))
    total, last = cum_weights[-1] + 0.0, len(cum_weights) - 1
    below, uniform, lognormal = rng._randbelow, rng.random, rng.lognormvariate  # type: ignore[attr-defined]
    gap_draws, disorder_draws, order_ids = 2 * mean_gap_ms + 1, disorder_ms + 1, count * 2 + 10
    # The clock in whole milliseconds since `start`: one datetime per event instead of three.
    clock_ms = 0
    sub_ms = start.microsecond % 1000
    for n in range(count):
        clock_ms += below(gap_draws)
        event_time = start + timedelta(milliseconds=clock_ms - below(disorder_draws))
        if sub_ms:
            event_time = event_time.replace(microsecond=event_time.microsecond // 1000 * 1000)
        cents = int(lognormal(7.5, 1.0)) + 1  # median ~ 18 EUR, long tail
        yield Sale(
            sale_id=f"sale-{seed}-{n:08d}",
            order_id=f"order-{seed}-{below(order_ids):08d}",
            category=names[bisect(cum_weights, uniform() * total, 0, last)],
            amount=Decimal(cents).scaleb(-2),
            currency="EUR",
            timestamp=event_time,
        )


def sale_document(sale: Sale) -> dict[str, object]:
    """The `sales` value as a JSON object, before encoding (the amount still a Decimal)."""
    return {
        "sale_id": sale["sale_id"],
        "order_id": sale["order_id"],
        "category": sale["category"],
        "amount": sale["amount"],
        "currency": sale["currency"],
        "timestamp": format_timestamp(sale["timestamp"]),
    }


def encode_sale(sale: Sale) -> tuple[bytes, bytes]:
    """(key, value) bytes of a sale as it goes on the `sales` topic: key `sale_id`, value compact
    JSON with the amount a number with exactly two decimals."""
    return sale["sale_id"].encode(), dump_json(sale_document(sale))
