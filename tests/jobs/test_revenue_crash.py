"""Crash recovery: SIGKILL the running revenue job mid-stream (no clean stop), restart it on the
same checkpoint, and the Delta table still equals the ledger: nothing missing, nothing twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.paths import PROJECT_ROOT
from tests.jobs.test_revenue_ledger import expected_windows
from tests.jobs.test_revenue_per_minute import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.slow]


def committed_batches(progress_file: Path) -> int:
    """Batches of the Delta query that read input, from the job's own progress file."""
    if not progress_file.is_file():
        return 0
    lines = [json.loads(line) for line in progress_file.read_text().splitlines() if line.strip()]
    return sum(1 for p in lines if p["query"] == "revenue_per_minute_delta" and p["input_rows"] > 0)


def test_sigkill_mid_stream_then_restart_equals_the_ledger(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    publish_events(
        make_producer(bootstrap), topic, generate_events("sales", 6000, seed=41, malformed_fraction=0.02),
        ledger=tmp_path / "ledger.jsonl",
    )  # fmt: skip
    entries = read_ledger(tmp_path / "ledger.jsonl")
    expected = expected_windows(entries)
    last = max(minute for minute, _ in expected)
    beat = (last + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    produce_all(
        make_producer(bootstrap),
        topic,
        [(b"heartbeat", f'{{"heartbeat":true,"timestamp":"{beat}"}}'.encode())],
    )

    checkpoint, table = tmp_path / "checkpoint", tmp_path / "revenue"
    progress = tmp_path / "progress.jsonl"
    job = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "jobs" / "revenue_per_minute.py"),
         "--bootstrap-servers", bootstrap, "--topic", topic, "--dlq-topic", dlq,
         "--delta-path", str(table), "--checkpoint", str(checkpoint), "--progress-file", str(progress),
         "--trigger", "processing-time=0 seconds", "--max-offsets-per-trigger", "300"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "job.log").open("w"), start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    try:
        # Mid-stream: some batches are committed, most of the 6,001 records are not read yet.
        while committed_batches(progress) < 3:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job committed no batches in time"
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.wait(timeout=0.5)  # paces the checks; returns at once if the job dies
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, with no chance to clean up
        job.wait(timeout=30)
    assert committed_batches(progress) < 20, "the job finished before it was killed; kill it earlier"
    partial = spark.read.format("delta").load(str(table)).count() if (table / "_delta_log").is_dir() else 0
    assert partial < len(expected)

    restarted = start_revenue_per_minute(
        spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=checkpoint, delta_path=table,
        dlq_topic=dlq, trigger="processing-time=0 seconds", max_offsets_per_trigger=300,
    )  # fmt: skip
    try:
        restarted.process_all_available()
        wait_until(
            lambda: spark.read.format("delta").load(str(table)).count() >= len(expected),
            restarted.main,
            f"all {len(expected)} windows",
        )
    finally:
        restarted.stop()
    rows = spark.read.format("delta").load(str(table)).collect()
    got = {
        (r["window_start"].replace(tzinfo=UTC), r["category"]): (r["revenue"], r["sales_count"]) for r in rows
    }
    assert len(rows) == len(expected)  # no (window, category) written twice
    assert got == expected
