"""Orders parsing and the per-customer running totals, on batch DataFrames."""

from __future__ import annotations

from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql.types import DecimalType, LongType, StringType, StructField, StructType

from pipelines.transforms.orders import parse_orders, to_customer_count_records, to_customer_order_counts
from tests.helpers import kafka_batch

COUNTS = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("order_count", LongType()),
        StructField("total_amount", DecimalType(18, 2)),
    ]
)


def order(order_id: str, customer: str, amount: str, ts: str = "2026-11-27T10:00:00.000Z") -> bytes:
    return (
        f'{{"order_id":"{order_id}","customer_id":"{customer}","amount":{amount},'
        f'"currency":"EUR","timestamp":"{ts}"}}'
    ).encode()


RECORDS = [
    order("o1", "c1", "10.00"),
    order("o2", "c1", "0.00"),
    order("o3", "c2", "9999999999.99"),
    order("o4", "c2", "9999999999.99"),
    order("o5", "c3", "1.01", ts="2020-01-01T00:00:00.000Z"),  # an old order still counts
    b'{"order_id":"o6","amount":1.00,"currency":"EUR","timestamp":"2026-11-27T10:00:00.000Z"}',
    order("o7", "c1", "-5.00"),
    None,
]


def test_orders_parse_with_reasons(spark: SparkSession) -> None:
    parsed = kafka_batch(spark, "orders", [(b"k", v) for v in RECORDS]).transform(parse_orders).collect()
    assert [r["error_reason"] for r in parsed] == [
        None, None, None, None, None, "missing_field:customer_id", "negative_amount", "empty_value",
    ]  # fmt: skip
    assert [r["customer_id"] for r in parsed[:5]] == ["c1", "c1", "c2", "c2", "c3"]


def test_customer_counts_are_exact(spark: SparkSession) -> None:
    df = kafka_batch(spark, "orders", [(b"k", v) for v in RECORDS])
    actual = df.transform(parse_orders).transform(to_customer_order_counts)
    expected = spark.createDataFrame(
        [("c1", 2, Decimal("10.00")), ("c2", 2, Decimal("19999999999.98")), ("c3", 1, Decimal("1.01"))],
        COUNTS,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    records = {r["key"]: r["value"] for r in actual.transform(to_customer_count_records).collect()}
    assert records["c2"] == '{"customer_id":"c2","order_count":2,"total_amount":19999999999.98}'
