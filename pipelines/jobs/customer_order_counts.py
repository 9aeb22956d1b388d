"""A stateful table done the Spark way: running order count and amount per customer from `orders`.

    spark-submit --jars "$(pipelines jars)" jobs/customer_order_counts.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --checkpoint DIR \\
      [--sink kafka|delta|both] [--sink-topic customer-order-counts] [--delta-path DIR] \\
      [--trigger available-now|processing-time=5s] [--format json|avro] [--registry-url URL]

Update mode: every batch emits the customers whose counts changed, to a compacted Kafka topic
keyed by `customer_id` and/or by MERGE into a Delta table. The counts live in the query's RocksDB
state store (changelog checkpointing) and survive restarts on the same checkpoint. Orders that do
not parse go to `<source-topic>.dlq` with the reason.

`--format avro` reads orders in the Confluent wire format as `orders_to_shipments` does (every
registered version the contract's schema can read; the Avro reason codes for the others), and
starts its queries again from their checkpoints when an orders schema is registered while it runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import Settings, SparkSettings
from pipelines.contracts import CUSTOMER_COUNTS_TOPIC, ORDERS, ORDERS_TOPIC, dead_letter_topic
from pipelines.jobs import runner
from pipelines.jobs.checkpoint import CheckpointSpec
from pipelines.kafka.job_topics import JobTopics
from pipelines.monitor.checkpoints import last_committed_batch
from pipelines.queries import QueryGroup
from pipelines.registry.jobs import AvroPlans, RenewingRun, add_format_options, job_format
from pipelines.registry.schemas import SchemaStore, contract_schema
from pipelines.registry.spark import read_plan
from pipelines.sinks import start_delta_merge, start_kafka_sink
from pipelines.sources import KafkaSource
from pipelines.transforms.avro import AvroReadPlan, parse_avro_events
from pipelines.transforms.orders import parse_orders, to_customer_count_records, to_customer_order_counts

CUSTOMER_ORDER_COUNTS = "customer_order_counts"


def start_customer_order_counts(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    source_topic: str,
    checkpoint: Path,
    sink: str = "kafka",
    sink_topic: str = CUSTOMER_COUNTS_TOPIC,
    delta_path: Path | None = None,
    dlq_topic: str | None = None,
    trigger: str = "available-now",
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    dead_letters: bool = True,
    value_format: str = "json",
    registry_url: str | None = None,
    avro_plan: AvroReadPlan | None = None,
    spark_settings: SparkSettings | None = None,
) -> QueryGroup:
    """Running order count and amount per customer from `source_topic` (update mode), as a group of
    queries:

    * `kafka`: every changed customer to `sink_topic`, keyed by `customer_id` (make it a
      compacted topic: the latest record per key is the current count);
    * `delta`: a MERGE by `customer_id` into `delta_path`, idempotent on replay;
    * `dlq`: orders that do not parse, to `dlq_topic` (default `<source_topic>.dlq`); pass
      `dead_letters=False` when another job already dead-letters the same topic's bad records.

    The counts live in the query's RocksDB state (changelog checkpointing), so a restart on the
    same checkpoint continues them; `read_customer_state` reads that state directly.

    `value_format="avro"` reads orders in the Confluent wire format with `avro_plan` (default: read
    from the registry at `registry_url` now; `pipelines.registry.spark.read_plan`), malformed ones
    dead-lettered with the Avro reason codes.

    `spark_settings` (default: the profile defaults) give the source's Kafka consumer properties.
    """
    runner.check_sink(sink, delta_path)
    if value_format == "avro" and avro_plan is None:
        if registry_url is None:
            raise ValueError("value_format avro needs a registry_url or an avro_plan")
        avro_plan = read_plan(SchemaStore(registry_url), contract_schema("orders"))
    plan = avro_plan if value_format == "avro" else None
    group = QueryGroup(CUSTOMER_ORDER_COUNTS, trigger)
    source = KafkaSource(
        spark,
        bootstrap_servers,
        source_topic,
        starting_offsets,
        max_offsets_per_trigger,
        settings=spark_settings,
    )

    def parsed() -> DataFrame:
        if plan is not None:
            return parse_avro_events(source.read(), ORDERS, plan)
        return source.read().transform(parse_orders)

    with group.starting():
        if dead_letters:
            dlq = dlq_topic or dead_letter_topic(source_topic)
            runner.start_dead_letters(
                group, parsed(), bootstrap_servers=bootstrap_servers, topic=dlq, checkpoint=checkpoint
            )
        if sink in ("kafka", "both"):
            group.add(
                "kafka",
                start_kafka_sink(
                    parsed().transform(to_customer_order_counts).transform(to_customer_count_records),
                    bootstrap_servers=bootstrap_servers,
                    topic=sink_topic,
                    checkpoint=checkpoint / "kafka",
                    trigger=group.trigger,
                    query_name=group.query_name("kafka"),
                    output_mode="update",
                ),
            )
        if delta_path is not None and sink in ("delta", "both"):
            group.add(
                "delta",
                start_delta_merge(
                    parsed().transform(to_customer_order_counts),
                    delta_path=delta_path,
                    checkpoint=checkpoint / "merge",
                    trigger=group.trigger,
                    query_name=group.query_name("merge"),
                    keys=("customer_id",),
                ),
            )
    return group


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = runner.job_parser(
        "customer_order_counts.py",
        "Running order count and amount per customer from the orders topic, kept in Spark's state "
        "store and written in update mode to a compacted topic and/or a Delta table.",
    )
    p.add_argument("--source-topic", default=ORDERS_TOPIC, help=f"topic of orders (default: {ORDERS_TOPIC})")
    p.add_argument("--sink", choices=runner.SINKS, default="kafka", help="kafka (default), delta or both")
    p.add_argument(
        "--sink-topic",
        default=CUSTOMER_COUNTS_TOPIC,
        help=f"compacted output topic (default: {CUSTOMER_COUNTS_TOPIC})",
    )
    p.add_argument("--delta-path", type=Path, help="Delta table of the counts (for --sink delta or both)")
    runner.add_dlq_option(p, "source-topic")
    add_format_options(p)
    runner.add_read_options(p)
    args = p.parse_args(argv)
    runner.require_delta_path(p, args)
    return args


def run_from_args(
    args: argparse.Namespace, settings: Settings, spark: SparkSession, environ: Mapping[str, str]
) -> tuple[dict[str, Any], int]:
    """The job's run once its arguments are parsed and its session is up (what `main` runs inside
    `runner.run_job`): the queries until they end, started again from their checkpoints when an
    orders schema is registered while they run (Avro); the summary and the exit status."""
    plans = AvroPlans.for_args(args, settings, environ, "orders")
    groups = RenewingRun(
        plans,
        lambda p: runner.start_from_args(p.starter(start_customer_order_counts), spark, args, settings),
    ).run()
    read = sum(g.input_rows("dlq") for g in groups)
    return {"read": read, "checkpoint": str(args.checkpoint)}, 0


def main(argv: list[str] | None = None) -> int:
    """Run the job with `argv` (default: the command line); returns its exit status."""
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        return run_from_args(args, settings, spark, os.environ)

    topics = JobTopics(
        sources=[args.source_topic],
        sinks=[args.sink_topic] if args.sink in ("kafka", "both") else [],
        dead_letters=runner.dead_letters(args, args.source_topic),
    )
    avro = {"format": "avro"} if job_format(CUSTOMER_ORDER_COUNTS, args, os.environ) == "avro" else {}
    checkpoint = CheckpointSpec(
        queries=("dlq", "kafka", "merge"), identity={"topic": args.source_topic} | avro, stateful=True
    )
    return runner.run_job(CUSTOMER_ORDER_COUNTS, args, os.environ, run, topics, checkpoint)
