"""A job's checkpoint folder checked before Spark starts (pipelines.jobs.checkpoint): a real
checkpoint of the revenue job, then every way of reusing it by mistake is one exact line; a
damaged file is named with the way out, and following that advice resumes exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.jobs.checkpoint import MANIFEST, CheckpointError, guard_checkpoint, record_checkpoint
from pipelines.jobs.orders_to_shipments import ORDERS_TO_SHIPMENTS
from pipelines.jobs.orders_to_shipments import QUERIES as SHIPMENTS_QUERIES
from pipelines.jobs.orders_to_shipments import RETIRED_QUERIES as SHIPMENTS_RETIRED
from pipelines.jobs.revenue_per_minute import REVENUE_PER_MINUTE, start_revenue_per_minute
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from tests.helpers import heartbeat, sale, ts

QUERIES = ("dlq", "delta", "merge", "kafka")


PARTITIONS = "2"
"""The test session's spark.sql.shuffle.partitions (tests/conftest.py), which the checkpoint keeps."""


def identity(topic: str, **changes: str) -> dict[str, str]:
    return {
        "topic": topic,
        "window": "1 minute",
        "watermark": "30 seconds",
        "mode": "append",
        "shuffle_partitions": PARTITIONS,
        **changes,
    }


def run_revenue(spark: SparkSession, bootstrap: str, topic: str, base: Path) -> None:
    job = start_revenue_per_minute(
        spark,
        bootstrap_servers=bootstrap,
        topic=topic,
        checkpoint=base / "checkpoint",
        delta_path=base / "revenue",
        dlq_topic=f"{topic}.dlq",
        max_offsets_per_trigger=2,  # sales, then heartbeats: windows close in the run's last batch
    )
    job.await_termination()


def revenue_rows(spark: SparkSession, base: Path) -> list[tuple[str, str, Decimal, int]]:
    rows = spark.read.format("delta").load(str(base / "revenue")).collect()
    return sorted((f"{r.window_start:%H:%M}", r.category, r.revenue, r.sales_count) for r in rows)


def test_a_reused_checkpoint_is_refused_in_one_line_and_a_damaged_file_names_the_way_out(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    assert spark.conf.get("spark.sql.shuffle.partitions") == PARTITIONS
    topic = new_topic(partitions=1)
    create_topic(bootstrap, f"{topic}.dlq", partitions=1)
    first = [sale("s1", "books", "10.10", ts(0, 5)), sale("s2", "toys", "2.50", ts(0, 40))]
    # The first heartbeat moves the watermark past 10:01, the batch of the second writes the windows.
    produce_all(make_producer(bootstrap), topic, [*first, heartbeat(ts(3, 0)), heartbeat(ts(4, 0))])
    run_revenue(spark, bootstrap, topic, tmp_path)
    checkpoint = tmp_path / "checkpoint"
    assert record_checkpoint(checkpoint, REVENUE_PER_MINUTE, identity(topic))
    assert json.loads((checkpoint / MANIFEST).read_text()) == {
        "job": REVENUE_PER_MINUTE,
        "identity": identity(topic),
    }
    guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic))  # same job, same settings

    fresh = (
        f"To start fresh, pass a new --checkpoint folder (this one keeps its state), or delete {checkpoint} "
        "to process the topic again from --starting-offsets"
    )
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic, window="2 minutes"))
    assert str(refused.value) == (
        f"checkpoint {checkpoint} was made by revenue_per_minute with other settings: --window was "
        f"'1 minute', this run has '2 minutes'; its state cannot be carried over. {fresh}"
    )
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic, shuffle_partitions="8"))
    assert str(refused.value) == (
        f"checkpoint {checkpoint} was made by revenue_per_minute with other settings: the shuffle-partition "
        "count (spark.shuffle_partitions) was '2', this run has '8'; its state cannot be carried over. "
        "Spark keeps a stateful query's partition count for the life of its checkpoint: set "
        f"PIPELINES_SPARK__SHUFFLE_PARTITIONS=2 to resume. {fresh}"
    )
    # The revenue job's checkpoint has a `dlq` folder, like the shipments job's retired query: it is
    # still another job's checkpoint, never "an earlier release" to delete a folder of.
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(
            checkpoint, ORDERS_TO_SHIPMENTS, SHIPMENTS_QUERIES, {"topic": topic}, SHIPMENTS_RETIRED
        )
    assert str(refused.value) == (
        f"checkpoint {checkpoint} was made by revenue_per_minute, not orders_to_shipments: two jobs must "
        f"never share a checkpoint. {fresh}"
    )

    # Without pipelines-job.json (a checkpoint from before it existed), Spark's own files still
    # tell the topic, the partition count and the queries.
    (checkpoint / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"the topic was '.*', this run has 'other'"):
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity("other"))
    with pytest.raises(CheckpointError, match=r"spark\.shuffle_partitions\) was '2', this run has '3'"):
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic, shuffle_partitions="3"))
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(
            checkpoint, ORDERS_TO_SHIPMENTS, SHIPMENTS_QUERIES, {"topic": topic}, SHIPMENTS_RETIRED
        )
    assert str(refused.value) == (
        f"checkpoint {checkpoint} holds query folders delta, dlq, which orders_to_shipments does not "
        f"write: another job made it. {fresh}"
    )
    guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic))

    assert revenue_rows(spark, tmp_path) == [
        ("10:00", "books", Decimal("10.10"), 1),
        ("10:00", "toys", Decimal("2.50"), 1),
    ]
    # The commit of the batch that wrote those rows, cut short as a crash mid-write leaves it.
    commits = checkpoint / "delta" / "commits"
    newest = commits / str(max(int(p.name) for p in commits.iterdir() if p.name.isdigit()))
    newest.write_text("v1\n")
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic))
    checksum = commits / f".{newest.name}.crc"
    assert str(refused.value) == (
        f"checkpoint file {newest} is damaged (it is truncated), as a crash while it was written or a full "
        f"disk leaves it. To resume, delete it (rm {newest} {checksum}) and run again: the query replays "
        "that batch (Delta sinks skip a batch they already committed; Kafka sinks may write it again)"
    )
    # Following the advice: the batch is replayed, nothing is written twice, new input continues.
    newest.unlink()
    checksum.unlink()
    guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, identity(topic))
    produce_all(
        make_producer(bootstrap), topic, [sale("s3", "books", "1.00", ts(5, 10)), heartbeat(ts(8, 0))]
    )
    run_revenue(spark, bootstrap, topic, tmp_path)
    # The replayed batch wrote nothing twice (Delta skipped its transaction).
    assert revenue_rows(spark, tmp_path) == [
        ("10:00", "books", Decimal("10.10"), 1),
        ("10:00", "toys", Decimal("2.50"), 1),
        ("10:05", "books", Decimal("1.00"), 1),
    ]


