"""The benchmark harness's own pure logic: statistics and the ledger comparison (no broker)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from bench.expected import ExpectedTotals, compare, normalise
from bench.report import ratios
from bench.stats import latency_summary, percentile, ratio, spread_text, summarize


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile([5, 1, 3], 0) == 1
    assert percentile([5, 1, 3], 100) == 5
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_reports_median_and_spread() -> None:
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s["n"], s["median"], s["min"], s["max"]) == (4, 2.5, 1.0, 10.0)
    assert s["q1"] == 1.75 and s["q3"] == 4.75
    assert spread_text(s, "{:.1f}") == "2.5 (1.0-10.0)"
    assert summarize([])["median"] is None


def test_latency_summary_and_ratio() -> None:
    lat = latency_summary([float(x) for x in range(1, 101)])
    assert lat["p50"] == 50.5 and lat["p99"] == pytest.approx(99.01) and lat["records"] == 100
    assert ratio(10, 4) == 2.5
    assert ratio(1, 0) is None and ratio(None, 1) is None


def _sale(ts: str, category: str, amount: str) -> bytes:
    return f'{{"category":"{category}","amount":{amount},"timestamp":"{ts}"}}'.encode()


def test_expected_totals_are_exact_decimals_per_minute_and_category() -> None:
    exp = ExpectedTotals()
    for value in (
        _sale("2026-11-27T10:00:59.999Z", "books", "0.10"),
        _sale("2026-11-27T10:00:00.000Z", "books", "0.20"),
        _sale("2026-11-27T10:01:00.000Z", "books", "1.00"),
        _sale("2026-11-27T10:00:30.000Z", "toys", "12.30"),
    ):
        exp.add(value)
    assert exp.totals() == {
        ("2026-11-27T10:00", "books"): (Decimal("0.30"), 2),
        ("2026-11-27T10:01", "books"): (Decimal("1.00"), 1),
        ("2026-11-27T10:00", "toys"): (Decimal("12.30"), 1),
    }
    assert exp.events == 4 and exp.max_timestamp == "2026-11-27T10:01:00.000Z"
    # What Spark's raw read must count: the bytes of every value sent.
    assert exp.value_bytes == 4 * len(_sale("2026-11-27T10:00:59.999Z", "books", "0.10"))


def test_the_streaming_job_is_compared_with_its_spark_ceilings_repeat_by_repeat() -> None:
    def runs(*rates: float) -> dict[str, object]:
        return {"runs": [{"rate": r} for r in rates]}

    results = {
        "aggregation": {
            "implementations": {
                "spark": runs(40.0, 60.0),
                "spark_batch": runs(100.0, 50.0),
                "spark_read": runs(200.0, 300.0),
                "naive": runs(80.0, 40.0),
            }
        }
    }
    got = ratios(results)
    assert got["spark / spark_batch"]["median"] == pytest.approx((0.4 + 1.2) / 2)
    assert got["spark / spark_read"]["median"] == pytest.approx((0.2 + 0.2) / 2)
    assert got["spark / naive"]["median"] == pytest.approx((0.5 + 1.5) / 2)


def test_compare_accepts_float_sums_only_when_they_round_to_the_exact_cents() -> None:
    expected = {("2026-11-27T10:00", "books"): (Decimal("0.30"), 2)}
    assert compare(normalise([("2026-11-27T10:00", "books", 0.1 + 0.2, 2)]), expected).ok
    wrong = compare(normalise([("2026-11-27T10:00:00", "books", 0.31, 2)]), expected)
    assert not wrong.ok and "expected 0.30" in wrong.mismatches[0]
    assert not compare(normalise([("2026-11-27T10:00", "books", 0.3, 3)]), expected).ok


def test_compare_allows_only_an_open_tail_of_missing_windows() -> None:
    expected = {
        ("2026-11-27T10:00", "books"): (Decimal("1.00"), 1),
        ("2026-11-27T10:01", "books"): (Decimal("2.00"), 1),
        ("2026-11-27T10:02", "toys"): (Decimal("3.00"), 2),
    }
    head = {("2026-11-27T10:00", "books"): (Decimal("1.00"), 1)}
    assert not compare(head, expected).ok
    tail_open = compare(head, expected, allow_open_tail=True)
    assert tail_open.ok and tail_open.missing == 2 and tail_open.missing_events == 3
    hole = {("2026-11-27T10:02", "toys"): (Decimal("3.00"), 2)}
    assert not compare(hole, expected, allow_open_tail=True).ok
    extra = {**expected, ("2026-11-27T10:03", "toys"): (Decimal("1.00"), 1)}
    assert not compare(extra, expected).ok


def test_check_serialises() -> None:
    check = compare({}, {("m", "c"): (Decimal("1.00"), 1)})
    assert json.loads(json.dumps(check.as_dict()))["ok"] is False
