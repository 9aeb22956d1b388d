"""The orders -> shipments pipeline, wired: the `orders` topic -> shipments and dead letters.

Two queries read the source topic, each with its own folder under the checkpoint:

* `shipments`: every valid order becomes a shipment on the sink topic (pipelines.transforms.shipments:
  key and headers of the order, value `{"shipment_id", "order_id", "customer_id", "status",
  "created_at"}`);
* `dlq`: every order that does not parse goes to the dead-letter topic (default `<source>.dlq`) with
  its original key and bytes and the reason, as the revenue job does.

Guarantee: **at-least-once**, as for any query writing with Spark's kafka sink. A micro-batch is
written to Kafka first and committed in the checkpoint after; a crash in between writes that batch
again on restart. Kafka offers Spark no transactional sink, so the duplicates are real records on
the topic: every shipment carries a deterministic key and `shipment_id`, and
`pipelines.kafka.dedupe` reads the topic back with each shipment once.

Triggers (`pipelines.triggers`): `available-now`, `processing-time=…` (micro-batches) and
`real-time[=<checkpoint interval>]`, Spark's low-latency mode, for which every transform here
qualifies (projections and filters only). Real-time mode keeps one task per source partition
running for the whole batch, in each of the two queries: it needs 2 x partitions free task slots,
and with fewer it does not fail, it silently never reads the partitions left without a slot (seen
on Spark 4.2.0, local[2], a 3-partition topic). `start_orders_to_shipments` therefore checks the
slots first and refuses to start instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipelines.errors import PipelinesError
from pipelines.kafka.admin import list_topics
from pipelines.sinks import start_kafka_sink
from pipelines.sources import read_kafka_stream
from pipelines.transforms.dead_letters import to_dead_letters
from pipelines.transforms.parsing import filter_bad_records
from pipelines.transforms.shipments import parse_orders_with_headers, to_shipments
from pipelines.triggers import is_real_time, trigger_kwargs

ORDERS_TO_SHIPMENTS = "orders_to_shipments"
SHIPMENTS_TOPIC = "shipments"
QUERIES = ("shipments", "dlq")
"""The job's queries, which are also the names of their checkpoint folders."""
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


def real_time_slots_needed(source_partitions: int) -> int:
    """Task slots real-time mode needs for this job: one per source partition in each query."""
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
            f"real-time mode needs {needed} task slots here ({len(QUERIES)} queries x {partitions} "
            f"partitions of {topic!r}), the session has {slots}: a partition without a slot would "
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
) -> dict[str, StreamingQuery]:
    """Start the `shipments` and `dlq` queries (see the module docstring) and return them by name.

    Each query has its own checkpoint folder, `checkpoint/shipments` and `checkpoint/dlq`. Both
    write in update mode: for these stateless queries it emits exactly the rows append mode
    would, and it is the only mode real-time mode accepts. `max_offsets_per_trigger` bounds each
    micro-batch; it is not passed in real-time mode, whose tasks read records as they arrive and
    which fails the query on it ("maxOffsetsPerTrigger is not compatible with real time mode").
    With `trigger="available-now"` the queries stop by themselves once they have processed what
    the topic held when they started.
    """
    trig = trigger_kwargs(trigger)
    real_time = is_real_time(trigger)
    if real_time:
        check_real_time_slots(spark, bootstrap_servers=bootstrap_servers, topic=source_topic)

    def parsed() -> DataFrame:
        # One source per query: a query owns its source's offsets in its own checkpoint.
        return read_kafka_stream(
            spark,
            bootstrap_servers=bootstrap_servers,
            topic=source_topic,
            starting_offsets=starting_offsets,
            max_offsets_per_trigger=None if real_time else max_offsets_per_trigger,
            extra_options={"includeHeaders": "true"},
        ).transform(parse_orders_with_headers)

    def counted(df: DataFrame) -> DataFrame:
        # Observed metrics are exact per batch and ride along with the query's progress.
        return df.observe(
            METRICS,
            F.count(F.lit(1)).alias("read"),
            F.sum(F.col("error_reason").isNotNull().cast("long")).alias("dead_lettered"),
        )

    queries: dict[str, StreamingQuery] = {}
    try:
        queries["shipments"] = start_kafka_sink(
            counted(parsed()).transform(to_shipments),
            bootstrap_servers=bootstrap_servers, topic=sink_topic, checkpoint=checkpoint / "shipments",
            trigger=trig, query_name=f"{ORDERS_TO_SHIPMENTS}_shipments", output_mode="update",
        )  # fmt: skip
        queries["dlq"] = start_kafka_sink(
            parsed().transform(filter_bad_records).transform(to_dead_letters),
            bootstrap_servers=bootstrap_servers, topic=dlq_topic or f"{source_topic}.dlq",
            checkpoint=checkpoint / "dlq", trigger=trig, query_name=f"{ORDERS_TO_SHIPMENTS}_dlq",
            output_mode="update",
        )  # fmt: skip
    except Exception:
        for q in queries.values():
            q.stop()
        raise
    return queries


def stop_all(queries: dict[str, StreamingQuery]) -> None:
    """Stop every query (each one even if stopping another fails)."""
    errors: list[BaseException] = []
    for q in queries.values():
        try:
            q.stop()
        except Exception as exc:  # stop the others before reporting it
            errors.append(exc)
    if errors:
        raise errors[0]


def run_summary(shipments_query: StreamingQuery) -> ShipmentsRunSummary:
    """The summary of a shipments query's run so far, from the observed metrics of every batch it
    reported (the session keeps up to `spark.sql.streaming.numRecentProgressUpdates` of them)."""
    read = dead = 0
    for progress in shipments_query.recentProgress:
        observed = (json.loads(progress.json).get("observedMetrics") or {}).get(METRICS) or {}
        read += int(observed.get("read") or 0)
        dead += int(observed.get("dead_lettered") or 0)
    return ShipmentsRunSummary(read=read, shipped=read - dead, dead_lettered=dead)