def test_damaged_metadata_and_manifest_are_named(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck"
    (checkpoint / "dlq").mkdir(parents=True)
    (checkpoint / "dlq" / "metadata").write_text('{"id":"1f')
    with pytest.raises(
        CheckpointError, match=r"checkpoint file .*/dlq/metadata is damaged \(it is not valid JSON\)"
    ):
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, {"topic": "sales"})
    (checkpoint / "dlq" / "metadata").write_text('{"id":"1f0"}')
    (checkpoint / MANIFEST).write_text("")
    with pytest.raises(CheckpointError, match=r"pipelines-job.json is damaged \(it is not valid JSON\)"):
        guard_checkpoint(checkpoint, REVENUE_PER_MINUTE, QUERIES, {"topic": "sales"})


def test_nothing_is_recorded_before_a_batch_commits(tmp_path: Path) -> None:
    assert not record_checkpoint(tmp_path / "new", REVENUE_PER_MINUTE, {"topic": "sales"})
    assert not (tmp_path / "new").exists()


def test_a_query_an_earlier_release_ran_is_refused_with_what_to_do(tmp_path: Path) -> None:
    # orders_to_shipments once had a second query for the dead letters (`dlq`); it now writes them
    # from its shipments query, so resuming would leave what `dlq` had not yet read undelivered.
    checkpoint = tmp_path / "ck"
    for query in ("shipments", "dlq"):
        (checkpoint / query).mkdir(parents=True)
        (checkpoint / query / "metadata").write_text('{"id":"1f0"}')
    (checkpoint / MANIFEST).write_text(
        json.dumps({"job": ORDERS_TO_SHIPMENTS, "identity": {"topic": "orders"}})
    )
    with pytest.raises(CheckpointError) as refused:
        guard_checkpoint(
            checkpoint, ORDERS_TO_SHIPMENTS, SHIPMENTS_QUERIES, {"topic": "orders"}, SHIPMENTS_RETIRED
        )
    assert str(refused.value) == (
        f"checkpoint {checkpoint} holds query folders dlq, a query of an earlier release of "
        f"orders_to_shipments that this release does not run. If that query had caught up, delete "
        f"{checkpoint / 'dlq'} and start again; else finish the run with the earlier release first. "
        "To start fresh, pass a new --checkpoint folder (this one keeps its state), or delete "
        f"{checkpoint} to process the topic again from --starting-offsets"
    )
    (checkpoint / "dlq" / "metadata").unlink()
    (checkpoint / "dlq").rmdir()
    guard_checkpoint(
        checkpoint, ORDERS_TO_SHIPMENTS, SHIPMENTS_QUERIES, {"topic": "orders"}, SHIPMENTS_RETIRED
    )
