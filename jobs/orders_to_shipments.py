"""Orders become shipments: the `orders` topic -> the `shipments` topic, malformed orders to a DLQ.

    spark-submit --jars "$(pipelines jars)" jobs/orders_to_shipments.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --sink-topic shipments --checkpoint DIR \\
      [--trigger available-now|processing-time=0s|real-time[=5m]] [--dlq-topic orders.dlq]

Each valid order becomes a shipment keyed by the order's key, with its headers, and the value
`{"shipment_id": "ship-<order_id>", "order_id", "customer_id", "status": "pending", "created_at"}`
(`created_at` is the order's timestamp, the same text). Orders that do not parse go to
`<source-topic>.dlq` with the reason; the job never stops on bad input.

At-least-once (Spark's kafka sink): after a crash between writing a batch and committing it, that
batch's shipments are written again. Consumers deduplicate by `shipment_id`
(`pipelines.kafka.dedupe`). `--trigger real-time` is Spark's low-latency mode: update mode, stateless
queries, Kafka in and out, and 2 task slots per source partition (checked before starting).
An available-now run ends with one JSON line: records read, shipped, dead-lettered.

On a secured cluster (TLS, SASL/SCRAM) the credentials come from the environment, never from the
command line: PIPELINES_KAFKA__SECURITY_PROTOCOL, PIPELINES_KAFKA__SASL_MECHANISM,
PIPELINES_KAFKA__SASL_USERNAME, PIPELINES_KAFKA__SASL_PASSWORD, PIPELINES_KAFKA__SSL_CA_LOCATION
(`eval "$(pipelines broker env)"` for the local secured broker); they become the kafka source's and
sink's `kafka.security.protocol`, `kafka.sasl.jaas.config` and PEM truststore options.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.errors import PipelinesError
from pipelines.job import add_job_options, run_job
from pipelines.shipments import (
    ORDERS_TO_SHIPMENTS,
    SHIPMENTS_TOPIC,
    run_summary,
    start_orders_to_shipments,
    stop_all,
)
from pipelines.triggers import is_available_now, is_real_time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="orders_to_shipments.py",
        description="Every valid order becomes a pending shipment (key and headers preserved) on the "
        "sink topic; malformed orders go to the dead-letter topic. At-least-once: deduplicate by "
        "shipment_id downstream.",
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--source-topic", default="orders", help="topic of orders (default: orders)")
    p.add_argument(
        "--sink-topic", default=SHIPMENTS_TOPIC, help=f"topic of shipments (default: {SHIPMENTS_TOPIC})"
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint folder (one subfolder per query)"
    )
    p.add_argument(
        "--trigger",
        default="available-now",
        help="available-now (process what is there, then stop; default), processing-time=0s "
        "(micro-batches back to back, or every N s), or real-time[=<checkpoint interval>] (Spark's "
        "low-latency mode; the interval, 5 minutes by default and at least 5 s, is how often progress "
        "is checkpointed; needs 2 task slots per source partition)",
    )
    p.add_argument("--dlq-topic", default=None, help="dead-letter topic (default: <source-topic>.dlq)")
    p.add_argument(
        "--starting-offsets", default="earliest", help="where a new checkpoint starts (default: earliest)"
    )
    p.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=None,
        help="bound on records per micro-batch (default from the profile; not used in real-time mode)",
    )
    add_job_options(p)
    args = p.parse_args(argv)
    try:
        is_real_time(args.trigger)
    except PipelinesError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        queries = start_orders_to_shipments(
            spark,
            bootstrap_servers=args.bootstrap_servers,
            source_topic=args.source_topic,
            sink_topic=args.sink_topic,
            checkpoint=args.checkpoint,
            dlq_topic=args.dlq_topic,
            trigger=args.trigger,
            starting_offsets=args.starting_offsets,
            max_offsets_per_trigger=args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger,
        )
        try:
            if is_available_now(args.trigger):
                for q in queries.values():
                    q.awaitTermination()
            else:
                spark.streams.awaitAnyTermination()
        finally:
            stop_all(queries)
        return {"checkpoint": str(args.checkpoint), **run_summary(queries["shipments"]).as_dict()}, 0

    return run_job(ORDERS_TO_SHIPMENTS, args, os.environ, run)


if __name__ == "__main__":
    sys.exit(main())
