"""Writers: Delta tables (exactly-once through the checkpoint) and, later, Kafka and dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery


def start_delta_append(
    df: DataFrame,
    *,
    delta_path: Path,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
) -> StreamingQuery:
    """Append a stream to the Delta table at `delta_path`.

    Exactly-once: Delta records each micro-batch's id with the query's id in its transaction log,
    and the checkpoint holds the Kafka offsets, so a batch replayed after a crash is skipped.
    Every query needs its own `checkpoint` folder; two queries must never share one.
    """
    return (
        df.writeStream.format("delta")
        .outputMode("append")
        .queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
        .trigger(**trigger)
        .start(str(delta_path))
    )


def delta_row_count(spark: SparkSession, delta_path: Path) -> int:
    """Rows in the Delta table at `delta_path`; 0 when no table exists there yet."""
    if not (delta_path / "_delta_log").is_dir():
        return 0
    return spark.read.format("delta").load(str(delta_path)).count()
