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

On a secured cluster (TLS, SASL/SCRAM) the credentials come from the environment, never from the
command line: PIPELINES_KAFKA__SECURITY_PROTOCOL, PIPELINES_KAFKA__SASL_MECHANISM,
PIPELINES_KAFKA__SASL_USERNAME, PIPELINES_KAFKA__SASL_PASSWORD, PIPELINES_KAFKA__SSL_CA_LOCATION
(`eval "$(pipelines broker env)"` for the local secured broker); they become the kafka source's and
sink's `kafka.security.protocol`, `kafka.sasl.jaas.config` and PEM truststore options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.flows import MODES, REVENUE_PER_MINUTE, REVENUE_TOPIC, SINKS, start_revenue_per_minute
from pipelines.job import add_job_options, run_job
from pipelines.monitor.progress import ProgressRecorder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="revenue_per_minute.py",
        description="Revenue per category per event-time window from the sales topic, into Delta "
        "(exactly-once, one row per final window) and/or Kafka, with dead letters and late-data counts.",
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--topic", default="sales", help="topic of sales events (default: sales)")
    p.add_argument(
        "--delta-path", type=Path, help="Delta table of revenue_per_minute (needed for the Delta sink)"
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint folder (one subfolder per query)"
    )
    p.add_argument(
        "--trigger",
        default="available-now",
        help="available-now (process what is there, then stop; default) or processing-time=5s",
    )
    p.add_argument(
        "--watermark", default="30 seconds", help='allowed lateness of events (default "30 seconds")'
    )
    p.add_argument("--window", default="1 minute", help='tumbling window length (default "1 minute")')
    p.add_argument("--sink", choices=SINKS, default="delta", help="where revenue goes (default: delta)")
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
    p.add_argument("--dlq-topic", default=None, help="dead-letter topic (default: <topic>.dlq)")
    p.add_argument(
        "--progress-file",
        type=Path,
        default=None,
        help="JSON-lines progress of every batch (default: <checkpoint>/../<checkpoint name>.progress.jsonl)",
    )
    p.add_argument(
        "--starting-offsets", default="earliest", help="where a new checkpoint starts (default: earliest)"
    )
    p.add_argument(
        "--max-offsets-per-trigger", type=int, default=None, help="bound on records per micro-batch"
    )
    add_job_options(p)
    args = p.parse_args(argv)
    if args.sink in ("delta", "both") and args.delta_path is None:
        p.error("--delta-path is required with --sink delta or both")
    if args.mode == "update" and args.sink == "kafka":
        p.error("--mode update is the Delta MERGE mode; the Kafka sink always sends updates")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    progress_file = args.progress_file or args.checkpoint.parent / f"{args.checkpoint.name}.progress.jsonl"

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any] | None, int]:
        spark.streams.addListener(ProgressRecorder(progress_file))
        job = start_revenue_per_minute(
            spark,
            bootstrap_servers=args.bootstrap_servers,
            topic=args.topic,
            checkpoint=args.checkpoint,
            delta_path=args.delta_path,
            sink=args.sink,
            mode=args.mode,
            window=args.window,
            watermark=args.watermark,
            trigger=args.trigger,
            output_topic=args.output_topic,
            dlq_topic=args.dlq_topic,
            starting_offsets=args.starting_offsets,
            max_offsets_per_trigger=args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger,
        )
        if args.trigger.strip().lower() != "available-now":
            spark.streams.awaitAnyTermination()
            return None, 0
        job.await_termination()
        summary = job.summary()
        return {"progress_file": str(progress_file), **summary.as_dict()}, 0 if summary.reconciles else 4

    return run_job(REVENUE_PER_MINUTE, args, os.environ, run)


if __name__ == "__main__":
    sys.exit(main())
