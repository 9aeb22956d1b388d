"""Seeded `orders` events with a realistic shape.

Customers are skewed the way shops see them: a Zipf-like law over a fixed population, so a few
customers place many orders and most place one or two (`cust-00001` is the most active, then
`cust-00002`, ...). Amounts have cents with a long tail, and event times move forward with small,
bounded disorder. Event time comes from the seed and the start time, never from the wall clock.

Contract (`pipelines.contracts`): key `order_id`; value ORDER_FIELDS, the amount a JSON number with
two decimals and the timestamp ISO-8601 UTC with milliseconds and a `Z`.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from pipelines.generators.common import DEFAULT_START, clock_and_cents, dump_json, format_timestamp

DEFAULT_CUSTOMERS = 2000
ZIPF_EXPONENT = 1.1
"""Slightly above 1: of 2000 customers, the top one places about 17% of the orders and the top ten
about 45%, while most of the others place a handful."""


class Order(TypedDict):
    """An `orders` event, keyed by `order_id`."""

    order_id: str
    customer_id: str
    amount: Decimal
    currency: str
    timestamp: datetime


def customer_id(rank: int) -> str:
    """The id of the customer with this activity rank (1 = places the most orders)."""
    return f"cust-{rank:05d}"


def generate_orders(
    count: int,
    *,
    seed: int = 42,
    start: datetime = DEFAULT_START,
    customers: int = DEFAULT_CUSTOMERS,
    mean_gap_ms: int = 100,
    disorder_ms: int = 500,
) -> Iterator[Order]:
    """Yield `count` orders. The stream's clock advances by about `mean_gap_ms` per event, and each
    event's time is that clock minus up to `disorder_ms` (small, bounded out-of-orderness); the
    customer of an order is drawn with probability proportional to 1 / rank ** ZIPF_EXPONENT."""
    for n, draw in enumerate(
        order_draws(count, seed=seed, customers=customers, mean_gap_ms=mean_gap_ms, disorder_ms=disorder_ms)
    ):
        yield order_from_draw(seed, n, draw, start + timedelta(milliseconds=draw[0]))


def order_from_draw(seed: int, n: int, draw: tuple[int, int, int], timestamp: datetime) -> Order:
    """Order `n` of the stream of `seed`, from its draws (`order_draws`) and its event time."""
    _ms, rank, cents = draw
    return Order(
        order_id=f"order-{seed}-{n:08d}",
        customer_id=customer_id(rank),
        amount=Decimal(cents).scaleb(-2),
        currency="EUR",
        timestamp=timestamp,
    )


_ORDER_JSON = (
    b'{"order_id":"order-%d-%08d","customer_id":"cust-%05d","amount":%d.%02d,"currency":"EUR",'
    b'"timestamp":"%s"}'
)


def order_json(seed: int, n: int, draw: tuple[int, int, int], timestamp: bytes) -> tuple[bytes, bytes]:
    """(key, value) of order `n`, byte for byte `encode_order(order_from_draw(...))` given its
    `timestamp` text, written in one step (`pipelines generate`'s hot path;
    tests/generators/test_golden_streams.py checks the bytes)."""
    _ms, rank, cents = draw
    return b"order-%d-%08d" % (seed, n), _ORDER_JSON % (seed, n, rank, cents // 100, cents % 100, timestamp)


def order_draws(
    count: int,
    *,
    seed: int = 42,
    customers: int = DEFAULT_CUSTOMERS,
    mean_gap_ms: int = 100,
    disorder_ms: int = 500,
) -> Iterator[tuple[int, int, int]]:
    """The seeded draws behind `generate_orders`, one tuple per order: (event time in milliseconds
    after the start, the customer's rank, amount in cents). `pipelines generate` writes its JSON
    straight from these (pipelines.generators.events)."""
    if mean_gap_ms < 0 or disorder_ms < 0 or customers < 1:
        raise ValueError(
            f"gaps and disorder must not be negative and there must be customers, not {mean_gap_ms}, "
            f"{disorder_ms} and {customers}"
        )
    rng = random.Random(seed)
    ranks = range(1, customers + 1)
    cum_weights = list(itertools.accumulate(1 / r**ZIPF_EXPONENT for r in ranks))
    # The same draws as rng.choices(ranks, cum_weights=...), inlined (`bisect`), after the time
    # and the amount (clock_and_cents).
    total, last = cum_weights[-1] + 0.0, len(cum_weights) - 1
    uniform = rng.random
    # Amounts: median ~ 36 EUR, a long tail of big baskets.
    for ms, cents in clock_and_cents(
        rng, count, mean_gap_ms=mean_gap_ms, disorder_ms=disorder_ms, mu=8.2, sigma=0.8
    ):
        yield ms, ranks[bisect(cum_weights, uniform() * total, 0, last)], cents


def order_document(order: Order) -> dict[str, object]:
    """The `orders` value as a JSON object, before encoding (the amount still a Decimal)."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount": order["amount"],
        "currency": order["currency"],
        "timestamp": format_timestamp(order["timestamp"]),
    }


def encode_order(order: Order) -> tuple[bytes, bytes]:
    """(key, value) bytes of an order as it goes on the `orders` topic: key `order_id`, value
    compact JSON with the amount a number with exactly two decimals."""
    return order["order_id"].encode(), dump_json(order_document(order))
