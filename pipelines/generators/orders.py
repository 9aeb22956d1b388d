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

from pipelines.generators.common import DEFAULT_START, dump_json, format_timestamp

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
    if mean_gap_ms < 0 or disorder_ms < 0 or customers < 1:
        raise ValueError(
            f"gaps and disorder must not be negative and there must be customers, not {mean_gap_ms}, "
            f"{disorder_ms} and {customers}"
        )
    rng = random.Random(seed)
    ranks = range(1, customers + 1)
    cum_weights = list(itertools.accumulate(1 / r**ZIPF_EXPONENT for r in ranks))
    # The same draws as rng.choices(ranks, cum_weights=...) and rng.randint(0, k), inlined (see
    # generate_sales).
    total, last = cum_weights[-1] + 0.0, len(cum_weights) - 1
    below, uniform, lognormal = rng._randbelow, rng.random, rng.lognormvariate  # type: ignore[attr-defined]
    gap_draws, disorder_draws = 2 * mean_gap_ms + 1, disorder_ms + 1
    clock_ms = 0  # the clock in whole milliseconds since `start`: one datetime per event
    for n in range(count):
        clock_ms += below(gap_draws)
        event_time = start + timedelta(milliseconds=clock_ms - below(disorder_draws))
        cents = int(lognormal(8.2, 0.8)) + 1  # median ~ 36 EUR, a long tail of big baskets
        yield Order(
            order_id=f"order-{seed}-{n:08d}",
            customer_id=customer_id(ranks[bisect(cum_weights, uniform() * total, 0, last)]),
            amount=Decimal(cents).scaleb(-2),
            currency="EUR",
            timestamp=event_time,
        )


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
