"""Orders become shipments: the `orders` topic -> the `shipments` topic, malformed orders to a DLQ.

    spark-submit --jars "$(pipelines jars)" jobs/orders_to_shipments.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --sink-topic shipments --checkpoint DIR \\
      [--trigger available-now|processing-time=0s|real-time[=5m]] [--dlq-topic orders.dlq]

One query reads the source topic and parses each order once (`pipelines.transforms.shipments.
route_orders`), with its checkpoint in `<checkpoint>/shipments`:

* every valid order becomes a shipment on the sink topic (key and headers of the order, value
  `{"shipment_id", "order_id", "customer_id", "status", "created_at"}`);
* every order that does not parse goes to the dead-letter topic (default `<source>.dlq`) with its
  original key and bytes and the reason, as the revenue job does.

(Until this release a second query, `<checkpoint>/dlq`, read and parsed every order again for the
dead letters; a checkpoint with that folder is refused with what to do, see
`pipelines.jobs.checkpoint.guard_checkpoint`.)

Guarantee (`guarantee=`, `--guarantee`):

* **exactly-once**: each partition of each micro-batch (shipments and dead letters) is written by
  its executor task in one Kafka transaction that also records the batch id
  (`pipelines.kafka.transactional_sink`); what a replayed batch already committed is skipped, so a
  `read_committed` consumer sees every shipment and every dead letter once. Micro-batch triggers
  only; the executors' Python needs confluent-kafka.
* **at-least-once**: Spark's own kafka sink. A micro-batch is written to Kafka first and committed
  in the checkpoint after; a crash in between writes that batch again on restart, and the
  duplicates are real records on the topic: every shipment carries a deterministic key and
  `shipment_id`, and `pipelines.kafka.dedupe` reads the topic back with each shipment once.
  Real-time mode is always at-least-once: its long-running tasks write each record as it arrives,
  there is no micro-batch to wrap in a transaction.

Dead letters share the shipments' guarantee: they are rows of the same query.

Triggers (`pipelines.triggers`): `available-now`, `processing-time=…` (micro-batches) and
`real-time[=<checkpoint interval>]`, Spark's low-latency mode, for which every transform here
qualifies (projections only). Real-time mode keeps one task per source partition running for the
whole batch: it needs a free task slot per partition, and with fewer it does not fail, it silently
never reads the partitions left without a slot (seen on Spark 4.2.0, local[2], a 3-partition topic,
when the job still had two queries). `start_orders_to_shipments` therefore checks the
slots first and refuses to start instead. An available-now run ends with one JSON line: records
read, shipped, dead-lettered.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.config import Settings, SparkSettings
from pipelines.contracts import ORDERS_TOPIC, SHIPMENTS_TOPIC, dead_letter_topic
from pipelines.errors import PipelinesError
from pipelines.jobs.checkpoint import CheckpointSpec
from pipelines.jobs.runner import (
    add_dlq_option,
    add_read_options,
    dead_letters,
    job_parser,
    run_job,
    start_from_args,
)
from pipelines.kafka.admin import list_topics
from pipelines.kafka.job_topics import JobTopics
from pipelines.queries import QueryGroup, observe_records
from pipelines.registry.jobs import AvroPlans, RenewingRun, add_format_options, job_format
from pipelines.registry.schemas import SchemaStore, contract_schema
from pipelines.registry.spark import read_plan
from pipelines.sinks import start_kafka_sink, start_kafka_transactional_sink
from pipelines.sources import KafkaSource
from pipelines.spark import INTERPRETED, query_conf
from pipelines.transforms.avro import AvroReadPlan
from pipelines.transforms.shipments import (
    avro_shipment,
    parse_avro_orders_with_headers,
    parse_orders_with_headers,
    route_orders,
    shipment_json,
)
from pipelines.triggers import is_real_time

ORDERS_TO_SHIPMENTS = "orders_to_shipments"
QUERIES = ("shipments",)
"""The job's queries, which are also the names of their checkpoint folders."""
RETIRED_QUERIES = ("dlq",)
"""Checkpoint folders of queries earlier releases ran (the separate dead-letter query)."""
METRICS = "orders"
"""Name of the observed metrics of the shipments query (read, dead_lettered), in its progress."""


@dataclass(frozen=True)
class ShipmentsRunSummary:
    """What the shipments query of one run read, counted exactly per batch (observed metrics):
    `read = shipped + dead_lettered`. Counts of records *read*: a batch replayed after a crash is
    counted again, as its output is written again (at-least-once)."""

    read: int
    shipped: int
    dead_lettered: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


