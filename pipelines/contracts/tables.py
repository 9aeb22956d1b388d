"""Table contracts: the money types and the schemas of the Delta tables the jobs write."""

from __future__ import annotations

from pyspark.sql.types import (
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

MONEY = DecimalType(12, 2)
"""An amount: at most 10 digits before the point and two after."""
MONEY_SUM = DecimalType(18, 2)
"""A sum of amounts: exact, and far above what one category sells in a window."""

SALES_SCHEMA = StructType(
    [
        StructField("sale_id", StringType(), nullable=False),
        StructField("order_id", StringType(), nullable=False),
        StructField("category", StringType(), nullable=False),
        StructField("amount", MONEY, nullable=False),
        StructField("currency", StringType(), nullable=False),
        StructField("event_time", TimestampType(), nullable=False),
    ]
)
"""A parsed `sales` event as the pipelines use it (`timestamp` becomes `event_time`)."""

SALES_TABLE_SCHEMA = StructType(
    [
        *SALES_SCHEMA.fields,
        StructField("kafka_partition", IntegerType(), nullable=False),
        StructField("kafka_offset", LongType(), nullable=False),
    ]
)
"""The `sales` Delta table the spine job writes: the event plus where it was read from."""

REVENUE_COLUMNS = ("window_start", "window_end", "category", "revenue", "sales_count")
REVENUE_PER_MINUTE_SCHEMA = StructType(
    [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("category", StringType()),
        StructField("revenue", MONEY_SUM),
        StructField("sales_count", LongType()),
    ]
)
"""The `revenue_per_minute` Delta table: one row per (window, category), written once when final
(or upserted on every batch with `--mode update`)."""

CUSTOMER_COUNT_COLUMNS = ("customer_id", "order_count", "total_amount")
"""The customer-counts rows (Delta MERGE table and Kafka value): STRING, BIGINT, DECIMAL(18,2)."""
