"""The spine: the `sales` topic -> parsed, typed rows -> a Delta table.

    spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py \\
      --bootstrap-servers 127.0.0.1:9092 --topic sales \\
      --delta-path .pipelines/data/sales --checkpoint .pipelines/checkpoints/sales_to_delta \\
      [--trigger available-now|processing-time=5s]

Also runs as `python jobs/sales_to_delta.py ...`, in which case the project's resolved jars are
put on the session. Records that do not parse are not written (and are counted in the summary);
routing them to the `sales.dlq` dead-letter topic comes with the revenue job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from pipelines.config import Settings, load_settings
from pipelines.errors import PipelinesError
from pipelines.sinks import delta_row_count, start_delta_append
from pipelines.sources import read_kafka_stream
from pipelines.spark import explain_analysis_error, session_for_job
from pipelines.transforms.sales import to_sales_rows, with_parsed_sale
from pipelines.triggers import trigger_kwargs

QUERY_NAME = "sales_to_delta"


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
        help="available-now (process what is there, then stop) or processing-time=5s (run forever)",
    )
    p.add_argument(
        "--starting-offsets",
        default="earliest",
        help="where a new checkpoint starts: earliest, latest or a JSON of offsets",
    )
    p.add_argument(
        "--max-offsets-per-trigger", type=int, default=None, help="bound on records per micro-batch"
    )
    p.add_argument("--profile", default="local", help="settings profile in conf/ (default: local)")
    return p.parse_args(argv)


def run(spark: SparkSession, args: argparse.Namespace, settings: Settings) -> dict[str, int]:
    """Run the query; with available-now, return {"read", "written", "rejected"} for the run."""
    raw = read_kafka_stream(
        spark,
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        starting_offsets=args.starting_offsets,
        max_offsets_per_trigger=args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger,
    )
    rows = raw.transform(with_parsed_sale).transform(to_sales_rows)
    before = delta_row_count(spark, args.delta_path)
    query = start_delta_append(
        rows,
        delta_path=args.delta_path,
        checkpoint=args.checkpoint,
        trigger=trigger_kwargs(args.trigger),
        query_name=QUERY_NAME,
    )
    try:
        query.awaitTermination()
    finally:
        query.stop()
    # recentProgress keeps the last 100 batches: enough for an available-now run of the spine.
    read = sum(int(p["numInputRows"]) for p in query.recentProgress)
    written = delta_row_count(spark, args.delta_path) - before
    return {"read": read, "written": written, "rejected": read - written}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.profile, os.environ)
        spark = session_for_job(QUERY_NAME, settings, os.environ)
        summary = run(spark, args, settings)
    except PipelinesError as exc:
        print(f"sales_to_delta: {exc}", file=sys.stderr)
        return 2
    except AnalysisException as exc:
        print(f"sales_to_delta: {explain_analysis_error(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({"job": QUERY_NAME, "delta_path": str(args.delta_path), **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
