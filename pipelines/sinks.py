"""Writers: Delta (append, exactly-once through the checkpoint; MERGE, idempotent on replay), Kafka
(at-least-once) and the dead-letter topic of a parsed stream."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.security import spark_kafka_options
from pipelines.transforms.dead_letters import to_dead_letters
from pipelines.transforms.parsing import filter_bad_records


def start_delta_append(
    df: DataFrame,
    *,
    delta_path: Path,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
) -> StreamingQuery:
    """Append a stream to the Delta table at `delta_path`.

    Exactly-once: Delta records each micro-batch's id with the query's id in its transaction log,
    and the checkpoint holds the Kafka offsets, so a batch replayed after a crash is skipped.
    Every query needs its own `checkpoint` folder; two queries must never share one.
    """
    return (
        df.writeStream.format("delta")
        .outputMode("append")
        .queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
        .trigger(**trigger)
        .start(str(delta_path))
    )


def delta_row_count(spark: SparkSession, delta_path: Path) -> int:
    """Rows in the Delta table at `delta_path`; 0 when no table exists there yet."""
    if not (delta_path / "_delta_log").is_dir():
        return 0
    return spark.read.format("delta").load(str(delta_path)).count()


def start_kafka_sink(
    df: DataFrame,
    *,
    bootstrap_servers: str,
    topic: str | None,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
    output_mode: str = "append",
    extra_options: dict[str, str] | None = None,
) -> StreamingQuery:
    """Write a stream of `key`, `value` (and optionally `headers`) rows to `topic`, or with
    `topic=None` each row to its own `topic` column (Spark's topic option would override it).

    At-least-once: a batch written but not yet committed in the checkpoint when the job dies is
    written again on restart, so consumers must tolerate duplicates (keys are deterministic).
    The security options registered for `bootstrap_servers` (`pipelines.security`) are added.
    """
    writer = (
        df.writeStream.format("kafka")
        .outputMode(output_mode)
        .queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
    )
    if topic is not None:
        writer = writer.option("topic", topic)
    for key, value in {**spark_kafka_options(bootstrap_servers), **(extra_options or {})}.items():
        writer = writer.option(key, value)
    return writer.trigger(**trigger).start()


def start_kafka_transactional_sink(
    df: DataFrame,
    *,
    bootstrap_servers: str,
    topic: str,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
    marker_topic: str,
    output_mode: str = "append",
    transactional_id: str | None = None,
) -> StreamingQuery:
    """Write a stream of `key`, `value` (and optionally `headers`) rows to `topic` exactly once:
    each partition of each micro-batch written by its executor task in one Kafka transaction that
    also records the batch id, so a replay after a crash writes nothing twice for `read_committed`
    consumers
    (`pipelines.kafka.transactional_sink`). The batch ids are kept as a marker group's offset on
    `marker_topic` (the job's source topic, which it may read). The transactional id defaults to
    one derived from the query name and `checkpoint`, stable across restarts."""
    from pipelines.kafka.transactional_sink import transactional_id_for
    from pipelines.transactional_writer import TransactionalBatchWriter

    writer = TransactionalBatchWriter(
        bootstrap_servers,
        topic,
        transactional_id or transactional_id_for(query_name, checkpoint),
        marker_topic=marker_topic,
    )
    return (
        df.writeStream.outputMode(output_mode)
        .queryName(query_name)
        .foreachBatch(writer)
        .option("checkpointLocation", str(checkpoint))
        .trigger(**trigger)
        .start()
    )


def discard_uncommitted_table(delta_path: Path) -> bool:
    """Remove the `_delta_log` of a table whose creation was interrupted before its first commit
    (a job stopped or killed while `createIfNotExists` ran: only a temporary file of version 0),
    which Delta would take for an existing table and then fail to read (DELTA_TABLE_NOT_FOUND).
    No version was committed, so no data is lost; local paths only. True when it removed one."""
    log = Path(delta_path) / "_delta_log"
    if not log.is_dir() or any(p.suffix in (".json", ".parquet") for p in log.glob("0*")):
        return False
    shutil.rmtree(log)
    return True


def merge_into_delta(
    delta_path: Path, keys: tuple[str, ...], app_id: str
) -> Callable[[DataFrame, int], None]:
    """A `foreachBatch` function that upserts a batch into the Delta table at `delta_path` by `keys`.

    Idempotent on replay: each MERGE carries the Delta transaction id (`txnAppId` = `app_id`,
    `txnVersion` = the batch id); Delta skips a write whose version for that app id it has already
    committed, so a batch re-run after a crash is not applied twice.
    """
    from delta.tables import DeltaTable

    condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)

    def merge_batch(batch_df: DataFrame, batch_id: int) -> None:
        spark = batch_df.sparkSession
        discard_uncommitted_table(delta_path)
        DeltaTable.createIfNotExists(spark).location(str(delta_path)).addColumns(batch_df.schema).execute()
        spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
        spark.conf.set("spark.databricks.delta.write.txnVersion", str(batch_id))
        try:
            (
                DeltaTable.forPath(spark, str(delta_path))
                .alias("t")
                .merge(batch_df.alias("s"), condition)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            spark.conf.unset("spark.databricks.delta.write.txnAppId")
            spark.conf.unset("spark.databricks.delta.write.txnVersion")

    return merge_batch


def start_delta_merge(
    df: DataFrame,
    *,
    delta_path: Path,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
    keys: tuple[str, ...],
) -> StreamingQuery:
    """Upsert each micro-batch of an update-mode stream into the Delta table at `delta_path`,
    idempotently (see `merge_into_delta`; the app id is this query's checkpoint)."""
    return (
        df.writeStream.outputMode("update")
        .queryName(query_name)
        .foreachBatch(merge_into_delta(delta_path, keys, f"merge:{checkpoint.resolve()}"))
        .option("checkpointLocation", str(checkpoint))
        .trigger(**trigger)
        .start()
    )


def start_dead_letter_sink(
    parsed_df: DataFrame,
    *,
    bootstrap_servers: str,
    topic: str,
    checkpoint: Path,
    trigger: dict[str, Any],
    query_name: str,
) -> StreamingQuery:
    """Send every record of a parsed stream that has an `error_reason` to the dead-letter `topic`:
    the original key and bytes with the five dead-letter headers (`pipelines.contracts`). Update
    mode, which for this stateless query emits what append would and is the only mode real-time
    mode accepts. At-least-once, like every Kafka sink of Spark."""
    return start_kafka_sink(
        parsed_df.transform(filter_bad_records).transform(to_dead_letters),
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        checkpoint=checkpoint,
        trigger=trigger,
        query_name=query_name,
        output_mode="update",
    )
