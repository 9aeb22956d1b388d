"""What every entry point in jobs/ shares: the `--profile` and `--verbose` options, and the run
around the job itself (settings, Kafka credentials, SparkSession, one line per failure, the summary
as one JSON line on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from pipelines.config import Settings, load_settings
from pipelines.errors import PipelinesError
from pipelines.security import security_from_settings, use_security
from pipelines.spark import job_error, job_log_file, session_for_job

JobBody = Callable[[Settings, SparkSession], tuple[dict[str, Any] | None, int]]
"""The job itself: given the settings and the session, its summary (printed as JSON after the job's
name; None prints nothing) and its exit status."""


def add_job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="local", help="settings profile in conf/ (default: local)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Spark's INFO log on the terminal (it always goes to .pipelines/logs/spark.log; "
        "under spark-submit the cluster's log4j decides)",
    )


def run_job(name: str, args: argparse.Namespace, environ: Mapping[str, str], body: JobBody) -> int:
    """Run `body` for the job `name` and return its exit status: 2 for what arguments or setup can
    fix, 3 for a query that failed while running (`job_error`), else the body's.

    Credentials come from the environment (PIPELINES_KAFKA__*), never from argv: `ps` shows argv.
    """
    log_file = None
    try:
        settings = load_settings(args.profile, environ)
        log_file = job_log_file(settings, environ)
        use_security(args.bootstrap_servers, security_from_settings(settings))
        spark = session_for_job(name, settings, environ, verbose=args.verbose)
        summary, status = body(settings, spark)
    except (PipelinesError, PySparkException) as exc:
        message, status = job_error(name, exc, log_file)
        print(message, file=sys.stderr)
        return status
    if summary is not None:
        print(json.dumps({"job": name, **summary}))
    return status
