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
from pipelines.generators.common import DEFAULT_START, clock_and_cents, dump_json, format_timestamp

__all__ = [
    "CATEGORIES",
    "DEFAULT_START",
    "SALE_FIELDS",
    "Sale",
    "encode_sale",
    "format_timestamp",
    "generate_sales",
    "sale_document",
    "sale_draws",
    "sale_from_draw",
    "sale_json",
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
    base = start.replace(microsecond=start.microsecond // 1000 * 1000)  # event times in whole ms
    for n, draw in enumerate(sale_draws(count, seed=seed, mean_gap_ms=mean_gap_ms, disorder_ms=disorder_ms)):
        yield sale_from_draw(seed, n, draw, base + timedelta(milliseconds=draw[0]))


def sale_from_draw(seed: int, n: int, draw: tuple[int, int, str, int], timestamp: datetime) -> Sale:
    """Sale `n` of the stream of `seed`, from its draws (`sale_draws`) and its event time."""
    _ms, order_no, category, cents = draw
    return Sale(
        sale_id=f"sale-{seed}-{n:08d}",
        order_id=f"order-{seed}-{order_no:08d}",
        category=category,
        amount=Decimal(cents).scaleb(-2),
        currency="EUR",
        timestamp=timestamp,
    )


_SALE_JSON = (
    b'{"sale_id":"sale-%d-%08d","order_id":"order-%d-%08d","category":"%s","amount":%d.%02d,'
    b'"currency":"EUR","timestamp":"%s"}'
)


def sale_json(seed: int, n: int, draw: tuple[int, int, str, int], timestamp: bytes) -> tuple[bytes, bytes]:
    """(key, value) of sale `n`, byte for byte `encode_sale(sale_from_draw(...))` given its
    `timestamp` text, written in one step (`pipelines generate`'s hot path; categories are ASCII
    names that JSON never escapes, tests/generators/test_golden_streams.py checks the bytes)."""
    _ms, order_no, category, cents = draw
    return b"sale-%d-%08d" % (seed, n), _SALE_JSON % (
        seed,
        n,
        seed,
        order_no,
        category.encode(),
        cents // 100,
        cents % 100,
        timestamp,
    )


def sale_draws(
    count: int, *, seed: int = 42, mean_gap_ms: int = 100, disorder_ms: int = 500
) -> Iterator[tuple[int, int, str, int]]:
    """The seeded draws behind `generate_sales`, one tuple per sale: (event time in milliseconds
    after the start, order number, category, amount in cents). `pipelines generate` writes its JSON
    straight from these (pipelines.generators.events), without a Sale or a Decimal in between."""
    if mean_gap_ms < 0 or disorder_ms < 0:
        raise ValueError(f"gaps and disorder must not be negative, not {mean_gap_ms} and {disorder_ms}")
    rng = random.Random(seed)
    names = [c for c, _ in CATEGORIES]
    # The same draws as rng.choices(names, cum_weights=...) and rng.randrange(k), inlined
    # (`bisect`, `_randbelow`; see clock_and_cents, which draws the time and the amount first).
    cum_weights = list(itertools.accumulate(w for _, w in CATEGORIES))
    total, last = cum_weights[-1] + 0.0, len(cum_weights) - 1
    bits, uniform = rng.getrandbits, rng.random
    order_ids = count * 2 + 10
    order_k = order_ids.bit_length()
    # Amounts: median ~ 18 EUR, long tail.
    for ms, cents in clock_and_cents(
        rng, count, mean_gap_ms=mean_gap_ms, disorder_ms=disorder_ms, mu=7.5, sigma=1.0
    ):
        r = bits(order_k)
        while r >= order_ids:
            r = bits(order_k)
        yield ms, r, names[bisect(cum_weights, uniform() * total, 0, last)], cents


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
