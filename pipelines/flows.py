"""The pipelines, wired: source -> transforms -> sink, as functions of a session and plain values.

The `jobs/` entry points parse arguments and call these; tests and `make run` call them with the
test run's or the demo's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.sinks import delta_row_count, start_delta_append
from pipelines.sources import read_kafka_stream
from pipelines.transforms.sales import parse_sales, to_sales_rows
from pipelines.triggers import trigger_kwargs

SALES_TO_DELTA = "sales_to_delta"


@dataclass(frozen=True)
class RunSummary:
    """What one run of a job did. `read = written + rejected` always holds for the spine."""

    read: int
    written: int
    rejected: int

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "written": self.written, "rejected": self.rejected}


def sales_to_delta(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    delta_path: Path,
    checkpoint: Path,
    trigger: str = "available-now",
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
) -> RunSummary:
    """The spine: `topic` -> parsed sales -> append to the Delta table at `delta_path`.

    Exactly-once into Delta across restarts (offsets in `checkpoint`, batch ids in the Delta log).
    With `trigger="available-now"` it processes what the topic holds and returns a summary; with a
    processing-time trigger it runs until stopped. Malformed records are not written: they are
    counted as `rejected` (the dead-letter topic comes with the revenue job).
    """
    raw = read_kafka_stream(
        spark,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        starting_offsets=starting_offsets,
        max_offsets_per_trigger=max_offsets_per_trigger,
    )
    rows = raw.transform(parse_sales).transform(to_sales_rows)
    before = delta_row_count(spark, delta_path)
    query = start_delta_append(
        rows,
        delta_path=delta_path,
        checkpoint=checkpoint,
        trigger=trigger_kwargs(trigger),
        query_name=SALES_TO_DELTA,
    )
    try:
        query.awaitTermination()
    finally:
        query.stop()
    # recentProgress keeps the last 100 batches, enough for the spine's available-now runs;
    # the listener-based accounting of later jobs does not have this limit.
    read = sum(int(p["numInputRows"]) for p in query.recentProgress)
    written = delta_row_count(spark, delta_path) - before
    return RunSummary(read=read, written=written, rejected=read - written)
