"""The spine: the `sales` topic -> parsed, typed rows -> a Delta table (exactly-once).

    spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py \\
      --bootstrap-servers 127.0.0.1:9092 --topic sales \\
      --delta-path .pipelines/data/sales --checkpoint .pipelines/checkpoints/sales_to_delta \\
      [--trigger available-now|processing-time=5s]

Records that do not parse are not written: they are counted in the summary line the job prints
as JSON (`read = written + rejected`); routing them to `sales.dlq` is the revenue job's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from pipelines.config import Settings, SparkSettings
from pipelines.contracts import SALES, SALES_TOPIC
from pipelines.jobs.checkpoint import CheckpointSpec
from pipelines.jobs.runner import add_read_options, job_parser, run_job, start_from_args
from pipelines.kafka.job_topics import JobTopics
from pipelines.queries import QueryGroup
from pipelines.registry.jobs import AvroPlans, RenewingRun, add_format_options, job_format
from pipelines.registry.local import registry_url
from pipelines.registry.schemas import SchemaStore, contract_schema
from pipelines.sinks import delta_row_count, start_delta_append
from pipelines.sources import KafkaSource
from pipelines.transforms.avro import AvroReadPlan, parse_avro_events
from pipelines.transforms.sales import parse_sales, to_sales_rows

SALES_TO_DELTA = "sales_to_delta"


@dataclass(frozen=True)
class RunSummary:
    """What one run of the spine did. `read = written + rejected` always holds."""

    read: int
    written: int
    rejected: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def start_sales_to_delta(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    delta_path: Path,
    checkpoint: Path,
    trigger: str = "available-now",
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    avro_plan: AvroReadPlan | None = None,
    spark_settings: SparkSettings | None = None,
) -> QueryGroup:
    """Start the spine's one query, `delta`: `topic` -> parsed sales -> append to `delta_path`
    (JSON, or Avro read with `avro_plan` when one is given); the source's Kafka consumer
    properties come from `spark_settings` (default: the profile defaults)."""
    parse: Callable[[DataFrame], DataFrame] = (
        partial(parse_avro_events, spec=SALES, plan=avro_plan) if avro_plan is not None else parse_sales
    )
    group = QueryGroup(SALES_TO_DELTA, trigger)
    source = KafkaSource(
        spark, bootstrap_servers, topic, starting_offsets, max_offsets_per_trigger, settings=spark_settings
    )
    with group.starting():
        group.add(
            "delta",
            start_delta_append(
                source.read().transform(parse).transform(to_sales_rows),
                delta_path=delta_path,
                checkpoint=checkpoint,
                trigger=group.trigger,
                query_name=SALES_TO_DELTA,
            ),
        )
    return group


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
    value_format: str = "json",
    registry_url: str | None = None,
    spark_settings: SparkSettings | None = None,
) -> RunSummary:
    """The spine: `topic` -> parsed sales -> append to the Delta table at `delta_path`.

    Exactly-once into Delta across restarts (offsets in `checkpoint`, batch ids in the Delta log).
    With `trigger="available-now"` it processes what the topic holds and returns a summary; with a
    processing-time trigger it runs until stopped. Malformed records are not written: they are
    counted as `rejected`.

    `value_format="avro"` reads the Confluent wire format with the plan read from the registry at
    `registry_url` when the query starts; a record of a schema registered later fails the query,
    which starts again from its checkpoint with that schema (`pipelines.registry.jobs.RenewingRun`,
    as the other jobs do); a record of an id the registry does not have costs one such restart and
    is then rejected (`avro_unknown_schema_id`).
    """
    if value_format == "avro":
        if registry_url is None:
            raise ValueError("value_format avro needs a registry_url")
        plans = AvroPlans(SchemaStore(registry_url), contract_schema("sales"))
    else:
        plans = AvroPlans()
    before = delta_row_count(spark, delta_path)
    groups = RenewingRun(
        plans,
        lambda p: start_sales_to_delta(
            spark,
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            delta_path=delta_path,
            checkpoint=checkpoint,
            trigger=trigger,
            starting_offsets=starting_offsets,
            max_offsets_per_trigger=max_offsets_per_trigger,
            avro_plan=p.plan,
            spark_settings=spark_settings,
        ),
    ).run()
    read = sum(g.input_rows("delta") for g in groups)
    written = delta_row_count(spark, delta_path) - before
    return RunSummary(read=read, written=written, rejected=read - written)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = job_parser(
        "sales_to_delta.py",
        "Read the sales topic with Spark's kafka source, parse it with the contract's schema and "
        "append the valid events to a Delta table (exactly-once via the checkpoint).",
    )
    p.add_argument("--topic", default=SALES_TOPIC, help=f"topic to read (default: {SALES_TOPIC})")
    p.add_argument("--delta-path", required=True, type=Path, help="Delta table folder to append to")
    add_format_options(p)
    add_read_options(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job with `argv` (default: the command line); returns its exit status."""
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        if args.value_format == "avro":
            args.registry_url = registry_url(settings, args.registry_url, os.environ)
        summary = start_from_args(sales_to_delta, spark, args, settings)
        return {"delta_path": str(args.delta_path), **summary.as_dict()}, 0

    avro = {"format": "avro"} if job_format(SALES_TO_DELTA, args, os.environ) == "avro" else {}
    checkpoint = CheckpointSpec(queries=(".",), identity={"topic": args.topic} | avro)
    return run_job(SALES_TO_DELTA, args, os.environ, run, JobTopics(sources=[args.topic]), checkpoint)
