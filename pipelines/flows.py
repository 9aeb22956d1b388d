"""The pipelines, wired: source -> transforms -> sink, as functions of a session and plain values.

The `jobs/` entry points parse arguments and call these; tests and `make run` call them with the
test run's or the demo's session.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipelines.sinks import (
    delta_row_count,
    start_delta_append,
    start_delta_merge,
    start_kafka_sink,
)
from pipelines.sources import read_kafka_stream
from pipelines.transforms.dead_letters import to_dead_letters
from pipelines.transforms.revenue import to_revenue_records, to_revenue_stream
from pipelines.transforms.sales import filter_bad_records, parse_sales, to_sales_rows
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


REVENUE_PER_MINUTE = "revenue_per_minute"
REVENUE_TOPIC = "revenue-per-minute"
SINKS = ("delta", "kafka", "both")
MODES = ("append", "update")


@dataclass(frozen=True)
class RevenueRunSummary:
    """What one available-now run of the revenue job read and where every record went.

    `read = aggregated + late + dead_lettered + heartbeats + still_open` holds exactly: every
    record read was summed into a written window, dropped as late, dead-lettered, a heartbeat,
    or sits in a window that is not final yet (it is written by a later run). `late` is exact
    (by reconciliation); `spark_dropped_by_watermark` is Spark's own metric, which counts rows
    after partial aggregation and so can be smaller.
    """

    read: int
    aggregated: int
    late: int
    dead_lettered: int
    heartbeats: int
    still_open: int
    windows_written: int
    spark_dropped_by_watermark: int

    @property
    def reconciles(self) -> bool:
        parts = self.aggregated + self.late + self.dead_lettered + self.heartbeats + self.still_open
        return self.read == parts and self.late >= 0

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "reconciles": self.reconciles}


def _progress(query: StreamingQuery) -> list[dict[str, Any]]:
    return [json.loads(p.json) for p in query.recentProgress]


def _observed(progress: list[dict[str, Any]], name: str, metric: str) -> int:
    return sum(int((p.get("observedMetrics") or {}).get(name, {}).get(metric) or 0) for p in progress)


def last_committed_batch(checkpoint: Path) -> int | None:
    """The id of the last micro-batch a query committed (its checkpoint's `commits/` log)."""
    commits = checkpoint / "commits"
    ids = [int(p.name) for p in commits.iterdir() if p.name.isdigit()] if commits.is_dir() else []
    return max(ids, default=None)


def _open_window_sales(spark: SparkSession, checkpoint: Path) -> int:
    """Sales held in the aggregation state (windows not final yet), read with Spark's
    `statestore` data source at the query's last committed batch (a batch that was running when
    the job died has state files but no commit, and is not what the table reflects)."""
    batch = last_committed_batch(checkpoint)
    if batch is None or not (checkpoint / "state").is_dir():
        return 0
    # The state store reader needs the session's state store coordinator, which Spark creates
    # with the streaming query manager: touch it first in a session that has run no query yet.
    _ = spark.streams.active
    state = spark.read.format("statestore").option("batchId", batch).load(str(checkpoint))
    total = state.select(F.sum("value.count").alias("n")).first()
    return int(total["n"] or 0) if total is not None else 0


def _table_sales_count(spark: SparkSession, delta_path: Path) -> int:
    if not (delta_path / "_delta_log").is_dir():
        return 0
    row = spark.read.format("delta").load(str(delta_path)).select(F.sum("sales_count").alias("n")).first()
    return int(row["n"] or 0) if row is not None else 0


class RevenueJob:
    """The running queries of the revenue job, and what the tables held when they started."""

    def __init__(
        self,
        spark: SparkSession,
        queries: dict[str, StreamingQuery],
        *,
        checkpoint: Path,
        delta_path: Path | None,
        mode: str,
    ) -> None:
        """Create before starting `queries` (then fill it): the baselines are read here."""
        self.spark = spark
        self.queries = queries
        self.checkpoint = checkpoint
        self.delta_path = delta_path
        self.mode = mode
        self._sales_before = _table_sales_count(spark, delta_path) if delta_path else 0
        self._rows_before = delta_row_count(spark, delta_path) if delta_path else 0
        self._open_before = self._open_sales()

    def _open_sales(self) -> int:
        if self.mode != "append" or self.delta_path is None:
            return 0
        return _open_window_sales(self.spark, self.checkpoint / "delta")

    @property
    def main(self) -> StreamingQuery:
        return self.queries.get("delta") or self.queries["kafka"]

    def await_termination(self) -> None:
        """Wait until every query has stopped (available-now) or one fails (re-raised)."""
        try:
            for q in self.queries.values():
                q.awaitTermination()
        finally:
            self.stop()

    def process_all_available(self) -> None:
        """Block until every query has processed what its source holds (processing-time runs)."""
        for q in self.queries.values():
            q.processAllAvailable()

    def stop(self) -> None:
        for q in self.queries.values():
            q.stop()

    def summary(self) -> RevenueRunSummary:
        """How every record this run read was accounted for (call after the queries stopped)."""
        progress = _progress(self.main)
        read = _observed(progress, "records", "read")
        dead = _observed(progress, "records", "dead_lettered")
        heartbeats = _observed(progress, "records", "heartbeats")
        dropped = sum(
            int(s.get("numRowsDroppedByWatermark") or 0)
            for p in progress
            for s in p.get("stateOperators") or []
        )
        if self.delta_path is None or "delta" not in self.queries:
            # Without a table to count what was written, only what was observed directly is known.
            return RevenueRunSummary(read, 0, 0, dead, heartbeats, 0, 0, dropped)
        aggregated = _table_sales_count(self.spark, self.delta_path) - self._sales_before
        still_open = self._open_sales() - self._open_before
        late = read - dead - heartbeats - aggregated - still_open
        windows = delta_row_count(self.spark, self.delta_path) - self._rows_before
        return RevenueRunSummary(read, aggregated, late, dead, heartbeats, still_open, windows, dropped)


def start_revenue_per_minute(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    checkpoint: Path,
    delta_path: Path | None,
    sink: str = "delta",
    mode: str = "append",
    window: str = "1 minute",
    watermark: str = "30 seconds",
    trigger: str = "available-now",
    output_topic: str = REVENUE_TOPIC,
    dlq_topic: str | None = None,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
) -> RevenueJob:
    """Start the queries of the revenue job (each with its own folder under `checkpoint`):

    * `delta`: append mode, one row per (window, category) written once when the window is final,
      exactly-once across restarts; or, with `mode="update"`, a MERGE upsert on every batch,
      idempotent on replay (for live dashboards: open windows are visible and change);
    * `kafka`: update mode to `output_topic`, keyed by window and category (at-least-once);
    * `dlq`: every record that does not parse goes to `dlq_topic` (default `<topic>.dlq`) with its
      original bytes and the reason; the job never stops on bad input.

    A window is final once the watermark (latest event time seen minus `watermark`) passes its
    end. Spark closes windows in the batch after the one that advanced the watermark: a running
    (processing-time) query does that on its own, even when input goes quiet, if a heartbeat
    record carries event time forward; an available-now run leaves them open for the next run.
    """
    if sink not in SINKS or mode not in MODES:
        raise ValueError(f"sink must be one of {SINKS} and mode one of {MODES}")
    if sink in ("delta", "both") and delta_path is None:
        raise ValueError("a Delta sink needs delta_path")
    trig = trigger_kwargs(trigger)

    def parsed() -> DataFrame:
        return read_kafka_stream(
            spark,
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            starting_offsets=starting_offsets,
            max_offsets_per_trigger=max_offsets_per_trigger,
        ).transform(parse_sales)

    def counted(df: DataFrame) -> DataFrame:
        # Observed metrics are exact per batch and ride along with the query's progress.
        return df.observe(
            "records",
            F.count(F.lit(1)).alias("read"),
            F.sum(F.col("error_reason").isNotNull().cast("long")).alias("dead_lettered"),
            F.sum(F.col("is_heartbeat").cast("long")).alias("heartbeats"),
        )

    queries: dict[str, StreamingQuery] = {}
    job = RevenueJob(spark, queries, checkpoint=checkpoint, delta_path=delta_path, mode=mode)
    try:
        queries["dlq"] = start_kafka_sink(
            parsed().transform(filter_bad_records).transform(to_dead_letters),
            bootstrap_servers=bootstrap_servers,
            topic=dlq_topic or f"{topic}.dlq",
            checkpoint=checkpoint / "dlq",
            trigger=trig,
            query_name=f"{REVENUE_PER_MINUTE}_dlq",
        )
        if sink in ("delta", "both"):
            assert delta_path is not None
            revenue = counted(parsed()).transform(to_revenue_stream, window=window, watermark=watermark)
            if mode == "append":
                queries["delta"] = start_delta_append(
                    revenue, delta_path=delta_path, checkpoint=checkpoint / "delta", trigger=trig,
                    query_name=f"{REVENUE_PER_MINUTE}_delta",
                )  # fmt: skip
            else:
                queries["delta"] = start_delta_merge(
                    revenue, delta_path=delta_path, checkpoint=checkpoint / "merge", trigger=trig,
                    query_name=f"{REVENUE_PER_MINUTE}_merge", keys=("window_start", "category"),
                )  # fmt: skip
        if sink in ("kafka", "both"):
            source = parsed() if "delta" in queries else counted(parsed())
            updates = source.transform(to_revenue_stream, window=window, watermark=watermark)
            queries["kafka"] = start_kafka_sink(
                updates.transform(to_revenue_records),
                bootstrap_servers=bootstrap_servers, topic=output_topic, checkpoint=checkpoint / "kafka",
                trigger=trig, query_name=f"{REVENUE_PER_MINUTE}_kafka", output_mode="update",
            )  # fmt: skip
    except Exception:
        for q in queries.values():
            q.stop()
        raise
    return job


CUSTOMER_ORDER_COUNTS = "customer_order_counts"
CUSTOMER_COUNTS_TOPIC = "customer-order-counts"


def start_customer_order_counts(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    checkpoint: Path,
    sink: str = "kafka",
    output_topic: str = CUSTOMER_COUNTS_TOPIC,
    delta_path: Path | None = None,
    dlq_topic: str | None = None,
    trigger: str = "available-now",
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    dead_letters: bool = True,
) -> dict[str, StreamingQuery]:
    """Running order count and amount per customer from `topic` (update mode):

    * `kafka`: every changed customer to `output_topic`, keyed by `customer_id` (make it a
      compacted topic: the latest record per key is the current count);
    * `delta`: a MERGE by `customer_id` into `delta_path`, idempotent on replay;
    * `dlq`: orders that do not parse, to `dlq_topic` (default `<topic>.dlq`); pass
      `dead_letters=False` when another job already dead-letters the same topic's bad records.

    The counts live in the query's RocksDB state (changelog checkpointing), so a restart on the
    same checkpoint continues them; `read_customer_state` reads that state directly.
    """
    from pipelines.transforms.orders import (
        parse_orders,
        to_customer_count_records,
        to_customer_order_counts,
    )

    if sink not in SINKS:
        raise ValueError(f"sink must be one of {SINKS}")
    if sink in ("delta", "both") and delta_path is None:
        raise ValueError("a Delta sink needs delta_path")
    trig = trigger_kwargs(trigger)

    def parsed() -> DataFrame:
        return read_kafka_stream(
            spark, bootstrap_servers=bootstrap_servers, topic=topic, starting_offsets=starting_offsets,
            max_offsets_per_trigger=max_offsets_per_trigger,
        ).transform(parse_orders)  # fmt: skip

    queries: dict[str, StreamingQuery] = {}
    try:
        if dead_letters:
            queries["dlq"] = start_kafka_sink(
                parsed().transform(filter_bad_records).transform(to_dead_letters),
                bootstrap_servers=bootstrap_servers, topic=dlq_topic or f"{topic}.dlq",
                checkpoint=checkpoint / "dlq", trigger=trig, query_name=f"{CUSTOMER_ORDER_COUNTS}_dlq",
            )  # fmt: skip
        if sink in ("kafka", "both"):
            queries["kafka"] = start_kafka_sink(
                parsed().transform(to_customer_order_counts).transform(to_customer_count_records),
                bootstrap_servers=bootstrap_servers, topic=output_topic, checkpoint=checkpoint / "kafka",
                trigger=trig, query_name=f"{CUSTOMER_ORDER_COUNTS}_kafka", output_mode="update",
            )  # fmt: skip
        if sink in ("delta", "both"):
            assert delta_path is not None
            queries["delta"] = start_delta_merge(
                parsed().transform(to_customer_order_counts), delta_path=delta_path,
                checkpoint=checkpoint / "merge", trigger=trig, query_name=f"{CUSTOMER_ORDER_COUNTS}_merge",
                keys=("customer_id",),
            )  # fmt: skip
    except Exception:
        for q in queries.values():
            q.stop()
        raise
    return queries


def read_customer_state(spark: SparkSession, query_checkpoint: Path) -> DataFrame:
    """The per-customer counts held in a customer-count query's state store, at its last committed
    batch: customer_id, order_count, total_amount (what the query would emit next)."""
    batch = last_committed_batch(query_checkpoint)
    if batch is None:
        raise ValueError(f"{query_checkpoint} has no committed batch")
    _ = spark.streams.active  # the reader needs the session's state store coordinator
    return (
        spark.read.format("statestore")
        .option("batchId", batch)
        .load(str(query_checkpoint))
        .select(
            F.col("key.customer_id").alias("customer_id"),
            F.col("value.count").alias("order_count"),
            F.col("value.sum").cast("decimal(18,2)").alias("total_amount"),
        )
    )
