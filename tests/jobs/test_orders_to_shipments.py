"""The orders -> shipments job on the real broker, once per trigger: exactly one shipment per valid
order (key, value, headers and partition as the order's), every malformed order in the dead-letter
topic with its reason; then the at-least-once kafka sink shown honestly (a lost commit replays
exactly the last batch; a SIGKILL in real-time mode replays everything since the last checkpoint)
and the dedupe consumer that repairs it. Expected values come from the published records, in
plain Python."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import SparkSession

from pipelines.contracts import HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION
from pipelines.errors import PipelinesError
from pipelines.jobs.orders_to_shipments import ShipmentsRunSummary, run_summary, start_orders_to_shipments
from pipelines.kafka.dedupe import ShipmentDeduplicator
from pipelines.queries import QueryGroup
from tests.helpers import (
    JOBS_DIR,
    OwnSpark,
    Topics,
    assert_dead_letters,
    assert_pipeline_output,
    assert_shipped_exactly_once,
    dead_letter_headers,
    expected_shipments,
    make_topics,
    publish_orders,
    read_topic,
    run_to_end,
    shipment_value,
    topic_size,
    wait_until,
    wait_while_running,
)

JOB = "orders_to_shipments.py"
WAIT_S = 90
"""How long a running query gets for what a test waits for."""


publish = functools.partial(publish_orders, late_fraction=0.02)
"""`publish_orders`, 2% of the generated orders late."""


def start(
    spark: SparkSession, bootstrap: str, topics: Topics, checkpoint: Path, trigger: str, **options: Any
) -> QueryGroup:
    """The job's queries from `topics.source` to `topics.sink` and `topics.dlq`."""
    source, sink, dlq = topics
    return start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=source, sink_topic=sink, checkpoint=checkpoint,
        dlq_topic=dlq, trigger=trigger, **options,
    )  # fmt: skip


@contextmanager
def running(
    spark: SparkSession, bootstrap: str, topics: Topics, checkpoint: Path, trigger: str, **options: Any
) -> Iterator[QueryGroup]:
    """The job's queries, running until the end of the block."""
    queries = start(spark, bootstrap, topics, checkpoint, trigger, **options)
    try:
        yield queries
    finally:
        queries.stop()


def run_available_now(
    spark: SparkSession,
    bootstrap: str,
    topics: Topics,
    checkpoint: Path,
    max_offsets: int | None,
    guarantee: str | None = None,
) -> ShipmentsRunSummary:
    queries = start(
        spark,
        bootstrap,
        topics,
        checkpoint,
        "available-now",
        max_offsets_per_trigger=max_offsets,
        guarantee=guarantee,
    )
    run_to_end(queries)
    return run_summary(queries)


