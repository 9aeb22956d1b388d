"""What every job shares: its command-line options and validation, and the run around the job itself
(settings, Kafka credentials from the environment, SparkSession, one line per failure, the summary
as one JSON line on stdout).

Arguments and their rules are docs/cli.md's; secured clusters (TLS, SASL/SCRAM) take their
credentials from the environment, never from the command line (docs/cli.md, "Security").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession

from pipelines.config import Settings, load_settings
from pipelines.contracts import dead_letter_topic
from pipelines.errors import PipelinesError
from pipelines.jobs.checkpoint import SHUFFLE_PARTITIONS, CheckpointSpec, guard_checkpoint, record_checkpoint
from pipelines.kafka.job_topics import JobTopics, prepare_topics
from pipelines.kafka.reach import check_reachable
from pipelines.queries import QueryGroup
from pipelines.security import security_from_settings, use_security
from pipelines.sinks import start_dead_letter_sink
from pipelines.spark import job_error, job_log_file, session_for_job
from pipelines.triggers import is_real_time, trigger_kwargs

T = TypeVar("T")
JobBody = Callable[[Settings, SparkSession], tuple[dict[str, Any] | None, int]]
"""The job itself: given the settings and the session, its summary (printed as JSON after the job's
name; None prints nothing) and its exit status."""

SINKS = ("delta", "kafka", "both")
"""The `--sink` choices of the jobs that can write Delta, Kafka or both."""
SECURITY_EPILOG = (
    "Secured clusters: the credentials come from the environment (PIPELINES_KAFKA__*), never from "
    "the command line; see docs/cli.md."
)
TRIGGER_HELP = (
    "available-now (process what is there, then stop; default) or processing-time=5s (run until stopped)"
)


class JobArgumentParser(argparse.ArgumentParser):
    """argparse, with a wrong argument reported on one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a job, with the options every job has: `--bootstrap-servers` and
    `--checkpoint` (required), `--profile`, `--create-topics` and `--verbose`."""
    p = JobArgumentParser(prog=prog, description=description, epilog=SECURITY_EPILOG)
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint folder (one subfolder per query)"
    )
    p.add_argument("--profile", default="local", help="settings profile in conf/ (default: local)")
    p.add_argument(
        "--create-topics",
        action="store_true",
        help="create a missing sink topic (with the source's partition count) instead of stopping; "
        "dead-letter topics are always created on demand",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Spark's INFO log on the terminal (it always goes to .pipelines/logs/spark.log; "
        "under spark-submit the cluster's log4j decides)",
    )
    return p


def add_read_options(
    p: argparse.ArgumentParser, *, real_time: bool = False, trigger_help: str = TRIGGER_HELP
) -> None:
    """`--trigger` (real-time mode only where the job supports it), `--starting-offsets` and
    `--max-offsets-per-trigger`."""
    p.add_argument(
        "--trigger",
        default="available-now",
        type=real_time_trigger if real_time else micro_batch_trigger,
        help=trigger_help,
    )
    p.add_argument(
        "--starting-offsets",
        default="earliest",
        help="where a new checkpoint starts: earliest (default), latest, or a JSON of offsets",
    )
    p.add_argument(
        "--max-offsets-per-trigger",
        type=positive_int,
        default=None,
        help="bound on records per micro-batch (default: the profile's spark.max_offsets_per_trigger)",
    )


def dead_letters(args: argparse.Namespace, source: str) -> tuple[tuple[str, str], ...]:
    """The job's dead-letter topic (`--dlq-topic`, default `<source>.dlq`) with its source."""
    return ((args.dlq_topic or dead_letter_topic(source), source),)


def add_dlq_option(p: argparse.ArgumentParser, source_flag: str) -> None:
    p.add_argument("--dlq-topic", default=None, help=f"dead-letter topic (default: <{source_flag}>.dlq)")


def real_time_trigger(spec: str) -> str:
    """A `--trigger` value: available-now, processing-time=N or real-time[=interval]."""
    trigger_kwargs_or_error(spec)
    return spec


def micro_batch_trigger(spec: str) -> str:
    """A `--trigger` value of a job that cannot run in real-time mode (it has state or a Delta sink)."""
    trigger_kwargs_or_error(spec)
    if is_real_time(spec):
        raise argparse.ArgumentTypeError(
            "real-time mode runs stateless Kafka-to-Kafka queries only (orders_to_shipments); "
            "use available-now or processing-time=<N>s"
        )
    return spec


