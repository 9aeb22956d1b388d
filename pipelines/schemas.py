"""Event contracts (DESIGN.md, *contract*): one place for their Spark schemas and Python types.

Timestamps are ISO-8601 UTC with milliseconds and a `Z`; money is a JSON number with at most two
decimals, read as DECIMAL(12,2) and summed as DECIMAL(18,2); keys are UTF-8 strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypedDict

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
MONEY_SUM = DecimalType(18, 2)
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
"""Spark datetime pattern of the contract's timestamps (`2026-11-27T10:00:00.123Z`)."""

SALES_TOPIC = "sales"
ORDERS_TOPIC = "orders"


class Sale(TypedDict):
    """A `sales` event, keyed by `sale_id`."""

    sale_id: str
    order_id: str
    category: str
    amount: Decimal
    currency: str
    timestamp: datetime


SALES_JSON_SCHEMA = StructType(
    [
        StructField("sale_id", StringType()),
        StructField("order_id", StringType()),
        StructField("category", StringType()),
        StructField("amount", MONEY),
        StructField("currency", StringType()),
        # Kept as text in the JSON schema and parsed with TIMESTAMP_FORMAT, so a malformed
        # timestamp is detectable instead of silently becoming null.
        StructField("timestamp", StringType()),
    ]
)
"""The `sales` value as it is read from JSON."""

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

REVENUE_PER_MINUTE_SCHEMA = StructType(
    [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("category", StringType()),
        StructField("revenue", MONEY_SUM),
        StructField("sales_count", LongType()),
    ]
)
"""The `revenue_per_minute` Delta table (DESIGN.md contract)."""
