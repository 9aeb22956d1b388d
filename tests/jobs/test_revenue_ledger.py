"""Correctness against the generator's ledger: out-of-order, late and malformed sales through the
revenue job, the Delta table compared with totals computed in plain Python from the ledger (not
with the code under test), decimals included, and every malformed event dead-lettered with the
reason the generator recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import RevenueJob, start_revenue_per_minute
from pipelines.kafka.producer import make_producer, produce_all
from tests.helpers import (
    DeltaRows,
    event_time,
    expected_windows,
    heartbeat_after,
    letter_reasons,
    read_topic,
    wait_until,
    windows_of,
)


def test_delta_table_equals_the_ledger_totals(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    producer = make_producer(bootstrap)
    # Part A is clean and sets the watermark; part B, which continues where A's event time ends,
    # brings 4% late and 5% malformed events. (A late event in the very first micro-batch would
    # not be late to Spark: there is no watermark before the first batch.)
    part_a = publish_events(
        producer, topic, generate_events("sales", 1500, seed=31), ledger=tmp_path / "a.jsonl"
    )
    a_entries = read_ledger(tmp_path / "a.jsonl")
    a_end = max(event_time(e) for e in a_entries)
    events_b = generate_events(
        "sales",
        3000,
        seed=32,
        late_fraction=0.04,
        malformed_fraction=0.05,
        start=a_end + timedelta(seconds=1),
    )

    def start() -> RevenueJob:
        return start_revenue_per_minute(
            spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=tmp_path / "checkpoint",
            delta_path=tmp_path / "revenue", dlq_topic=dlq, trigger="processing-time=0 seconds",
            max_offsets_per_trigger=500,
        )  # fmt: skip

    first = start()
    try:
        first.process_all_available()
    finally:
        first.stop()
    one = first.summary()
    # Part B is on the topic before the job reads it. (Read while a fast producer is still
    # writing, one partition can be ahead of another by linger.ms worth of events, tens of seconds
    # of event time here; the watermark is global, so the slower partition's events would be late.)
    part_b = publish_events(producer, topic, events_b, ledger=tmp_path / "b.jsonl")
    b_entries = read_ledger(tmp_path / "b.jsonl")
    entries = a_entries + b_entries
    expected = expected_windows(entries)
    # A heartbeat far ahead closes every window, as the quiet end of a real stream would.
    produce_all(producer, topic, [heartbeat_after(expected)])
    table_path = tmp_path / "revenue"
    second = start()
    try:
        second.process_all_available()
        written = DeltaRows(spark, table_path)
        wait_until(lambda: written() == len(expected), second.main, f"all {len(expected)} windows")
    finally:
        second.stop()
    assert part_a.produce.failed == [] and part_b.produce.failed == []

    rows = spark.read.format("delta").load(str(tmp_path / "revenue")).collect()
    got = windows_of(rows)
    assert got == expected
    assert all(r["window_end"] - r["window_start"] == timedelta(minutes=1) for r in rows)
    assert len(rows) == len(got)  # no duplicate (window, category) rows

    # Each run accounts for every record it read. Windows of part A still open after the first
    # run are written by the second: its `still_open` is negative by exactly that many sales.
    two = second.summary()
    assert (one.read, one.late, one.dead_lettered, one.aggregated + one.still_open) == (1500, 0, 0, 1500)
    kinds = Counter(e.kind for e in b_entries)
    assert (two.read, two.late, two.dead_lettered, two.heartbeats, two.aggregated + two.still_open) == (
        len(b_entries) + 1, kinds["late"], kinds["malformed"], 1, kinds["valid"]
    )  # fmt: skip
    assert one.reconciles and two.reconciles
    assert one.aggregated + two.aggregated == len(a_entries) + kinds["valid"]

    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    letters = read_topic(bootstrap, dlq)
    assert len(letters) == len(malformed)
    assert letter_reasons(letters) == malformed
