"""Parsing Kafka records of the `sales` topic into typed rows.

Spark's permissive `from_json` turns garbage into nulls without a word, so parsing here keeps a
validity flag: a record is valid only when its JSON parsed, every field is present with the right
type, and its timestamp matches the contract. Invalid records are never written as null rows.
"""

from __future__ import annotations

import operator
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.schemas import SALES_JSON_SCHEMA, TIMESTAMP_FORMAT

REQUIRED_FIELDS = ("sale_id", "order_id", "category", "amount", "currency", "timestamp")


def parse_timestamp(col: Column) -> Column:
    """Contract timestamp text (`2026-11-27T10:00:00.123Z`) -> TIMESTAMP, null when malformed."""
    return F.try_to_timestamp(col, F.lit(TIMESTAMP_FORMAT))


def with_parsed_sale(kafka_df: DataFrame) -> DataFrame:
    """Add `sale` (the parsed JSON struct), `event_time` and `is_valid` to Kafka source rows."""
    fields_present = reduce(operator.and_, [F.col(f"sale.{f}").isNotNull() for f in REQUIRED_FIELDS])
    is_valid = fields_present & F.col("event_time").isNotNull() & (F.col("sale.amount") >= 0)
    return (
        kafka_df.withColumn("sale", F.from_json(F.col("value").cast("string"), SALES_JSON_SCHEMA))
        .withColumn("event_time", parse_timestamp(F.col("sale.timestamp")))
        .withColumn("is_valid", F.coalesce(is_valid, F.lit(False)))
    )


def to_sales_rows(parsed_df: DataFrame) -> DataFrame:
    """Valid parsed sales as rows of the `sales` Delta table (schemas.SALES_TABLE_SCHEMA)."""
    return parsed_df.filter(F.col("is_valid")).select(
        F.col("sale.sale_id").alias("sale_id"),
        F.col("sale.order_id").alias("order_id"),
        F.col("sale.category").alias("category"),
        F.col("sale.amount").alias("amount"),
        F.col("sale.currency").alias("currency"),
        F.col("event_time"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )


def filter_invalid_sales(parsed_df: DataFrame) -> DataFrame:
    """The records that failed parsing, with where they came from (for counting and dead letters)."""
    return parsed_df.filter(~F.col("is_valid")).select("key", "value", "topic", "partition", "offset")