def trigger_kwargs_or_error(spec: str) -> dict[str, Any]:
    try:
        return trigger_kwargs(spec)
    except PipelinesError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_sink(sink: str, delta_path: Path | None) -> None:
    """The Python API's version of the `--sink` rules (ValueError): a known sink, and a Delta path
    for `delta` and `both`."""
    if sink not in SINKS:
        raise ValueError(f"sink must be one of {SINKS}")
    if sink in ("delta", "both") and delta_path is None:
        raise ValueError("a Delta sink needs delta_path")


def require_delta_path(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--sink delta` and `--sink both` write a Delta table: `--delta-path` says where."""
    if args.sink in ("delta", "both") and args.delta_path is None:
        p.error("--delta-path is required with --sink delta or both")


def max_offsets(args: argparse.Namespace, settings: Settings) -> int | None:
    """`--max-offsets-per-trigger`, else the profile's `spark.max_offsets_per_trigger`."""
    return args.max_offsets_per_trigger or settings.spark.max_offsets_per_trigger


RUN_OPTIONS = frozenset({"profile", "verbose", "progress_file", "create_topics"})
"""Arguments that are about the run (settings, logging, files), not the pipeline's wiring."""


def start_from_args(
    start: Callable[..., T], spark: SparkSession, args: argparse.Namespace, settings: Settings
) -> T:
    """Call the job's start function with its arguments: every job option is the keyword argument of
    the same name (`--sink-topic` is `sink_topic=`), except the RUN_OPTIONS, and
    `--max-offsets-per-trigger` falls back to the profile's value; `spark_settings` is the
    profile's `spark` section."""
    options = {name: value for name, value in vars(args).items() if name not in RUN_OPTIONS}
    options["max_offsets_per_trigger"] = max_offsets(args, settings)
    options["spark_settings"] = settings.spark
    return start(spark, **options)


def start_dead_letters(
    group: QueryGroup, parsed_df: DataFrame, *, bootstrap_servers: str, topic: str, checkpoint: Path
) -> None:
    """Add the group's `dlq` query: the records of `parsed_df` with an `error_reason`, to the
    dead-letter `topic` (`sinks.start_dead_letter_sink`), checkpointed in `checkpoint/dlq`."""
    group.add(
        "dlq",
        start_dead_letter_sink(
            parsed_df,
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            checkpoint=checkpoint / "dlq",
            trigger=group.trigger,
            query_name=group.query_name("dlq"),
        ),
    )


def run_job(
    name: str,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    body: JobBody,
    topics: JobTopics | None = None,
    checkpoint: CheckpointSpec | None = None,
) -> int:
    """Run `body` for the job `name` and return its exit status: 2 for what arguments or setup can
    fix, 3 for a query that failed while running (`job_error`), else the body's.

    Before Spark starts, the job's `checkpoint` folder is checked (`pipelines.jobs.checkpoint`), a
    broker must answer (`pipelines.kafka.reach`) and the job's `topics` are checked, dead-letter
    topics created on demand (`pipelines.kafka.job_topics`): a reused checkpoint, a wrong address
    or a missing topic is one line within seconds, not a Java stack trace after a minute.
    Credentials come from the environment (PIPELINES_KAFKA__*), never from argv: `ps` shows argv.
    """
    log_file = None
    identity: dict[str, str] | None = None
    try:
        settings = load_settings(args.profile, environ)
        log_file = job_log_file(settings, environ)
        use_security(args.bootstrap_servers, security_from_settings(settings))
        if checkpoint is not None:
            wanted = dict(checkpoint.identity)
            if checkpoint.stateful:
                wanted[SHUFFLE_PARTITIONS] = str(settings.spark.shuffle_partitions)
            guard_checkpoint(args.checkpoint, name, checkpoint.queries, wanted, checkpoint.retired)
            identity = wanted  # recorded when the run ends, once a batch was committed
        check_reachable(args.bootstrap_servers)
        if topics is not None:
            prepare_topics(
                args.bootstrap_servers,
                topics,
                create_sinks=getattr(args, "create_topics", False),
                replication_factor=settings.kafka.replication_factor,
                say=lambda message: print(f"{name}: {message}", file=sys.stderr),
            )
        spark = session_for_job(name, settings, environ, verbose=args.verbose)
        summary, status = body(settings, spark)
    except (PipelinesError, PySparkException) as exc:
        message, status = job_error(name, exc, log_file)
        print(message, file=sys.stderr)
        return status
    finally:
        if identity is not None:
            record_checkpoint(args.checkpoint, name, identity)
    if summary is not None:
        print(json.dumps({"job": name, **summary}))
    return status
