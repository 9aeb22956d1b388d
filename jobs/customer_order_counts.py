"""A stateful table done the Spark way: running order count and amount per customer from `orders`.

    spark-submit --jars "$(pipelines jars)" jobs/customer_order_counts.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --checkpoint DIR \\
      [--sink kafka|delta|both] [--sink-topic customer-order-counts] [--delta-path DIR] \\
      [--trigger available-now|processing-time=5s]

Update mode: every batch emits the customers whose counts changed, to a compacted Kafka topic
keyed by `customer_id` and/or by MERGE into a Delta table. The counts live in the query's RocksDB
state store (changelog checkpointing) and survive restarts on the same checkpoint. Orders that do
not parse go to `<source-topic>.dlq` with the reason.

On a secured cluster (TLS, SASL/SCRAM) the credentials come from the environment, never from the
command line: PIPELINES_KAFKA__SECURITY_PROTOCOL, PIPELINES_KAFKA__SASL_MECHANISM,
PIPELINES_KAFKA__SASL_USERNAME, PIPELINES_KAFKA__SASL_PASSWORD, PIPELINES_KAFKA__SSL_CA_LOCATION
(`eval "$(pipelines broker env)"` for the local secured broker); they become the kafka source's and
sink's `kafka.security.protocol`, `kafka.sasl.jaas.config` and PEM truststore options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.flows import CUSTOMER_COUNTS_TOPIC, CUSTOMER_ORDER_COUNTS, SINKS, start_customer_order_counts
from pipelines.job import add_job_options, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="customer_order_counts.py",
        description="Running order count and amount per customer from the orders topic, kept in "
        "Spark's state store and written in update mode to a compacted topic and/or a Delta table.",
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--source-topic", default="orders", help="topic of orders (default: orders)")
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint folder (one subfolder per query)"
    )
    p.add_argument("--sink", choices=SINKS, default="kafka", help="kafka (default), delta or both")
    p.add_argument(
        "--sink-topic",
        default=CUSTOMER_COUNTS_TOPIC,
        help=f"compacted output topic ({CUSTOMER_COUNTS_TOPIC})",
    )
    p.add_argument("--delta-path", type=Path, help="Delta table of the counts (for --sink delta or both)")
    p.add_argument("--dlq-topic", default=None, help="dead-letter topic (default: <source-topic>.dlq)")
    p.add_argument("--trigger", default="available-now", help="available-now (default) or processing-time=5s")
    p.add_argument(
        "--max-offsets-per-trigger", type=int, default=None, help="bound on records per micro-batch"
    )
    add_job_options(p)
    args = p.parse_args(argv)
    if args.sink in ("delta", "both") and args.delta_path is None:
        p.error("--delta-path is required with --sink delta or both")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        queries = start_customer_order_counts(
            spark,
            bootstrap_servers=args.bootstrap_servers,
            topic=args.source_topic,
            checkpoint=args.checkpoint,
            sink=args.sink,
            output_topic=args.sink_topic,
            delta_path=args.delta_path,
            dlq_topic=args.dlq_topic,
            trigger=args.trigger,
            max_offsets_per_trigger=args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger,
        )
        try:
            if args.trigger.strip().lower() == "available-now":
                for q in queries.values():
                    q.awaitTermination()
            else:
                spark.streams.awaitAnyTermination()
        finally:
            for q in queries.values():
                q.stop()
        read = sum(int(json.loads(p.json)["numInputRows"]) for p in queries["dlq"].recentProgress)
        return {"read": read, "checkpoint": str(args.checkpoint)}, 0

    return run_job(CUSTOMER_ORDER_COUNTS, args, os.environ, run)


if __name__ == "__main__":
    sys.exit(main())
