"""Dead letters for Spark's kafka sink: the original key and bytes, with why and where from.

Output columns are exactly what the kafka sink takes: `key`, `value` (the original bytes,
untouched) and `headers` (array<struct<key: string, value: binary>>) carrying `error.reason`,
`error.detail`, `source.topic`, `source.partition` and `source.offset`
(`pipelines.contracts.dead_letters`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import (
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)


def _header(name: str, value: Column) -> Column:
    return F.struct(F.lit(name).alias("key"), F.encode(value.cast("string"), "UTF-8").alias("value"))


def dead_letter_headers() -> Column:
    """The five dead-letter headers of a parsed row with an `error_reason`."""
    return F.array(
        _header(HEADER_REASON, F.col("error_reason")),
        _header(HEADER_DETAIL, F.col("error_detail")),
        _header(HEADER_SOURCE_TOPIC, F.col("topic")),
        _header(HEADER_SOURCE_PARTITION, F.col("partition")),
        _header(HEADER_SOURCE_OFFSET, F.col("offset")),
    )


def to_dead_letters(bad_df: DataFrame) -> DataFrame:
    """Rows with `error_reason` (from a parse transform) -> kafka sink rows for `<topic>.dlq`."""
    return bad_df.select(F.col("key"), F.col("value"), dead_letter_headers().alias("headers"))
