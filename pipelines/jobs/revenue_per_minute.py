"""Revenue per category per minute from the `sales` topic: watermarked tumbling windows into Delta
(exactly-once) and/or Kafka, with dead letters and late-data accounting.

    spark-submit --jars "$(pipelines jars)" jobs/revenue_per_minute.py \\
      --bootstrap-servers HOST:PORT --topic sales \\
      --delta-path .pipelines/data/revenue_per_minute \\
      --checkpoint .pipelines/checkpoints/revenue_per_minute \\
      [--trigger available-now|processing-time=5s] [--watermark "30 seconds"] [--window "1 minute"] \\
      [--sink delta|kafka|both] [--mode append|update]

Records that do not parse go to `<topic>.dlq` with the original bytes and the reason; the job never
stops on bad input. Every batch's progress (rows in, rows dropped as late, watermark) is appended
to a JSON-lines progress file; an available-now run ends with one JSON line that accounts for
every record read: read = aggregated + late + dead_lettered + heartbeats + still_open.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import Settings, SparkSettings
from pipelines.contracts import REVENUE_TOPIC, SALES, SALES_TOPIC, dead_letter_topic
from pipelines.jobs import runner
from pipelines.jobs.checkpoint import CheckpointSpec
from pipelines.kafka.job_topics import JobTopics
from pipelines.monitor.checkpoints import last_committed_batch
from pipelines.monitor.progress import ProgressRecorder
from pipelines.queries import QueryGroup, observe_records
from pipelines.registry.jobs import AvroPlans, RenewingRun, add_format_options, job_format
from pipelines.registry.schemas import SchemaStore, contract_schema
from pipelines.registry.spark import read_plan
from pipelines.sinks import (
    delta_row_count,
    start_delta_append,
    start_delta_merge,
    start_kafka_sink,
    start_kafka_transactional_sink,
)
from pipelines.sources import KafkaSource
from pipelines.transforms.avro import AvroReadPlan, parse_avro_events
from pipelines.transforms.revenue import to_revenue_records, to_revenue_stream
from pipelines.transforms.sales import parse_sales

REVENUE_PER_MINUTE = "revenue_per_minute"
MODES = ("append", "update")
EXACTLY_ONCE, AT_LEAST_ONCE = "exactly-once", "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)
METRICS = "records"
"""Name of the observed metrics of the main query (read, dead_lettered, heartbeats)."""


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

    @classmethod
    def total(cls, parts: list[RevenueRunSummary]) -> RevenueRunSummary:
        """The run's summary when its queries were started more than once (a schema registered
        while an Avro job ran): each start accounts for what it read, so the parts add up."""
        if len(parts) == 1:
            return parts[0]
        return cls(*(sum(getattr(p, f) for p in parts) for f in cls.__dataclass_fields__))


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


class RevenueJob(QueryGroup):
    """The queries of the revenue job (`dlq`, and `delta` and/or `kafka`), and what the tables held
    when they started, to account for every record a run read (`summary`)."""

    def __init__(
        self, spark: SparkSession, trigger: str, *, checkpoint: Path, delta_path: Path | None, mode: str
    ) -> None:
        """Create before starting the queries: the baselines are read here."""
        super().__init__(REVENUE_PER_MINUTE, trigger)
        self.spark = spark
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
    def main_name(self) -> str:
        """The query that carries the run's observed metrics: `delta` if there is one, else `kafka`."""
        return "delta" if "delta" in self else "kafka"

    @property
    def main(self) -> Any:
        return self[self.main_name]

    def summary(self) -> RevenueRunSummary:
        """How every record this run read was accounted for (call after the queries stopped)."""
        read, dead, heartbeats = (
            self.observed(self.main_name, METRICS, m) for m in ("read", "dead_lettered", "heartbeats")
        )
        dropped = self.state_metric(self.main_name, "numRowsDroppedByWatermark")
        if self.delta_path is None or "delta" not in self:
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
    guarantee: str = EXACTLY_ONCE,
    value_format: str = "json",
    registry_url: str | None = None,
    avro_plan: AvroReadPlan | None = None,
    spark_settings: SparkSettings | None = None,
) -> RevenueJob:
    """Start the queries of the revenue job (each with its own folder under `checkpoint`):

    * `delta`: append mode, one row per (window, category) written once when the window is final,
      exactly-once across restarts; or, with `mode="update"`, a MERGE upsert on every batch,
      idempotent on replay (for live dashboards: open windows are visible and change);
    * `kafka`: update mode to `output_topic`, keyed by window and category; with
      `guarantee="exactly-once"` (default) each micro-batch in one Kafka transaction with its batch
      id (`pipelines.kafka.transactional_sink`), with `"at-least-once"` Spark's kafka sink;
    * `dlq`: every record that does not parse goes to `dlq_topic` (default `<topic>.dlq`) with its
      original bytes and the reason; the job never stops on bad input.

    `value_format="avro"` reads the Confluent wire format with `avro_plan` (default: read from the
    registry at `registry_url` now; `pipelines.registry.spark.read_plan`).

    A window is final once the watermark (latest event time seen minus `watermark`) passes its
    end. Spark closes windows in the batch after the one that advanced the watermark: a running
    (processing-time) query does that on its own, even when input goes quiet, if a heartbeat
    record carries event time forward; an available-now run leaves them open for the next run.

    `spark_settings` (default: the profile defaults) give the source's Kafka consumer properties.
    """
    runner.check_sink(sink, delta_path)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if guarantee not in GUARANTEES:
        raise ValueError(f"guarantee must be one of {GUARANTEES}")
    if value_format == "avro" and avro_plan is None:
        if registry_url is None:
            raise ValueError("value_format avro needs a registry_url or an avro_plan")
        avro_plan = read_plan(SchemaStore(registry_url), contract_schema("sales"))
    plan = avro_plan if value_format == "avro" else None
    job = RevenueJob(spark, trigger, checkpoint=checkpoint, delta_path=delta_path, mode=mode)

    source = KafkaSource(
        spark, bootstrap_servers, topic, starting_offsets, max_offsets_per_trigger, settings=spark_settings
    )

    def parsed() -> DataFrame:
        if plan is not None:
            return parse_avro_events(source.read(), SALES, plan)
        return source.read().transform(parse_sales)

    def revenue(counted: bool) -> DataFrame:
        records = observe_records(parsed(), METRICS, heartbeats=True) if counted else parsed()
        return records.transform(to_revenue_stream, window=window, watermark=watermark)

    with job.starting():
        dlq = dlq_topic or dead_letter_topic(topic)
        runner.start_dead_letters(
            job, parsed(), bootstrap_servers=bootstrap_servers, topic=dlq, checkpoint=checkpoint
        )
        if delta_path is not None and sink in ("delta", "both"):
            # Append: one row per final window (checkpoint `delta`); update: MERGE every batch (`merge`).
            folder = "delta" if mode == "append" else "merge"
            start = (
                start_delta_append
                if mode == "append"
                else partial(start_delta_merge, keys=("window_start", "category"))
            )
            query = start(
                revenue(True),
                delta_path=delta_path,
                checkpoint=checkpoint / folder,
                trigger=job.trigger,
                query_name=job.query_name(folder),
            )
            job.add("delta", query)
        if sink in ("kafka", "both"):
            records = revenue(counted="delta" not in job).transform(to_revenue_records)
            options: dict[str, Any] = {
                "bootstrap_servers": bootstrap_servers,
                "topic": output_topic,
                "checkpoint": checkpoint / "kafka",
                "trigger": job.trigger,
                "query_name": job.query_name("kafka"),
                "output_mode": "update",
            }
            job.add(
                "kafka",
                start_kafka_transactional_sink(records, marker_topic=topic, **options)
                if guarantee == EXACTLY_ONCE
                else start_kafka_sink(records, **options),
            )
    return job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = runner.job_parser(
        "revenue_per_minute.py",
        "Revenue per category per event-time window from the sales topic, into Delta (exactly-once, "
        "one row per final window) and/or Kafka, with dead letters and late-data counts.",
    )
    p.add_argument("--topic", default=SALES_TOPIC, help=f"topic of sales events (default: {SALES_TOPIC})")
    p.add_argument(
        "--delta-path", type=Path, help="Delta table of revenue_per_minute (needed for the Delta sink)"
    )
    p.add_argument(
        "--watermark", default="30 seconds", help='allowed lateness of events (default "30 seconds")'
    )
    p.add_argument("--window", default="1 minute", help='tumbling window length (default "1 minute")')
    p.add_argument(
        "--sink", choices=runner.SINKS, default="delta", help="where revenue goes (default: delta)"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="append",
        help="append: a row per window once it is final (default); update: MERGE every change into "
        "Delta for live dashboards",
    )
    p.add_argument(
        "--output-topic", default=REVENUE_TOPIC, help=f"Kafka sink topic (default: {REVENUE_TOPIC})"
    )
    p.add_argument(
        "--guarantee",
        choices=GUARANTEES,
        default=EXACTLY_ONCE,
        help="the Kafka sink's: exactly-once (default; each micro-batch in one Kafka transaction with its "
        "batch id, read with read_committed) or at-least-once (Spark's kafka sink)",
    )
    runner.add_dlq_option(p, "topic")
    add_format_options(p)
    p.add_argument(
        "--progress-file",
        type=Path,
        default=None,
        help="JSON-lines progress of every batch (default: <checkpoint>/../<checkpoint name>.progress.jsonl)",
    )
    runner.add_read_options(p)
    args = p.parse_args(argv)
    runner.require_delta_path(p, args)
    if args.mode == "update" and args.sink == "kafka":
        p.error("--mode update is the Delta MERGE mode; the Kafka sink always sends updates")
    if args.progress_file is None:
        args.progress_file = args.checkpoint.parent / f"{args.checkpoint.name}.progress.jsonl"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the job with `argv` (default: the command line); returns its exit status (4: the run
    did not reconcile)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any] | None, int]:
        spark.streams.addListener(ProgressRecorder(args.progress_file))
        plans = AvroPlans.for_args(args, settings, os.environ, "sales")
        # Avro: started again from the checkpoints when a schema is registered while it runs.
        groups = RenewingRun(
            plans,
            lambda p: runner.start_from_args(p.starter(start_revenue_per_minute), spark, args, settings),
        ).run()
        job = groups[-1]
        if not job.available_now:
            return None, 0
        summary = RevenueRunSummary.total([g.summary() for g in groups])
        return {"progress_file": str(args.progress_file), **summary.as_dict()}, 0 if summary.reconciles else 4

    job_format(REVENUE_PER_MINUTE, args, os.environ)
    topics = JobTopics(
        sources=[args.topic],
        sinks=[args.output_topic] if args.sink in ("kafka", "both") else [],
        dead_letters=runner.dead_letters(args, args.topic),
    )
    identity = {"topic": args.topic, "window": args.window, "watermark": args.watermark, "mode": args.mode}
    checkpoint = CheckpointSpec(
        queries=("dlq", "delta", "merge", "kafka"),
        identity=identity | ({"format": "avro"} if args.value_format == "avro" else {}),
        stateful=True,
    )
    return runner.run_job(REVENUE_PER_MINUTE, args, os.environ, run, topics, checkpoint)
