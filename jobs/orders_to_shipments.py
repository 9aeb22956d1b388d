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
import json
import os
import sys
from pathlib import Path

from pyspark.errors import PySparkException

from pipelines.config import load_settings
from pipelines.errors import PipelinesError
from pipelines.security import security_from_settings, use_security
from pipelines.shipments import (
    ORDERS_TO_SHIPMENTS,
    SHIPMENTS_TOPIC,
    run_summary,
    start_orders_to_shipments,
    stop_all,
)
from pipelines.spark import job_error, job_log_file, session_for_job
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
    p.add_argument("--profile", default="local", help="settings profile in conf/ (default: local)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Spark's INFO log on the terminal (it always goes to .pipelines/logs/spark.log; "
        "under spark-submit the cluster's log4j decides)",
    )
    args = p.parse_args(argv)
    try:
        is_real_time(args.trigger)
    except PipelinesError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_file = None
    try:
        settings = load_settings(args.profile, os.environ)
        log_file = job_log_file(settings, os.environ)
        # Credentials come from the environment (PIPELINES_KAFKA__*), never from argv: `ps` shows argv.
        use_security(args.bootstrap_servers, security_from_settings(settings))
        spark = session_for_job(ORDERS_TO_SHIPMENTS, settings, os.environ, verbose=args.verbose)
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
        summary = run_summary(queries["shipments"])
    except (PipelinesError, PySparkException) as exc:
        message, status = job_error(ORDERS_TO_SHIPMENTS, exc, log_file)
        print(message, file=sys.stderr)
        return status
    print(json.dumps({"job": ORDERS_TO_SHIPMENTS, "checkpoint": str(args.checkpoint), **summary.as_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