EXACTLY_ONCE, AT_LEAST_ONCE = "exactly-once", "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)
REAL_TIME_IS_AT_LEAST_ONCE = (
    "real-time mode is at-least-once only: its tasks write each record as it arrives, with no "
    "micro-batch to wrap in a transaction. Use --guarantee at-least-once, or a micro-batch trigger "
    "(processing-time=0s) for exactly-once"
)


def real_time_slots_needed(source_partitions: int) -> int:
    """Task slots real-time mode needs for this job: one per source partition (one query)."""
    return len(QUERIES) * source_partitions


def check_real_time_slots(spark: SparkSession, *, bootstrap_servers: str, topic: str) -> None:
    """Raise PipelinesError unless the session has a task slot for every long-running task of the
    job in real-time mode (`spark.sparkContext.defaultParallelism`: the cores of `local[N]`, or
    every executor core of a cluster)."""
    partitions = list_topics(bootstrap_servers).get(topic)
    if partitions is None:
        raise PipelinesError(f"topic {topic!r} does not exist (see `pipelines topics list`)")
    needed, slots = real_time_slots_needed(partitions), spark.sparkContext.defaultParallelism
    if slots < needed:
        raise PipelinesError(
            f"real-time mode needs {needed} task slots here (one per partition of {topic!r}), the "
            f"session has {slots}: a partition without a slot would "
            f"never be read. Give Spark more cores (--master local[{needed}] or more executor "
            "cores), or use --trigger processing-time=0s."
        )


def start_orders_to_shipments(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    source_topic: str,
    sink_topic: str,
    checkpoint: Path,
    dlq_topic: str | None = None,
    trigger: str = "available-now",
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    guarantee: str | None = None,
    value_format: str = "json",
    registry_url: str | None = None,
    avro_plan: AvroReadPlan | None = None,
    spark_settings: SparkSettings | None = None,
) -> QueryGroup:
    """Start the job's `shipments` query (see the module docstring), which writes the shipments and
    the dead letters, as a group; its checkpoint folder is `checkpoint/shipments`.

    It writes in update mode: for this stateless query it emits exactly the rows append mode
    would, and it is the only mode real-time mode accepts. `max_offsets_per_trigger` bounds each
    micro-batch; it is not passed in real-time mode, whose tasks read records as they arrive and
    which fails the query on it ("maxOffsetsPerTrigger is not compatible with real time mode").
    With `trigger="available-now"` the queries stop by themselves once they have processed what
    the topic held when they started.

    `value_format="avro"` reads orders in the Confluent wire format with `avro_plan` (default: read
    from the registry at `registry_url` now) and writes shipments in Avro, with the `shipments`
    contract schema registered under `<sink_topic>-value` (BACKWARD) first.

    `spark_settings` (default: the profile defaults) give the source's Kafka consumer properties
    and whether a micro-batch query evaluates its projections interpreted
    (`SparkSettings.interpreted_projections`, `pipelines.spark.INTERPRETED`): the query's
    plan is only projections, whose generated code Spark would write again for every micro-batch.
    Real-time mode plans its long-running batch once and keeps code generation.
    """
    settings = spark_settings or SparkSettings()
    group = QueryGroup(ORDERS_TO_SHIPMENTS, trigger)
    guarantee = guarantee or (AT_LEAST_ONCE if group.real_time else EXACTLY_ONCE)
    if guarantee not in GUARANTEES:
        raise PipelinesError(f"guarantee must be one of {', '.join(GUARANTEES)}, not {guarantee!r}")
    if group.real_time and guarantee == EXACTLY_ONCE:
        raise PipelinesError(REAL_TIME_IS_AT_LEAST_ONCE)
    if group.real_time:
        check_real_time_slots(spark, bootstrap_servers=bootstrap_servers, topic=source_topic)

    source = KafkaSource(
        spark,
        bootstrap_servers,
        source_topic,
        starting_offsets,
        None if group.real_time else max_offsets_per_trigger,
        extra_options={"includeHeaders": "true"},  # a shipment carries its order's headers
        settings=settings,
    )

    if value_format == "avro":
        if registry_url is None and avro_plan is None:
            raise ValueError("value_format avro needs a registry_url or an avro_plan")
        store = SchemaStore(registry_url) if registry_url is not None else None
        if avro_plan is None:
            assert store is not None
            avro_plan = read_plan(store, contract_schema("orders"))
        if store is None:
            raise ValueError("value_format avro writes shipments in Avro: it needs the registry_url")
        shipment_schema = store.register(sink_topic, contract_schema("shipments"))
        plan = avro_plan

        parsed = parse_avro_orders_with_headers(source.read(), plan)
        shipment_value = avro_shipment(shipment_schema.schema_id, shipment_schema.schema)
    else:
        parsed = source.read().transform(parse_orders_with_headers)
        shipment_value = shipment_json()

    dlq = dlq_topic or dead_letter_topic(source_topic)
    interpreted = settings.interpreted_projections and not group.real_time
    with group.starting(), query_conf(spark, INTERPRETED if interpreted else {}):
        rows = route_orders(
            observe_records(parsed, METRICS), shipment_value, sink_topic=sink_topic, dlq_topic=dlq
        )
        sink_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "checkpoint": checkpoint / "shipments",
            "trigger": group.trigger,
            "query_name": group.query_name("shipments"),
            "output_mode": "update",
        }
        group.add(
            "shipments",
            start_kafka_transactional_sink(rows, topic=sink_topic, marker_topic=source_topic, **sink_options)
            if guarantee == EXACTLY_ONCE
            # Each row to its `topic`; the writer slot is the exactly-once writer's alone.
            else start_kafka_sink(rows.drop("source_partition"), topic=None, **sink_options),
        )
    return group


