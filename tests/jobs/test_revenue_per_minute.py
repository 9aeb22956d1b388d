"""The revenue job on the real broker: exact windows and decimal sums, every malformed class in
the dead-letter topic with its reason, late rows accounted for, windows closed by heartbeats."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from pipelines.contracts import (
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    REVENUE_PER_MINUTE_SCHEMA,
)
from pipelines.jobs.revenue_per_minute import RevenueRunSummary, start_revenue_per_minute
from pipelines.kafka.producer import make_producer, produce_all
from tests.helpers import DeltaRows, dead_letter_headers, heartbeat, read_topic, sale, t, ts, wait_until

MALFORMED: list[tuple[tuple[bytes | None, bytes], str]] = [
    ((b"m1", b"{not json"), "invalid_json"),
    ((b"m2", b'{"sale_id":"m2","order_id":"o","category":"toys","currency":"EUR","timestamp":"'
      + ts(0, 5).encode() + b'"}'), "missing_field:amount"),
    ((b"m3", b'{"sale_id":"m3","order_id":"o","category":"toys","amount":"12.00","currency":"EUR",'
      b'"timestamp":"' + ts(0, 5).encode() + b'"}'), "bad_type:amount"),
    ((b"m4", b'{"sale_id":"m4","order_id":"o","category":"toys","amount":-3.00,"currency":"EUR",'
      b'"timestamp":"' + ts(0, 5).encode() + b'"}'), "negative_amount"),
    ((b"m5", b'{"sale_id":"m5","order_id":"o","category":"toys","amount":3.00,"currency":"EUR",'
      b'"timestamp":"27/11/2026 10:00"}'), "bad_timestamp"),
    ((b"m6", b""), "empty_value"),
    ((b"m7", b"\xc3\x28\xff"), "invalid_utf8"),
]  # fmt: skip


def test_windows_dead_letters_late_rows_and_heartbeat_close(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    dlq = new_topic(partitions=1)
    first = [
        sale("s1", "books", "10.10", ts(0, 0)),
        sale("s2", "books", "0.20", ts(0, 59, 999)),
        sale("s3", "toys", "0.00", ts(0, 30)),
        sale("s4", "books", "5.00", ts(1, 0)),
        sale("s5", "toys", "9999999999.99", ts(1, 10)),
        sale("s6", "toys", "9999999999.99", ts(1, 20)),
        sale("s7", "garden", "1.00", ts(2, 45)),  # advances the watermark to 10:02:15
    ] + [record for record, _ in MALFORMED]
    late = [sale("late1", "books", "100.00", ts(0, 10)), sale("late2", "books", "200.00", ts(1, 5))]
    quiet = [heartbeat(ts(4, 0))]  # input goes quiet; the heartbeat moves event time on

    # On the topic before the job reads: read while being written, one partition could be read
    # ahead of the other, and the global watermark would make the other's events late.
    produce_all(make_producer(bootstrap), topic, first)
    job = start_revenue_per_minute(
        spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=tmp_path / "checkpoint",
        delta_path=tmp_path / "revenue", dlq_topic=dlq, trigger="processing-time=0 seconds",
        window="1 minute", watermark="30 seconds",
    )  # fmt: skip
    try:
        job.process_all_available()
        # The watermark is now 10:02:15: both late sales are behind it and are dropped.
        produce_all(make_producer(bootstrap), topic, late)
        job.process_all_available()
        produce_all(make_producer(bootstrap), topic, quiet)
        job.process_all_available()
        # Spark closes the window in the no-data batch that follows the watermark's move.
        written = DeltaRows(spark, tmp_path / "revenue")
        wait_until(lambda: written() == 5, job.main, "the garden window")
    finally:
        job.stop()

    table = spark.read.format("delta").load(str(tmp_path / "revenue"))
    expected = spark.createDataFrame(
        [
            (t(0), t(1), "books", Decimal("10.30"), 2),
            (t(0), t(1), "toys", Decimal("0.00"), 1),
            (t(1), t(2), "books", Decimal("5.00"), 1),
            (t(1), t(2), "toys", Decimal("19999999999.98"), 2),
            # Closed only because the heartbeat advanced the watermark to 10:03:30 after the input
            # went quiet: without it this window would wait for the next sale.
            (t(2), t(3), "garden", Decimal("1.00"), 1),
        ],
        REVENUE_PER_MINUTE_SCHEMA,
    )
    assert_df_equality(table, expected, ignore_row_order=True, ignore_nullable=True)

    summary = job.summary()
    assert summary == RevenueRunSummary(
        read=len(first) + len(late) + len(quiet),
        aggregated=7,
        late=2,
        dead_lettered=len(MALFORMED),
        heartbeats=1,
        still_open=0,
        windows_written=5,
        spark_dropped_by_watermark=summary.spark_dropped_by_watermark,
    )
    assert summary.reconciles
    assert 1 <= summary.spark_dropped_by_watermark <= 2  # after partial aggregation: up to one per group

    letters = read_topic(bootstrap, dlq)
    assert len(letters) == len(MALFORMED)
    got = {}
    for letter in letters:
        headers = dead_letter_headers(letter)
        got[letter.key] = (letter.value, headers[HEADER_REASON], headers[HEADER_SOURCE_TOPIC])
        assert headers[HEADER_DETAIL]
        assert int(headers[HEADER_SOURCE_OFFSET]) >= 0 and headers[HEADER_SOURCE_PARTITION] in ("0", "1")
    assert got == {key: (value, reason, topic) for (key, value), reason in MALFORMED}
