"""Revenue per category per event-time window: the aggregation behind `revenue_per_minute`.

Output (the `revenue_per_minute` contract): window_start, window_end (TIMESTAMP), category
(STRING), revenue (DECIMAL(18,2), exact), sales_count (BIGINT).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import MONEY_SUM, REVENUE_COLUMNS
from pipelines.contracts.events import TIMESTAMP_OUTPUT_FORMAT

__all__ = ["REVENUE_COLUMNS", "to_revenue_per_window", "to_revenue_records", "to_revenue_stream"]


def with_event_time_watermark(sales_df: DataFrame, watermark: str) -> DataFrame:
    """Bound how late an event may be: a window is final once the watermark (the latest event
    time seen minus `watermark`) has passed its end, and rows for final windows are dropped (and
    counted by Spark as `numRowsDroppedByWatermark`). A no-op on batch DataFrames."""
    return sales_df.withWatermark("event_time", watermark)


def filter_heartbeats(sales_df: DataFrame) -> DataFrame:
    """Drop heartbeat rows. Applied after the watermark so heartbeats still advance it.

    Spark's optimizer pushes a filter below the watermark operator unless the filter mentions the
    event-time column, and it splits `a AND b` into separately pushed parts. A plain
    `NOT is_heartbeat` would therefore run before the watermark and heartbeats would never move
    it; this single predicate reads `event_time`, so it stays above.
    """
    return sales_df.filter(~(F.col("is_heartbeat") & F.col("event_time").isNotNull()))


def to_revenue_per_window(sales_df: DataFrame, window: str = "1 minute") -> DataFrame:
    """Sum `amount` and count sales per tumbling event-time `window` and category.

    Input: parsed, valid sales (`category`, `amount` DECIMAL(12,2), `event_time`). The sum is a
    DECIMAL(18,2): exact, never a float; DECIMAL(18,2) holds 10^16 currency units, far above what
    one category sells in a window.
    """
    return (
        sales_df.groupBy(F.window("event_time", window).alias("window"), F.col("category"))
        .agg(F.sum("amount").alias("revenue"), F.count(F.lit(1)).alias("sales_count"))
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            F.col("category"),
            F.col("revenue").cast(MONEY_SUM).alias("revenue"),
            F.col("sales_count"),
        )
    )


def to_revenue_stream(parsed_df: DataFrame, *, window: str, watermark: str) -> DataFrame:
    """Valid parsed records -> watermark -> no heartbeats -> revenue per window and category."""
    return (
        parsed_df.filter(F.col("error_reason").isNull())
        .transform(with_event_time_watermark, watermark)
        .transform(filter_heartbeats)
        .transform(to_revenue_per_window, window)
    )


def to_revenue_records(revenue_df: DataFrame) -> DataFrame:
    """Revenue rows -> kafka sink rows for the `revenue-per-minute` topic (contracts.REVENUE_TOPIC).

    The key is `<window_start ISO-8601>|<category>`: deterministic, so every update of one window
    and category lands on the same partition in order, a compacted topic keeps the latest, and a
    consumer can deduplicate replays (Spark's kafka sink is at-least-once).
    """
    start_text = F.date_format("window_start", TIMESTAMP_OUTPUT_FORMAT)
    return revenue_df.select(
        F.concat(start_text, F.lit("|"), F.col("category")).alias("key"),
        F.to_json(
            F.struct(
                start_text.alias("window_start"),
                F.date_format("window_end", TIMESTAMP_OUTPUT_FORMAT).alias("window_end"),
                F.col("category"),
                F.col("revenue"),
                F.col("sales_count"),
            )
        ).alias("value"),
    )
