"""The SparkSession factory: local jars, Delta Lake, UTC, quiet logs, sane local tuning.

Jobs call `build_session` once. Started with `python jobs/x.py`, the session gets the project's
resolved jars on `spark.jars` (nothing is downloaded: Ivy and `spark.jars.packages` are never used).
Started with `spark-submit --jars "$(pipelines jars)"` (or `--packages`), spark-submit has already
put the connectors on the classpath and the factory leaves `spark.jars` alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.errors import PipelinesError
from pipelines.local.jvm import spark_jars

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def launched_by_spark_submit(environ: Mapping[str, str]) -> bool:
    """True inside a Python driver that spark-submit started (it hands the driver its JVM)."""
    return "PYSPARK_GATEWAY_PORT" in environ


class SessionOptions(TypedDict, total=False):
    """The options of `session_conf` that `build_session` passes on (defaults: see there)."""

    shuffle_partitions: int
    ui_enabled: bool
    log4j_config: Path | None
    log_dir: Path | None
    verbose: bool
    java_options: Sequence[str]
    extra: Mapping[str, str] | None


def session_conf(
    *,
    master: str | None,
    jars: Sequence[Path] | None,
    shuffle_partitions: int = 4,
    ui_enabled: bool = False,
    log4j_config: Path | None = None,
    log_dir: Path | None = None,
    verbose: bool = False,
    java_options: Sequence[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The configuration `build_session` applies, as plain key/values (tested on its own).
    `java_options` are added to the driver's and executors' JVM options."""
    conf: dict[str, str] = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        # Event time is UTC everywhere; the JVM default zone would shift window boundaries.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        # Delta rebuilds a table's snapshot with 50 tasks by default, whatever its size: on small
        # tables and few cores that is most of a MERGE's or a count's time.
        "spark.databricks.delta.snapshotPartitions": str(shuffle_partitions),
        "spark.ui.enabled": str(ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Streaming state in RocksDB keeps the JVM heap small and checkpoints compact.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        # Each batch uploads only the changes to the state, not a RocksDB snapshot.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Keep every batch's progress of a run (the default, 100, loses the start of long runs).
        "spark.sql.streaming.numRecentProgressUpdates": "10000",
        "spark.databricks.delta.optimizeWrite.enabled": "true",
        # Every micro-batch writes two checkpoint files (offsets, commits). Spark's default manager
        # does it through Hadoop's FileContext, which on local disk forks `readlink` and `chmod`
        # processes for each file (Hadoop's native library is not in pyspark): 81 ms of a 148 ms
        # pass-through batch on two cores. The FileSystem-based manager writes the same temporary
        # file and renames it with fewer forks: 22 of 79 ms. Like the default on local disk, it
        # checks that the file is not there before the rename; on HDFS a rename onto an existing
        # file fails, so a second run on one checkpoint is refused there as before.
        "spark.sql.streaming.checkpointFileManagerClass": (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        ),
    }
    if master:
        conf["spark.master"] = master
        if master.startswith(("local", "spark://127.0.0.1", "spark://localhost")):
            # A local driver listens on loopback only, never on the machine's public interface.
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
    if jars is not None:
        conf["spark.jars"] = ",".join(str(p) for p in jars)
    if log4j_config is not None:
        opt = f"-Dlog4j2.configurationFile=file:{log4j_config.resolve()}"
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            opt += f" -Dpipelines.log.dir={log_dir.resolve()}"
        if verbose:
            opt += " -Dpipelines.console.level=info"
        conf["spark.driver.extraJavaOptions"] = opt
        conf["spark.executor.extraJavaOptions"] = opt
    if java_options:
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            conf[key] = " ".join([*filter(None, [conf.get(key)]), *java_options])
    conf.update(extra or {})
    return conf


INTERPRETED: dict[str, str] = {
    "spark.sql.codegen.wholeStage": "false",
    # Internal to Spark (its tests use it; present since Spark 2.4, checked on 4.2.0 by
    # tests/test_spark.py): projections and predicates interpreted instead of generated.
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
"""SQL settings under which a query evaluates its expressions interpreted, without generating Java
code. Spark plans every micro-batch anew and generates the code of its plan again each time (its
compiler cache then finds the class, but writing the code is not cached). For the order parser's
hundreds of expressions that writing is ~90 ms of a 190 ms micro-batch of a few hundred orders on
two cores; interpreted, the batch is ~100 ms and a 300,000-order backlog is read as fast (bench/,
docs/architecture.md)."""

_QUERY_CONF_LOCK = threading.Lock()


@contextlib.contextmanager
def query_conf(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """Set `conf` on the session while a streaming query starts inside the block, then restore it.

    A streaming query runs in a copy of its session taken when it starts (Spark's
    `StreamExecution.sparkSessionForStream`), so the settings stay with that query alone: queries
    started later, and batch work on the session, see the session's own settings again.
    """
    with _QUERY_CONF_LOCK:
        before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in conf}
        try:
            for key, value in conf.items():
                spark.conf.set(key, value)
            yield
        finally:
            for key, previous in before.items():
                if previous is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, previous)