def test_available_now_ships_each_valid_order_once_and_dead_letters_the_rest(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = make_topics(bootstrap, new_topic, partitions=3)
    ledger = tmp_path / "ledger.jsonl"
    sent = publish(bootstrap, topics.source, ledger, 400, seed=61, malformed_fraction=0.05, headers=3)
    summary = run_available_now(spark, bootstrap, topics, tmp_path / "checkpoint", max_offsets=150)

    bad = sum(1 for s in sent if s.reason is not None)
    assert bad == 20
    assert summary == ShipmentsRunSummary(read=len(sent), shipped=len(sent) - bad, dead_lettered=bad)
    assert_pipeline_output(bootstrap, topics, sent)


def test_processing_time_ships_each_valid_order_once(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=2)
    # On the topic before the query reads it, so every partition is read the same way.
    sent = publish(
        bootstrap, src, tmp_path / "ledger.jsonl", 200, seed=62, malformed_fraction=0.05, headers=2
    )
    checkpoint = tmp_path / "checkpoint"
    with running(
        spark, bootstrap, topics, checkpoint, "processing-time=0s", max_offsets_per_trigger=80
    ) as queries:
        expected = len(expected_shipments(sent))
        wait_until(lambda: topic_size(bootstrap, out) >= expected, queries, f"{expected} shipments", WAIT_S)
        wait_until(lambda: topic_size(bootstrap, dlq) >= 10, queries, "10 dead letters", WAIT_S)
        for q in queries.values():
            q.processAllAvailable()  # every batch that read data has been committed
    assert_pipeline_output(bootstrap, topics, sent)


def test_real_time_ships_each_order_as_it_arrives_across_checkpoints(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    # Two source partitions: real-time mode keeps one task per partition running (one query: the
    # shipments and the dead letters), and the test session's local[2] has exactly two task slots.
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=2)
    first = publish(bootstrap, src, tmp_path / "one.jsonl", 100, seed=63, malformed_fraction=0.05, headers=2)
    checkpoint = tmp_path / "checkpoint"
    with running(spark, bootstrap, topics, checkpoint, "real-time=5s") as queries:
        shipments = len(expected_shipments(first))
        wait_until(lambda: topic_size(bootstrap, out) >= shipments, queries, "the first shipments", WAIT_S)
        # A checkpoint (the end of a real-time batch) passes while the query runs ...
        committed = checkpoint / "shipments" / "commits" / "0"
        wait_until(committed.is_file, queries, "a checkpoint", WAIT_S)
        # ... and orders sent now are read by the long-running task as they arrive.
        second = publish(bootstrap, src, tmp_path / "two.jsonl", 50, seed=64)
        acknowledged_at = time.monotonic()
        expected = len(expected_shipments(first + second))
        wait_until(lambda: topic_size(bootstrap, out) >= expected, queries, f"{expected} shipments", WAIT_S)
        took = time.monotonic() - acknowledged_at
        print(f"real-time mode: 50 more orders all shipped within {took:.2f} s of their acknowledgement")
        wait_until(lambda: topic_size(bootstrap, dlq) >= 5, queries, "5 dead letters", WAIT_S)
    assert_pipeline_output(bootstrap, topics, first + second)


def test_real_time_refuses_to_start_without_a_slot_per_partition(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    # Spark itself would start, and never read the third partition (no task slot for it): no error,
    # just missing shipments. The job says so instead.
    src = new_topic(partitions=3)
    with pytest.raises(PipelinesError, match=r"needs 3 task slots .* the session has 2"):
        start_orders_to_shipments(
            spark, bootstrap_servers=bootstrap, source_topic=src, sink_topic="unused",
            checkpoint=tmp_path / "checkpoint", trigger="real-time",
        )  # fmt: skip
    assert not [q for q in spark.streams.active if (q.name or "").startswith("orders_to_shipments")]


def last_batch_range(query_checkpoint: Path) -> tuple[int, dict[int, tuple[int, int]]]:
    """The last batch of a query and the offsets it read: partition -> [start, end)."""
    batches = sorted(int(p.name) for p in (query_checkpoint / "offsets").iterdir() if p.name.isdigit())

    def ends(batch: int) -> dict[int, int]:
        source = json.loads((query_checkpoint / "offsets" / str(batch)).read_text().splitlines()[-1])
        (offsets,) = source.values()
        return {int(p): int(o) for p, o in offsets.items()}

    last = batches[-1]
    starts = ends(last - 1) if last > 0 else dict.fromkeys(ends(last), 0)
    return last, {p: (starts[p], end) for p, end in ends(last).items()}


def job_command(
    own_spark: OwnSpark, bootstrap: str, topics: Topics, checkpoint: Path, *args: str
) -> list[str]:
    """The job on `topics`, as a user starts it: `python jobs/orders_to_shipments.py ...`."""
    source, sink, dlq = topics
    return own_spark.job(
        JOB, "--bootstrap-servers", bootstrap, "--source-topic", source, "--sink-topic", sink,
        "--dlq-topic", dlq, "--checkpoint", str(checkpoint), *args,
    )  # fmt: skip


JOB_ENV = {**os.environ, "PIPELINES_SPARK__MASTER": "local[2]"}
"""The job's environment: the test session's two task slots, not one per core."""


def dedupe_all(bootstrap: str, topic: str, group: str, expected_records: int) -> tuple[Counter[bytes], int]:
    """Read the whole topic with the dedupe consumer: (shipment values yielded, duplicates skipped)."""
    with ShipmentDeduplicator(bootstrap, topic, group) as dedupe:
        values = Counter(s.value for s in dedupe.shipments(max_records=expected_records, idle_timeout_s=30))
        assert dedupe.stats.read == expected_records
        return values, dedupe.stats.duplicates


def test_at_least_once_writes_a_batch_whose_commit_was_lost_again_and_dedupe_repairs_it(
    spark: SparkSession,
    own_spark: OwnSpark,
    bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    tmp_path: Path,
) -> None:
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=3)
    sent = publish(bootstrap, src, tmp_path / "ledger.jsonl", 300, seed=65, malformed_fraction=0.03)
    checkpoint = tmp_path / "checkpoint"
    # The first run is the job itself, as a user starts it: it ends with its JSON summary line.
    job = subprocess.run(
        job_command(
            own_spark, bootstrap, topics, checkpoint, "--max-offsets-per-trigger", "120",
            "--guarantee", "at-least-once",
        ),
        capture_output=True, text=True, timeout=180, env=JOB_ENV,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    bad = sum(1 for s in sent if s.reason is not None)
    assert json.loads(job.stdout.strip().splitlines()[-1]) == {
        "job": "orders_to_shipments", "checkpoint": str(checkpoint),
        "read": len(sent), "shipped": len(sent) - bad, "dead_lettered": bad,
    }  # fmt: skip
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)

    # A crash after the sink wrote the last batch and before Spark committed it leaves exactly
    # this: the batch's offsets in offsets/N and no commits/N. Removing the commit reproduces it.
    shipments_checkpoint = checkpoint / "shipments"
    last, ranges = last_batch_range(shipments_checkpoint)
    assert last >= 2  # 300 records at 120 per batch: three batches
    for name in (str(last), f".{last}.crc"):
        (shipments_checkpoint / "commits" / name).unlink(missing_ok=True)
    summary = run_available_now(
        spark, bootstrap, topics, checkpoint, max_offsets=120, guarantee="at-least-once"
    )

    replayed = [s for s in sent if ranges[s.partition][0] <= s.offset < ranges[s.partition][1]]
    twice = {shipment_value(s.value or b"") for s in replayed if s.reason is None}
    assert summary.read == len(replayed)  # the restart re-ran exactly the uncommitted batch
    records = read_topic(bootstrap, out)
    counts = Counter(r.value for r in records)
    assert twice, "the replayed batch held no valid order: nothing would be written twice"
    assert counts == Counter({v: 2 if v in twice else 1 for _, v in expected_shipments(sent)})
    print(f"lost commit of batch {last}: {len(twice)} of {len(counts)} shipments written twice")
    # The dead letters are rows of the same query: the replayed batch's are written again too.
    assert_dead_letters(bootstrap, dlq, sent, src)
    letters = Counter(
        (int(h[HEADER_SOURCE_PARTITION]), int(h[HEADER_SOURCE_OFFSET]))
        for h in map(dead_letter_headers, read_topic(bootstrap, dlq))
    )
    assert letters == Counter(
        {(s.partition, s.offset): 2 if s in replayed else 1 for s in sent if s.reason is not None}
    )

    # The remedy: each shipment once, whatever the sink wrote twice.
    values, duplicates = dedupe_all(bootstrap, out, group_id, len(records))
    assert values == Counter({v: 1 for _, v in expected_shipments(sent)})
    assert duplicates == len(twice)


def test_sigkill_or_stop_in_real_time_mode_writes_everything_since_the_checkpoint_again(
    spark: SparkSession,
    own_spark: OwnSpark,
    bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    tmp_path: Path,
) -> None:
    src, out, _ = topics = make_topics(bootstrap, new_topic, partitions=1)
    sent = publish(
        bootstrap, src, tmp_path / "ledger.jsonl", 120, seed=66, malformed_fraction=0.05, headers=1
    )
    expected = expected_shipments(sent)
    checkpoint, log = tmp_path / "checkpoint", tmp_path / "job.log"
    # The default real-time interval (5 minutes) is the time between checkpoints: every shipment is
    # written within seconds, none is committed for minutes.
    job = subprocess.Popen(
        job_command(own_spark, bootstrap, topics, checkpoint, "--trigger", "real-time"),
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True, env=JOB_ENV,
    )  # fmt: skip
    try:
        wait_while_running(
            lambda: topic_size(bootstrap, out) >= len(expected), job, "every shipment written", log, 120
        )
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, with no chance to commit
        job.wait(timeout=30)
    commits = checkpoint / "shipments" / "commits"
    assert not (commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir()))  # nothing committed
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)

    # Restarted on the same checkpoint: every shipment is written again. Then stopped cleanly, still
    # before its first checkpoint: a stop does not checkpoint a real-time batch either.
    with running(spark, bootstrap, topics, checkpoint, "real-time") as restarted:
        wait_until(
            lambda: topic_size(bootstrap, out) >= 2 * len(expected),
            restarted,
            "the replayed shipments",
            WAIT_S,
        )
    assert Counter((r.key, r.value) for r in read_topic(bootstrap, out)) == Counter(
        dict.fromkeys(expected, 2)
    )
    assert not (commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir()))
    print(f"SIGKILL in real-time mode: all {len(expected)} shipments written twice")

    # So the next run, whatever its trigger, writes them a third time (and checkpoints at last).
    run_available_now(spark, bootstrap, topics, checkpoint, max_offsets=None)
    records = read_topic(bootstrap, out)
    assert Counter((r.key, r.value) for r in records) == Counter(dict.fromkeys(expected, 3))
    assert (commits / "0").is_file()

    values, duplicates = dedupe_all(bootstrap, out, group_id, len(records))
    assert values == Counter({v: 1 for _, v in expected})
    assert duplicates == 2 * len(expected)


