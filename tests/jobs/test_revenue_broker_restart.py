"""The embedded broker stopped and started again under a running revenue job.

The job recovers by itself: while the broker is away, Spark's Kafka clients wait for it (a
metadata or offset request blocks up to `default.api.timeout.ms`, 60 s; a producer retries for
`delivery.timeout.ms`, 120 s), and the broker comes back on the same ports (the local broker keeps
them across restarts). Nothing is read twice or lost: the Delta table equals the generator's
ledger exactly, and every malformed event is dead-lettered once. (An outage longer than those
timeouts fails the query instead; the job then exits with one line and resumes exactly from its
checkpoint when started again, as tests/jobs/test_revenue_crash.py shows for a killed driver.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.contracts import dead_letter_topic
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.local.broker import LocalBroker
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


def test_the_revenue_job_rides_out_a_broker_restart_and_matches_the_ledger(
    spark: SparkSession, own_broker: Callable[..., LocalBroker], tmp_path: Path
) -> None:
    broker = own_broker()
    broker.start()
    bootstrap = broker.bootstrap_servers
    topic = "sales"
    create_topic(bootstrap, topic, partitions=3)
    create_topic(bootstrap, dead_letter_topic(topic), partitions=1)
    producer = make_producer(bootstrap)
    before = publish_events(
        producer, topic, generate_events("sales", 600, seed=61), ledger=tmp_path / "a.jsonl"
    )
    a_entries = read_ledger(tmp_path / "a.jsonl")

    job = start_revenue_per_minute(
        spark,
        bootstrap_servers=bootstrap,
        topic=topic,
        checkpoint=tmp_path / "checkpoint",
        delta_path=tmp_path / "revenue",
        trigger="processing-time=1 second",
        max_offsets_per_trigger=300,
    )
    try:
        job.process_all_available()
        assert broker.stop()
        # The job keeps triggering while the broker is away; the broker returns on its ports.
        assert broker.start()[0].bootstrap_servers == bootstrap
        events_b = generate_events(
            "sales",
            600,
            seed=62,
            late_fraction=0.04,
            malformed_fraction=0.05,
            start=max(event_time(e) for e in a_entries) + timedelta(seconds=1),
        )
        after = publish_events(producer, topic, events_b, ledger=tmp_path / "b.jsonl")
        entries = a_entries + read_ledger(tmp_path / "b.jsonl")
        expected = expected_windows(entries)
        produce_all(producer, topic, [heartbeat_after(expected)])
        job.process_all_available()
        written = DeltaRows(spark, tmp_path / "revenue")
        wait_until(lambda: written() == len(expected), job.main, f"all {len(expected)} windows")
        assert all(query.isActive for query in job.values())  # recovered by itself, never failed
    finally:
        job.stop()

    assert before.produce.failed == [] and after.produce.failed == []
    rows = spark.read.format("delta").load(str(tmp_path / "revenue")).collect()
    assert windows_of(rows) == expected
    assert len(rows) == len(expected)
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    letters = read_topic(bootstrap, dead_letter_topic(topic))
    assert letter_reasons(letters) == malformed
    assert len(letters) == len(malformed)
