from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from pipelines.generators.sales import CATEGORIES, encode_sale, format_timestamp, generate_sales
from tests.helpers import assert_encoded


def test_same_seed_same_bytes_other_seed_other_events() -> None:
    a, b, c = ([encode_sale(s) for s in generate_sales(500, seed=seed)] for seed in (7, 7, 8))
    assert a == b
    assert a != c


def test_format_timestamp_is_utc_millis_with_z() -> None:
    ts = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_timestamp(ts) == "2026-11-27T10:00:00.123Z"


def test_events_follow_the_contract() -> None:
    sales = list(generate_sales(2000, seed=1))
    assert len({s["sale_id"] for s in sales}) == 2000
    for sale in sales:
        key, value = encode_sale(sale)
        doc = assert_encoded(key, value, sale["sale_id"])
        assert set(doc) == {"sale_id", "order_id", "category", "amount", "currency", "timestamp"}
        assert Decimal(str(doc["amount"])) == sale["amount"] > 0
        assert sale["amount"] == sale["amount"].quantize(Decimal("0.01"))


def test_categories_are_skewed_and_time_moves_forward_with_bounded_disorder() -> None:
    sales = list(generate_sales(10_000, seed=3))
    counts = Counter(s["category"] for s in sales)
    assert set(counts) == {c for c, _ in CATEGORIES}
    assert counts.most_common(1)[0][0] == "electronics"
    assert counts["electronics"] > 4 * counts["garden"]
    times = [s["timestamp"] for s in sales]
    assert times[-1] > times[0]
    # Disorder is bounded: no event is more than 500 ms behind the latest one seen before it.
    latest = times[0]
    for t in times:
        assert (latest - t).total_seconds() <= 0.5
        latest = max(latest, t)
