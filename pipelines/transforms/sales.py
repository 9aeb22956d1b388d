"""The `sales` topic: parsed with the shared event parser (`pipelines.transforms.parsing`), and the
rows of the spine's `sales` Delta table."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import SALES
from pipelines.transforms.parsing import filter_bad_records, filter_valid, parse_events

__all__ = ["filter_bad_records", "filter_valid_sales", "parse_sales", "to_sales_rows"]


def parse_sales(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows of `sales` -> key, value, topic, partition, offset, sale_id, order_id, category,
    amount (DECIMAL(12,2)), currency, event_time, is_heartbeat, error_reason, error_detail."""
    return parse_events(kafka_df, SALES)


def filter_valid_sales(parsed_df: DataFrame) -> DataFrame:
    """Good records (sales and heartbeats) of `parse_sales` output."""
    return filter_valid(parsed_df)


def to_sales_rows(parsed_df: DataFrame) -> DataFrame:
    """Good, non-heartbeat sales as rows of the `sales` Delta table (contracts.SALES_TABLE_SCHEMA)."""
    return parsed_df.filter(F.col("error_reason").isNull() & ~F.col("is_heartbeat")).select(
        "sale_id",
        "order_id",
        "category",
        "amount",
        "currency",
        "event_time",
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )
