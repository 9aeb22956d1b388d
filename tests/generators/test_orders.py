"""The `orders` generator: the contract, the same bytes for the same seed, and a realistic shape."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from decimal import Decimal

from pipelines.contracts import ORDER_FIELDS
from pipelines.generators.common import DEFAULT_START
from pipelines.generators.orders import encode_order, generate_orders
from tests.helpers import assert_encoded


def test_same_seed_same_bytes_other_seed_other_events() -> None:
    a, b, c = ([encode_order(o) for o in generate_orders(500, seed=seed)] for seed in (7, 7, 8))
    assert a == b
    assert len(set(a) & set(c)) == 0  # not one event in common: ids carry the seed


def test_events_follow_the_contract() -> None:
    orders = list(generate_orders(2000, seed=1))
    assert len({o["order_id"] for o in orders}) == 2000
    for order in orders:
        key, value = encode_order(order)
        doc = assert_encoded(key, value, order["order_id"])
        assert list(doc) == list(ORDER_FIELDS)
        assert doc["customer_id"] == order["customer_id"]
        assert doc["currency"] == "EUR"
        assert json.loads(value, parse_float=Decimal)["amount"] == order["amount"]
        assert order["amount"] == order["amount"].quantize(Decimal("0.01")) > 0


def test_customers_are_skewed_and_amounts_have_cents() -> None:
    orders = list(generate_orders(20_000, seed=3))
    per_customer = Counter(o["customer_id"] for o in orders)
    ranked = [customer for customer, _ in per_customer.most_common()]
    # Zipf-like: the customers are ranked by their number, a few place a large share of the orders...
    assert ranked[:3] == ["cust-00001", "cust-00002", "cust-00003"]
    assert 0.12 < per_customer["cust-00001"] / 20_000 < 0.22
    assert 0.35 < sum(n for _, n in per_customer.most_common(10)) / 20_000 < 0.55
    # ... and there is a long tail of customers with one or two orders.
    assert len(per_customer) > 1000
    assert sum(1 for n in per_customer.values() if n <= 2) > 500
    amounts = sorted(o["amount"] for o in orders)
    assert sum(1 for a in amounts if a % 1 != 0) / len(amounts) > 0.95
    assert Decimal("20") < amounts[len(amounts) // 2] < Decimal("60")  # median of a few tens of euros
    assert amounts[-1] > 10 * amounts[len(amounts) // 2]  # a long tail of big baskets


def test_time_moves_forward_with_bounded_disorder_from_a_fixed_start() -> None:
    orders = list(generate_orders(20_000, seed=3))
    times = [o["timestamp"] for o in orders]
    assert times[0] - DEFAULT_START <= timedelta(milliseconds=200)
    # About 100 ms per event: 20,000 events span about 2,000 s of event time.
    assert timedelta(seconds=1800) < times[-1] - times[0] < timedelta(seconds=2200)
    latest = times[0]
    out_of_order = 0
    for t in times:
        assert latest - t <= timedelta(milliseconds=500)
        out_of_order += t < latest
        latest = max(latest, t)
    assert 0.2 < out_of_order / len(times) < 0.7  # disorder is real, and bounded
    assert all(t.microsecond % 1000 == 0 for t in times)  # milliseconds, as the contract writes them
