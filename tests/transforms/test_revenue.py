"""The revenue aggregation on batch DataFrames: windows, categories, exact decimal sums."""

from __future__ import annotations

from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    BooleanType,
    DecimalType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipelines.contracts import REVENUE_PER_MINUTE_SCHEMA
from pipelines.transforms.revenue import to_revenue_per_window, to_revenue_stream
from tests.helpers import t

SALES = StructType(
    [
        StructField("category", StringType()),
        StructField("amount", DecimalType(12, 2)),
        StructField("event_time", TimestampType()),
        StructField("is_heartbeat", BooleanType()),
        StructField("error_reason", StringType()),
    ]
)
REVENUE = REVENUE_PER_MINUTE_SCHEMA


def test_tumbling_windows_per_category_with_exact_sums(spark: SparkSession) -> None:
    sales = spark.createDataFrame(
        [
            ("books", Decimal("10.10"), t(0, 0), False, None),  # first instant of a window
            ("books", Decimal("0.20"), t(0, 59, 999), False, None),  # last instant of the same window
            ("books", Decimal("5.00"), t(1, 0), False, None),  # the next window starts exactly here
            ("toys", Decimal("0.00"), t(0, 30), False, None),  # a zero amount still counts as a sale
            ("toys", Decimal("9999999999.99"), t(0, 31), False, None),
            ("toys", Decimal("9999999999.99"), t(0, 32), False, None),  # sum exceeds DECIMAL(12,2)
        ],
        SALES,
    )
    expected = spark.createDataFrame(
        [
            (t(0), t(1), "books", Decimal("10.30"), 2),
            (t(1), t(2), "books", Decimal("5.00"), 1),
            (t(0), t(1), "toys", Decimal("19999999999.98"), 3),
        ],
        REVENUE,
    )
    actual = to_revenue_per_window(sales, "1 minute")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_stream_shape_drops_heartbeats_and_bad_rows_before_summing(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [
            ("home", Decimal("1.50"), t(2, 1), False, None),
            (None, None, t(2, 5), True, None),  # heartbeat: advances time, never summed
            (None, None, None, False, "invalid_json"),  # a dead letter: never summed
            ("home", Decimal("2.25"), t(2, 40), False, None),
        ],
        SALES,
    )
    expected = spark.createDataFrame([(t(2), t(3), "home", Decimal("3.75"), 2)], REVENUE)
    actual = to_revenue_stream(rows, window="1 minute", watermark="30 seconds")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_five_minute_windows(spark: SparkSession) -> None:
    sales = spark.createDataFrame(
        [("garden", Decimal("1.00"), t(m), False, None) for m in range(0, 10)], SALES
    )
    expected = spark.createDataFrame(
        [
            (t(0), t(5), "garden", Decimal("5.00"), 5),
            (t(5), t(10), "garden", Decimal("5.00"), 5),
        ],
        REVENUE,
    )
    assert_df_equality(
        to_revenue_per_window(sales, "5 minutes"), expected, ignore_row_order=True, ignore_nullable=True
    )
