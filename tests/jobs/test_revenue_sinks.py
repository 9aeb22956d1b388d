"""The revenue job's other outputs: the Kafka sink (updates keyed by window and category), the
MERGE upsert mode and its idempotence on replay, and the per-batch progress file."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from pipelines.contracts import REVENUE_PER_MINUTE_SCHEMA as REVENUE
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.monitor.progress import ProgressRecorder
from pipelines.sinks import merge_into_delta
from tests.helpers import heartbeat, read_topic, sale, t, ts, wait_until

SALES = [
    sale("a1", "books", "1.25", ts(0, 1)),
    sale("a2", "books", "2.50", ts(0, 40)),
    sale("a3", "toys", "3.00", ts(0, 50)),
    sale("a4", "books", "4.00", ts(1, 30)),
    sale("late", "books", "50.00", ts(0, 5)),  # behind the watermark once 10:01:30 was seen
]


def test_kafka_sink_sends_updates_keyed_by_window_and_category(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    topic, dlq, out = new_topic(partitions=1), new_topic(partitions=1), new_topic(partitions=2)
    produce_all(make_producer(bootstrap), topic, SALES[:4])
    progress = tmp_path / "progress.jsonl"
    recorder = ProgressRecorder(progress)
    spark.streams.addListener(recorder)
    job = start_revenue_per_minute(
        spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=tmp_path / "checkpoint", delta_path=None,
        sink="kafka", output_topic=out, dlq_topic=dlq, trigger="processing-time=0 seconds",
    )  # fmt: skip
    try:
        job.process_all_available()
        produce_all(make_producer(bootstrap), topic, [SALES[4], heartbeat(ts(5, 0))])
        job.process_all_available()
        # The late sale is dropped by the watermark: the listener sees it in some batch's progress.
        wait_until(
            lambda: recorder.dropped_total.get("revenue_per_minute_kafka", 0) == 1, job.main, "the drop"
        )
    finally:
        job.stop()
        spark.streams.removeListener(recorder)

    records = sorted(read_topic(bootstrap, out), key=lambda r: (r.partition, r.offset))
    latest = {r.key: json.loads(r.value or b"", parse_float=Decimal) for r in records}
    assert latest == {
        b"2026-11-27T10:00:00.000Z|books": {"window_start": "2026-11-27T10:00:00.000Z",
            "window_end": "2026-11-27T10:01:00.000Z", "category": "books", "revenue": Decimal("3.75"),
            "sales_count": 2},
        b"2026-11-27T10:00:00.000Z|toys": {"window_start": "2026-11-27T10:00:00.000Z",
            "window_end": "2026-11-27T10:01:00.000Z", "category": "toys", "revenue": Decimal("3.00"),
            "sales_count": 1},
        b"2026-11-27T10:01:00.000Z|books": {"window_start": "2026-11-27T10:01:00.000Z",
            "window_end": "2026-11-27T10:02:00.000Z", "category": "books", "revenue": Decimal("4.00"),
            "sales_count": 1},
    }  # fmt: skip
    # Every update of one window and category went to the same partition, in order.
    assert all(len({r.partition for r in records if r.key == key}) == 1 for key in latest)

    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    mine = [p for p in lines if p["query"] == "revenue_per_minute_kafka"]
    assert sum(p["input_rows"] for p in mine) == 6
    assert sum(p["dropped_by_watermark"] for p in mine) == 1
    assert mine[-1]["dropped_by_watermark_total"] == 1
    assert {"watermark", "batch_duration_ms", "state_rows", "processed_rows_per_second"} <= set(mine[-1])


def test_update_mode_merges_open_windows_into_delta(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(partitions=1), new_topic(partitions=1)
    produce_all(make_producer(bootstrap), topic, SALES[:3])
    args = dict(
        bootstrap_servers=bootstrap, topic=topic, checkpoint=tmp_path / "checkpoint",
        delta_path=tmp_path / "live", mode="update", dlq_topic=dlq, trigger="available-now",
    )  # fmt: skip

    def assert_table_after_a_run(books_revenue: str, books_count: int) -> None:
        start_revenue_per_minute(spark, **args).await_termination()  # type: ignore[arg-type]
        expected = spark.createDataFrame(
            [(t(0), t(1), "books", Decimal(books_revenue), books_count),
             (t(0), t(1), "toys", Decimal("3.00"), 1)],
            REVENUE,
        )  # fmt: skip
        table = spark.read.format("delta").load(str(tmp_path / "live"))
        assert_df_equality(
            table, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True
        )

    # Open windows are visible at once in update mode, and change as sales arrive.
    assert_table_after_a_run("3.75", 2)
    produce_all(make_producer(bootstrap), topic, [sale("b1", "books", "10.00", ts(0, 55))])
    assert_table_after_a_run("13.75", 3)


def test_merge_is_idempotent_on_replay(spark: SparkSession, tmp_path: Path) -> None:
    """A batch replayed after a crash (same batch id) is skipped by Delta, even if its content
    differs; the next batch id is applied."""
    path = tmp_path / "t"
    merge = merge_into_delta(path, ("window_start", "category"), app_id="test-app")
    batch = spark.createDataFrame([(t(0), t(1), "books", Decimal("1.00"), 1)], REVENUE)
    replayed = spark.createDataFrame([(t(0), t(1), "books", Decimal("99.00"), 9)], REVENUE)
    merge(batch, 7)
    merge(batch, 7)
    merge(replayed, 7)

    def table() -> list[tuple[Decimal, int]]:
        return [
            (r["revenue"], r["sales_count"]) for r in spark.read.format("delta").load(str(path)).collect()
        ]

    assert table() == [(Decimal("1.00"), 1)]
    merges = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").filter("operation = 'MERGE'").count()
    assert merges == 1
    merge(replayed, 8)
    assert table() == [(Decimal("99.00"), 9)]


def test_merge_recovers_a_table_whose_creation_was_interrupted(spark: SparkSession, tmp_path: Path) -> None:
    """A job stopped while Delta created its MERGE table leaves `_delta_log` holding only the
    temporary file of version 0 (seen after a Ctrl-C in `make run`); the next run's MERGE creates
    the table and writes its batch instead of failing with DELTA_TABLE_NOT_FOUND."""
    path = tmp_path / "t"
    (path / "_delta_log" / "_staged_commits").mkdir(parents=True)
    (path / "_delta_log" / ".00000000000000000000.json.b63f0dc7.tmp").write_text("{}")
    merge = merge_into_delta(path, ("window_start", "category"), app_id="test-app")
    merge(spark.createDataFrame([(t(0), t(1), "books", Decimal("1.00"), 1)], REVENUE), 0)
    rows = spark.read.format("delta").load(str(path)).collect()
    assert [(r["category"], r["revenue"], r["sales_count"]) for r in rows] == [("books", Decimal("1.00"), 1)]
