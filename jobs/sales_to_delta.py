"""The spine: the `sales` topic -> parsed, typed rows -> a Delta table.

    spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py \\
      --bootstrap-servers 127.0.0.1:9092 --topic sales \\
      --delta-path .pipelines/data/sales --checkpoint .pipelines/checkpoints/sales_to_delta \\
      [--trigger available-now|processing-time=5s]

Also runs as `python jobs/sales_to_delta.py ...`, in which case the project's resolved jars are
put on the session. Records that do not parse are not written (they are counted in the summary
line this job prints as JSON); routing them to `sales.dlq` comes with the revenue job.

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
from pipelines.flows import SALES_TO_DELTA, sales_to_delta
from pipelines.job import add_job_options, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sales_to_delta.py",
        description="Read the sales topic with Spark's kafka source, parse it with the contract's "
        "schema and append the valid events to a Delta table (exactly-once via the checkpoint).",
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--topic", default="sales", help="topic to read (default: sales)")
    p.add_argument("--delta-path", required=True, type=Path, help="Delta table folder to append to")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder of this query")
    p.add_argument(
        "--trigger",
        default="available-now",
        help="available-now (process what is there, then stop; default) or processing-time=5s "
        "(run until stopped)",
    )
    p.add_argument(
        "--starting-offsets",
        default="earliest",
        help="where a new checkpoint starts: earliest (default), latest, or a JSON of offsets",
    )
    p.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=None,
        help="bound on records per micro-batch (default: the profile's spark.max_offsets_per_trigger)",
    )
    add_job_options(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run(settings: Settings, spark: SparkSession) -> tuple[dict[str, Any], int]:
        summary = sales_to_delta(
            spark,
            bootstrap_servers=args.bootstrap_servers,
            topic=args.topic,
            delta_path=args.delta_path,
            checkpoint=args.checkpoint,
            trigger=args.trigger,
            starting_offsets=args.starting_offsets,
            max_offsets_per_trigger=args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger,
        )
        return {"delta_path": str(args.delta_path), **summary.as_dict()}, 0

    return run_job(SALES_TO_DELTA, args, os.environ, run)


if __name__ == "__main__":
    sys.exit(main())
