"""The `orders` topic: parsing (the shared event parser) and the per-customer running totals."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import CUSTOMER_COUNT_COLUMNS, MONEY_SUM, ORDERS
from pipelines.transforms.parsing import parse_events


def parse_orders(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows of `orders` -> key, value, topic, partition, offset, order_id, customer_id,
    amount (DECIMAL(12,2)), currency, event_time, is_heartbeat, error_reason, error_detail."""
    return parse_events(kafka_df, ORDERS)


def to_customer_order_counts(parsed_df: DataFrame) -> DataFrame:
    """Valid orders -> one row per customer: `order_count` (BIGINT) and `total_amount`
    (DECIMAL(18,2), exact) over every order seen so far.

    Streaming, this is a stateful aggregation without a watermark: the state keeps one row per
    customer for as long as the query lives (a table, not a window), which is bounded by the number
    of customers. Every order counts, however late its timestamp.
    """
    return (
        parsed_df.filter(F.col("error_reason").isNull())
        .groupBy("customer_id")
        .agg(F.count(F.lit(1)).alias("order_count"), F.sum("amount").alias("total_amount"))
        .select(
            F.col("customer_id"),
            F.col("order_count"),
            F.col("total_amount").cast(MONEY_SUM).alias("total_amount"),
        )
    )


def to_customer_count_records(counts_df: DataFrame) -> DataFrame:
    """Per-customer rows -> kafka sink rows keyed by `customer_id`, for a compacted topic: the
    latest record of each key is the customer's current count."""
    return counts_df.select(
        F.col("customer_id").alias("key"),
        F.to_json(F.struct(*CUSTOMER_COUNT_COLUMNS)).alias("value"),
    )
