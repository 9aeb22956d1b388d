"""Crash recovery: SIGKILL the running revenue job mid-stream (no clean stop), restart it on the
same checkpoint, and the Delta table still equals the ledger: nothing missing, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.producer import make_producer, produce_all
from tests.helpers import (
    DeltaRows,
    OwnSpark,
    expected_windows,
    heartbeat_after,
    wait_until,
    wait_while_running,
    windows_of,
)


def committed_batches(progress_file: Path) -> int:
    """Batches of the Delta query that read input, from the job's own progress file."""
    if not progress_file.is_file():
        return 0
    lines = [json.loads(line) for line in progress_file.read_text().splitlines() if line.strip()]
    return sum(1 for p in lines if p["query"] == "revenue_per_minute_delta" and p["input_rows"] > 0)


def test_sigkill_mid_stream_then_restart_equals_the_ledger(
    spark: SparkSession, own_spark: OwnSpark, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    publish_events(
        make_producer(bootstrap), topic, generate_events("sales", 6000, seed=41, malformed_fraction=0.02),
        ledger=tmp_path / "ledger.jsonl",
    )  # fmt: skip
    entries = read_ledger(tmp_path / "ledger.jsonl")
    expected = expected_windows(entries)
    produce_all(make_producer(bootstrap), topic, [heartbeat_after(expected)])

    checkpoint, table = tmp_path / "checkpoint", tmp_path / "revenue"
    progress, log = tmp_path / "progress.jsonl", tmp_path / "job.log"
    job = subprocess.Popen(
        own_spark.job(
            "revenue_per_minute.py",
            *("--bootstrap-servers", bootstrap, "--topic", topic, "--dlq-topic", dlq),
            *("--delta-path", str(table), "--checkpoint", str(checkpoint), "--progress-file", str(progress)),
            *("--trigger", "processing-time=0 seconds", "--max-offsets-per-trigger", "300"),
        ),
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
    )  # fmt: skip
    try:
        # Mid-stream: some batches are committed, most of the 6,001 records are not read yet.
        wait_while_running(lambda: committed_batches(progress) >= 3, job, "three committed batches", log, 180)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, with no chance to clean up
        job.wait(timeout=30)
    assert committed_batches(progress) < 20, "the job finished before it was killed; kill it earlier"
    written = DeltaRows(spark, table)
    assert written() < len(expected)

    # The restart replays the batch the kill interrupted with the offsets its write-ahead log holds
    # (what this test is about), then reads the rest with no bound per batch: nothing here depends
    # on how many batches that takes (the sales are on time and the heartbeat closes every window).
    restarted = start_revenue_per_minute(
        spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=checkpoint, delta_path=table,
        dlq_topic=dlq, trigger="processing-time=0 seconds",
    )  # fmt: skip
    try:
        restarted.process_all_available()
        wait_until(lambda: written() >= len(expected), restarted.main, f"all {len(expected)} windows")
    finally:
        restarted.stop()
    rows = spark.read.format("delta").load(str(table)).collect()
    got = windows_of(rows)
    assert len(rows) == len(expected)  # no (window, category) written twice
    assert got == expected