def run_summary(group: QueryGroup) -> ShipmentsRunSummary:
    """The summary of a shipments run so far, from the observed metrics of every batch the
    shipments query reported (the session keeps up to `spark.sql.streaming.numRecentProgressUpdates`)."""
    read = group.observed("shipments", METRICS, "read")
    dead = group.observed("shipments", METRICS, "dead_lettered")
    return ShipmentsRunSummary(read=read, shipped=read - dead, dead_lettered=dead)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = job_parser(
        "orders_to_shipments.py",
        "Every valid order becomes a pending shipment (key and headers preserved) on the sink topic; "
        "malformed orders go to the dead-letter topic. Exactly-once through Kafka transactions (read "
        "the sink with isolation.level=read_committed), or at-least-once.",
    )
    p.add_argument("--source-topic", default=ORDERS_TOPIC, help=f"topic of orders (default: {ORDERS_TOPIC})")
    p.add_argument(
        "--sink-topic", default=SHIPMENTS_TOPIC, help=f"topic of shipments (default: {SHIPMENTS_TOPIC})"
    )
    add_dlq_option(p, "source-topic")
    add_format_options(p)
    p.add_argument(
        "--guarantee",
        choices=GUARANTEES,
        default=None,
        help="exactly-once: each micro-batch in one Kafka transaction with its batch id, never written "
        "twice (read with read_committed); at-least-once: Spark's kafka sink, a replayed batch is "
        "written again (default: exactly-once with a micro-batch trigger; real-time mode is "
        "at-least-once only)",
    )
    add_read_options(
        p,
        real_time=True,
        trigger_help="available-now (process what is there, then stop; default), processing-time=0s "
        "(micro-batches back to back, or every N s), or real-time[=<checkpoint interval>] (Spark's "
        "low-latency mode; the interval, 5 minutes by default and at least 5 s, is how often progress "
        "is checkpointed; needs one task slot per source partition; --max-offsets-per-trigger is not "
        "used)",
    )
    args = p.parse_args(argv)
    if args.guarantee == EXACTLY_ONCE and is_real_time(args.trigger):
        p.error(REAL_TIME_IS_AT_LEAST_ONCE)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the job with `argv` (default: the command line); returns its exit status."""
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        plans = AvroPlans.for_args(args, settings, os.environ, "orders")
        # Avro: started again from the checkpoints when a schema is registered while it runs.
        groups = RenewingRun(
            plans, lambda p: start_from_args(p.starter(start_orders_to_shipments), spark, args, settings)
        ).run()
        summaries = [run_summary(g) for g in groups]
        read = sum(s.read for s in summaries)
        dead = sum(s.dead_lettered for s in summaries)
        total = ShipmentsRunSummary(read=read, shipped=read - dead, dead_lettered=dead)
        return {"checkpoint": str(args.checkpoint), **total.as_dict()}, 0

    topics = JobTopics(
        sources=[args.source_topic],
        sinks=[args.sink_topic],
        dead_letters=dead_letters(args, args.source_topic),
    )
    job_format(ORDERS_TO_SHIPMENTS, args, os.environ)
    identity = {"topic": args.source_topic} | ({"format": "avro"} if args.value_format == "avro" else {})
    checkpoint = CheckpointSpec(queries=QUERIES, identity=identity, retired=RETIRED_QUERIES)
    return run_job(ORDERS_TO_SHIPMENTS, args, os.environ, run, topics, checkpoint)