def worker_python(master: str | None, environ: Mapping[str, str]) -> str | None:
    """The interpreter Spark's Python workers should run when this process starts the session:
    this process's own (whose environment has confluent-kafka, which the exactly-once Kafka sink's
    partition writers need) for a local master or a standalone master on this machine, unless
    `PYSPARK_PYTHON` says otherwise; None leaves Spark's default (`python3` on the PATH)."""
    if environ.get("PYSPARK_PYTHON") or not master:
        return None
    if master.startswith(("local", "spark://127.0.0.1", "spark://localhost")):
        return sys.executable
    return None


def build_session(
    app_name: str,
    *,
    master: str | None = "local[*]",
    jars: Sequence[Path] | None = None,
    **options: Unpack[SessionOptions],
) -> SparkSession:
    """Create (or return the running) SparkSession with Kafka and Delta available.

    `jars` are the local connector jars (`pipelines.local.jvm.spark_jars`); pass None when
    spark-submit already provides them, and `master=None` to keep spark-submit's `--master`.
    `options` are those of `session_conf` (`SessionOptions`).
    """
    python = worker_python(master, os.environ)
    if python is not None:
        os.environ["PYSPARK_PYTHON"] = python  # read once, when the SparkContext starts
    builder = SparkSession.builder.appName(app_name)
    for key, value in session_conf(master=master, jars=jars, **options).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    return spark


def session_for_job(
    app_name: str,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    verbose: bool = False,
    java_options: Sequence[str] = (),
) -> SparkSession:
    """The session of a job entry point: local jars, master and log config from the settings when
    started with `python`, or what spark-submit provided when started by spark-submit (which
    then also decides the JVM's options: `java_options` apply to a session started here)."""
    if launched_by_spark_submit(environ):
        return build_session(
            app_name,
            master=None,
            jars=None,
            shuffle_partitions=settings.spark.shuffle_partitions,
            ui_enabled=settings.spark.ui_enabled,
        )
    log4j = settings.spark.log4j_config
    return build_session(
        app_name,
        master=settings.spark.master,
        jars=spark_jars(settings.resolve_path(settings.paths.jars_dir)),
        shuffle_partitions=settings.spark.shuffle_partitions,
        ui_enabled=settings.spark.ui_enabled,
        log4j_config=settings.resolve_path(log4j) if log4j else None,
        log_dir=job_log_dir(settings),
        verbose=verbose,
        java_options=java_options,
    )


def job_log_dir(settings: Settings) -> Path:
    """Where a job started with `python` (or `make run`) writes Spark's log, `spark.log`: next to
    the data folder (`.pipelines/logs` by default). Under spark-submit, the cluster's log4j decides."""
    return settings.resolve_path(settings.paths.data_dir).parent / "logs"


def job_log_file(settings: Settings, environ: Mapping[str, str]) -> Path | None:
    """spark.log of a job started with `python`; None under spark-submit (the driver's log4j, and
    so its log, is the cluster's)."""
    return None if launched_by_spark_submit(environ) else job_log_dir(settings) / "spark.log"


def job_error(job: str, exc: Exception, log_file: Path | None) -> tuple[str, int]:
    """The line a job entry point prints for `exc`, and its exit status: 2 for what arguments or
    setup can fix (a PipelinesError, a query Spark refuses to start), 3 for a query that failed
    while running. Spark's own errors say where the full story is."""
    from pyspark.errors import StreamingQueryException

    if isinstance(exc, PipelinesError):
        return f"{job}: {exc}", 2
    where = (
        f" (the full error and Spark's log: {log_file})"
        if log_file
        else " (the full error: the driver's log)"
    )
    if isinstance(exc, StreamingQueryException):
        return f"{job}: a query failed: {explain_analysis_error(exc)}{where}", 3
    return f"{job}: {explain_analysis_error(exc)}{where}", 2


def spark_failure(component: str, exc: Exception, log_file: Path | None) -> str:
    """One message for a failed Spark query or action: which component failed, Spark's own first
    line (or what to do, for a missing connector), and where the whole story is."""
    where = f"; the full error and Spark's log are in {log_file}" if log_file else ""
    return f"{component} failed: {explain_analysis_error(exc)}{where}"


def explain_analysis_error(exc: Exception) -> str:
    """Turn Spark's 'Failed to find data source' into what to do about it."""
    text = str(exc)
    for source in ("kafka", "delta"):
        not_found = "DATA_SOURCE_NOT_FOUND" in text or "Failed to find the data source" in text
        if not_found and source in text:
            return (
                f"Spark has no {source} connector on its classpath. Run `make setup`, then start the "
                'job with spark-submit --jars "$(pipelines jars)" (or --packages "$(pipelines jars '
                '--packages)" on a machine that reaches Maven Central).'
            )
    return text.splitlines()[0] if text else repr(exc)
