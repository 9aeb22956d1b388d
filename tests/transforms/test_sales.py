"""Parsing `sales` records on batch DataFrames shaped like the kafka source's output: every good
record becomes a typed row, every bad one keeps its bytes and gets the right reason code."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from pipelines.contracts import SALES_TABLE_SCHEMA
from pipelines.transforms.sales import filter_bad_records, filter_valid_sales, parse_sales, to_sales_rows
from tests.helpers import kafka_batch


def sale(**overrides: object) -> bytes:
    """A valid sale's JSON with some fields replaced (a value of ... removes the field)."""
    import json

    doc: dict[str, object] = {
        "sale_id": "s",
        "order_id": "o",
        "category": "toys",
        "amount": "__AMOUNT__",
        "currency": "EUR",
        "timestamp": "2026-11-27T10:00:00.000Z",
    }
    amount = overrides.pop("amount", "1.00")
    doc.update(overrides)
    if amount is ...:
        del doc["amount"]
    doc = {k: v for k, v in doc.items() if v is not ...}
    text = json.dumps(doc).replace('"__AMOUNT__"', str(amount))
    return text.encode()


GOOD = [
    # (value, expected sale_id, category, amount, event_time)
    (b'{"sale_id":"s1","order_id":"o1","category":"books","amount":12.30,"currency":"EUR",'
     b'"timestamp":"2026-11-27T10:00:00.123Z"}', "s1", "books", Decimal("12.30"),
     datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)),
    # A 0.00 amount is a sale, not an error; the last millisecond of a day parses exactly.
    (sale(sale_id="s2", amount="0.00", timestamp="2026-11-27T23:59:59.999Z"), "s2", "toys", Decimal("0.00"),
     datetime(2026, 11, 27, 23, 59, 59, 999000, tzinfo=UTC)),
    # The largest DECIMAL(12,2), and an integer amount.
    (sale(sale_id="s3", amount="9999999999.99"), "s3", "toys", Decimal("9999999999.99"),
     datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
    (sale(sale_id="s4", amount="7"), "s4", "toys", Decimal("7.00"),
     datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
]  # fmt: skip

BAD = [
    (None, "empty_value"),
    (b"", "empty_value"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'"just a string"', "invalid_json"),
    (sale(amount=...), "missing_field:amount"),
    (sale(sale_id=...), "missing_field:sale_id"),
    (sale(category=None), "missing_field:category"),
    (sale(timestamp=...), "missing_field:timestamp"),
    (sale(amount='"12.30"'), "bad_type:amount"),
    (sale(amount="12.345"), "bad_type:amount"),
    (sale(amount="99999999999.99"), "bad_type:amount"),
    (sale(category=7), "bad_type:category"),
    (sale(currency=["EUR"]), "bad_type:currency"),
    (sale(timestamp=1764237600000), "bad_type:timestamp"),
    (sale(timestamp="yesterday"), "bad_timestamp"),
    (sale(timestamp="2026-11-27 10:00:00"), "bad_timestamp"),
    (sale(amount="-1.00"), "negative_amount"),
]


@pytest.fixture
def kafka_df(spark: SparkSession) -> DataFrame:
    values = (
        [v for v, *_ in GOOD]
        + [v for v, _ in BAD]
        + [b'{"heartbeat":true,"timestamp":"2026-11-27T10:05:00.000Z"}']
    )
    return kafka_batch(spark, "sales", [(b"k", v) for v in values])


def test_good_records_become_typed_rows(spark: SparkSession, kafka_df: DataFrame) -> None:
    actual = kafka_df.transform(parse_sales).transform(to_sales_rows)
    expected = spark.createDataFrame(
        [(sid, "o1" if sid == "s1" else "o", cat, amount, "EUR", ts, 0, offset)
         for offset, (_, sid, cat, amount, ts) in enumerate(GOOD)],
        schema=SALES_TABLE_SCHEMA,
    )  # fmt: skip
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


def test_every_bad_record_gets_its_reason_and_keeps_its_bytes(kafka_df: DataFrame) -> None:
    bad = kafka_df.transform(parse_sales).transform(filter_bad_records)
    got = sorted(
        (r["offset"], None if r["value"] is None else bytes(r["value"]), r["error_reason"])
        for r in bad.collect()
    )
    expected = [(len(GOOD) + i, value, reason) for i, (value, reason) in enumerate(BAD)]
    assert got == expected
    # Typed columns of a bad record are null, never half-parsed values.
    assert {(r["sale_id"], r["amount"], r["event_time"]) for r in bad.collect()} == {(None, None, None)}


def test_error_details_say_what_is_wrong(kafka_df: DataFrame) -> None:
    details = {
        (r["error_reason"], r["error_detail"])
        for r in kafka_df.transform(parse_sales).transform(filter_bad_records).collect()
    }
    for expected in [
        ("empty_value", "the record has no value"),
        ("invalid_utf8", "the value is not valid UTF-8 text"),
        ("invalid_json", "the value is not a JSON object: {not json"),
        ("missing_field:amount", "required field 'amount' is missing or null"),
        ("bad_type:category", "field 'category' must be a JSON string, got BIGINT"),
        ("bad_type:amount", "field 'amount' must be a JSON number with at most two decimals that fits "
                            'DECIMAL(12,2), got "12.30" (STRING)'),
        ("bad_timestamp", 'timestamp "yesterday" is not ISO-8601 UTC with milliseconds and Z '
                          "(2026-11-27T10:00:00.123Z)"),
        ("negative_amount", "amount -1.00 is negative"),
    ]:  # fmt: skip
        assert expected in details


def test_heartbeats_are_valid_and_carry_only_event_time(kafka_df: DataFrame) -> None:
    valid = kafka_df.transform(parse_sales).transform(filter_valid_sales)
    heartbeats = [r for r in valid.collect() if r["is_heartbeat"]]
    assert [(r["sale_id"], r["amount"], r["event_time"]) for r in heartbeats] == [
        (None, None, datetime(2026, 11, 27, 10, 5))
    ]
    assert valid.count() == len(GOOD) + 1