def test_help_lists_the_contract_arguments() -> None:
    job = [sys.executable, str(JOBS_DIR / JOB)]
    result = subprocess.run([*job, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for argument in ("--bootstrap-servers", "--source-topic", "--sink-topic", "--checkpoint", "--trigger",
                     "--dlq-topic", "available-now", "processing-time=0s", "real-time"):  # fmt: skip
        assert argument in result.stdout
    bad = subprocess.run(
        [*job, "--bootstrap-servers", "x:1", "--checkpoint", "c", "--trigger", "sometimes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "real-time" in bad.stderr


def test_exactly_once_skips_a_batch_whose_commit_was_lost(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The same lost commit as above, with the transactional sink: the replayed batch finds its
    batch id already written (the marker moved in the same transaction) and writes nothing."""
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=3)
    sent = publish(
        bootstrap, src, tmp_path / "ledger.jsonl", 300, seed=66, malformed_fraction=0.03, headers=2
    )
    checkpoint = tmp_path / "checkpoint"
    first = run_available_now(spark, bootstrap, topics, checkpoint, max_offsets=120, guarantee="exactly-once")
    bad = sum(1 for s in sent if s.reason is not None)
    assert first == ShipmentsRunSummary(read=len(sent), shipped=len(sent) - bad, dead_lettered=bad)
    shipments_checkpoint = checkpoint / "shipments"
    last, _ranges = last_batch_range(shipments_checkpoint)
    assert last >= 2
    for name in (str(last), f".{last}.crc"):
        (shipments_checkpoint / "commits" / name).unlink(missing_ok=True)
    again = run_available_now(spark, bootstrap, topics, checkpoint, max_offsets=120, guarantee="exactly-once")
    assert again.shipped == 0  # the replayed batch was skipped: its transaction had committed
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)
    assert_dead_letters(bootstrap, dlq, sent, src)


def test_exactly_once_survives_a_task_that_dies_mid_partition(
    spark: SparkSession,
    bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: the first attempt of partition 1's task in batch 1 produces 100 shipments
    inside its transaction, flushes them to the broker and its Python worker dies without
    aborting. Spark retries the task (the test session allows one retry); the retry's
    `init_transactions` aborts the dead attempt's transaction and writes the partition again. A
    read_committed reader sees every shipment once; a read_uncommitted one also sees exactly the
    100 aborted ones, which proves the fault fired mid-partition."""
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=3)
    sent = publish(bootstrap, src, tmp_path / "ledger.jsonl", 3_000, seed=68, malformed_fraction=0.01)
    monkeypatch.setenv("PIPELINES_FAULT_FAIL_TASK_ONCE", "batch=1,partition=1,after_rows=100")
    summary = run_available_now(
        spark, bootstrap, topics, tmp_path / "checkpoint", max_offsets=1_500, guarantee="exactly-once"
    )
    bad = sum(1 for s in sent if s.reason is not None)
    assert summary == ShipmentsRunSummary(read=len(sent), shipped=len(sent) - bad, dead_lettered=bad)
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)
    assert len(read_topic(bootstrap, out, isolation="read_uncommitted")) == len(sent) - bad + 100
    assert_dead_letters(bootstrap, dlq, sent, src)


def uncommitted_batch(query_checkpoint: Path) -> int | None:
    """The micro-batch Spark has planned (`offsets/N`) and not committed (no `commits/N`), if any.
    Spark writes both logs by atomic rename, so a file named by its batch id is whole."""
    planned = [int(p.name) for p in (query_checkpoint / "offsets").glob("[0-9]*") if p.name.isdigit()]
    if not planned:
        return None
    latest = max(planned)
    return None if (query_checkpoint / "commits" / str(latest)).exists() else latest


class MidWrite:
    """The kill point of the SIGKILL tests: true once the sink holds `threshold` records and the
    running micro-batch has written records to it that its checkpoint has not committed yet.

    A batch first seen uncommitted notes the sink's size; when the sink has grown past it and the
    same batch is still uncommitted, those records are that batch's (micro-batches of one query run
    one after another), so a restart replays written records. A bare size threshold cannot tell
    this from a kill just after the batch's commit, which leaves nothing to replay."""

    def __init__(self, bootstrap: str, topic: str, query_checkpoint: Path, threshold: int) -> None:
        self.topic, self.checkpoint, self.threshold = topic, query_checkpoint, threshold
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mid-write"})
        self.partitions = sorted(self.consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        self.size_when_seen: dict[int, int] = {}

    def size(self) -> int:
        """The sink's log end, uncommitted records and transaction markers included."""
        return sum(
            self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in self.partitions
        )

    def __call__(self) -> bool:
        batch = uncommitted_batch(self.checkpoint)
        if batch is None:
            return False
        size = self.size()
        if size < self.threshold:
            return False
        first_seen = self.size_when_seen.setdefault(batch, size)
        return size > first_seen and uncommitted_batch(self.checkpoint) == batch

    def close(self) -> None:
        self.consumer.close()


@pytest.mark.parametrize(("guarantee", "kills"), [("exactly-once", 3), ("at-least-once", 3)])
def test_sigkilled_driver_restarted_three_times_ships_each_order_once_only_with_transactions(
    own_spark: OwnSpark,
    bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    guarantee: str,
    kills: int,
) -> None:
    """20,000 orders, at most 1,500 per batch; the job's driver is SIGKILLed three times while it
    writes (past seeded-random amounts of output, seen on the sink's log end, uncommitted included,
    in a batch that has written and not committed: `MidWrite`), restarted each time, then run to
    the end. Exactly-once: a read_committed reader sees every
    shipment once with its key, headers and partition. At-least-once: every shipment, and the
    duplicates the replay wrote. At-least-once stops killing as soon as a restart has written
    duplicates (each run of the job is a JVM start, the test's largest cost)."""
    src, out, dlq = topics = make_topics(bootstrap, new_topic, partitions=3)
    sent = publish(
        bootstrap, src, tmp_path / "ledger.jsonl", 20_000, seed=67, malformed_fraction=0.01, headers=3
    )
    checkpoint = tmp_path / "checkpoint"
    rng = random.Random(67)
    run = [*job_command(own_spark, bootstrap, topics, checkpoint), "--guarantee", guarantee]
    run += ["--max-offsets-per-trigger", "1500"]
    for kill in range(kills):
        threshold = topic_size(bootstrap, out) + rng.randint(1_000, 4_000)
        log = tmp_path / f"run-{kill}.log"
        with log.open("w") as stderr:
            job = subprocess.Popen(
                [*run, "--trigger", "processing-time=0s"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                env=JOB_ENV,
            )

        mid_write = MidWrite(bootstrap, out, checkpoint / "shipments", threshold)
        try:
            what = f"{threshold} records on the sink, then a batch caught mid-write"
            wait_while_running(mid_write, job, what, log, 180, pace_s=0.01)
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, mid-write
            mid_write.close()
            job.wait(timeout=30)
        if guarantee == "at-least-once" and kill >= 1:
            shipped = [(r.key, r.value) for r in read_topic(bootstrap, out)]
            if len(shipped) > len(set(shipped)):
                break  # a restart replayed a batch the killed run had written: duplicates shown
    assert topic_size(bootstrap, out) < 20_000, "the job finished before the last kill"
    final = subprocess.run(
        [*run, "--trigger", "available-now"], capture_output=True, text=True, timeout=300, env=JOB_ENV
    )
    assert final.returncode == 0, final.stderr[-3000:]

    records = read_topic(bootstrap, out)
    if guarantee == "exactly-once":
        assert_shipped_exactly_once(records, sent)
    else:
        expected = expected_shipments(sent)
        counts = Counter((r.key, r.value) for r in records)
        assert set(counts) == set(expected)  # every shipment, nothing else
        duplicates = sum(counts.values()) - len(expected)
        assert duplicates > 0, "a kill mid-write left no duplicate: it missed the writes"
        print(f"at-least-once: {duplicates} duplicate shipments after {kills} kill(s)")
    assert_dead_letters(bootstrap, dlq, sent, src)
    if guarantee == "exactly-once":
        # The dead letters are rows of the same transactions: each malformed order once, too.
        assert len(read_topic(bootstrap, dlq)) == sum(1 for s in sent if s.reason is not None) == 200
