"""The orders -> shipments job on the real broker, once per trigger: exactly one shipment per valid
order (key, value, headers and partition as the order's), every malformed order in the dead-letter
topic with its reason; then the at-least-once kafka sink shown honestly (a lost commit replays
exactly the last batch; a SIGKILL in real-time mode replays everything since the last checkpoint)
and the dedupe consumer that repairs it. Expected values come from the published records, in
plain Python."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Message
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.errors import PipelinesError
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.orders_to_shipments import ShipmentsRunSummary, run_summary, start_orders_to_shipments
from pipelines.kafka.admin import end_offsets, read_range
from pipelines.kafka.dedupe import ShipmentDeduplicator
from pipelines.kafka.producer import make_producer
from pipelines.paths import PROJECT_ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.spark]

JOB = PROJECT_ROOT / "jobs" / "orders_to_shipments.py"
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Sent:
    """One order as the broker acknowledged it."""

    key: bytes
    value: bytes
    partition: int
    offset: int
    headers: Headers
    reason: str | None  # the reason code of a malformed order; None for a valid (or late) one


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers


def publish_orders(
    bootstrap: str, topic: str, ledger: Path, count: int, *, seed: int, malformed: float = 0.0,
    headers: int = 0,
) -> list[Sent]:  # fmt: skip
    """`count` generated orders (ledger-backed), then `headers` hand-built orders carrying headers."""
    events = generate_events("orders", count, seed=seed, late_fraction=0.02, malformed_fraction=malformed)
    report = publish_events(make_producer(bootstrap), topic, events, ledger=ledger)
    assert report.produce.acknowledged == count
    sent = [
        Sent(e.key or b"", e.value, e.partition or 0, e.offset or 0, [],
             e.reason if e.kind == "malformed" else None)
        for e in read_ledger(ledger)
    ]  # fmt: skip
    producer = make_producer(bootstrap)
    delivered: list[Sent] = []
    for n in range(headers):
        key, doc_headers = (
            f"order-h-{seed}-{n}".encode(),
            [("trace-id", f"t-{n}".encode()), ("origin", b"web")],
        )
        value = json.dumps(
            {"order_id": key.decode(), "customer_id": f"cust-h{n}", "amount": 10.0 + n, "currency": "EUR",
             "timestamp": f"2026-11-27T11:00:0{n % 10}.{n:03d}Z"}
        ).encode()  # fmt: skip

        def on_delivery(
            err: object,
            msg: Message,
            key: bytes = key,
            value: bytes = value,
            sent_headers: Headers = doc_headers,
        ) -> None:
            assert err is None, err
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            delivered.append(Sent(key, value, partition, offset, sent_headers, None))

        kafka_headers: list[tuple[str, str | bytes | None]] = [*doc_headers]
        producer.produce(topic, key=key, value=value, headers=kafka_headers, on_delivery=on_delivery)
    producer.flush(30)
    assert len(delivered) == headers
    return sent + delivered


def shipment_value(order_value: bytes) -> bytes:
    """The contract's shipment for an order, built here from the order's JSON."""
    doc = json.loads(order_value)
    return json.dumps(
        {"shipment_id": "ship-" + doc["order_id"], "order_id": doc["order_id"],
         "customer_id": doc["customer_id"], "status": "pending", "created_at": doc["timestamp"]},
        separators=(",", ":"), ensure_ascii=False,
    ).encode()  # fmt: skip


def expected_shipments(sent: list[Sent]) -> dict[tuple[bytes, bytes], tuple[int, Headers]]:
    """(key, value) of every valid order's shipment -> (partition, headers) it must have."""
    return {(s.key, shipment_value(s.value)): (s.partition, s.headers) for s in sent if s.reason is None}


def record_headers(msg: Message) -> Headers:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every record of `topic` up to its end offsets at the time of the call."""
    messages = read_range(bootstrap, topic, {}, end_offsets(bootstrap, topic), timeout_s=timeout_s)
    return [Record(m.partition(), m.offset(), m.key(), m.value() or b"", record_headers(m)) for m in messages]


def topic_size(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic).values())


def wait_for(
    condition: Callable[[], bool], queries: dict[str, StreamingQuery], what: str, timeout_s: float = 90
) -> None:
    """Wait for `condition` with a deadline, pacing checks on the queries' own termination wait."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        for q in queries.values():
            if q.awaitTermination(0.2):  # type: ignore[arg-type]  # seconds; a float works
                raise AssertionError(f"query {q.name} stopped before {what}: {q.exception()}")


def assert_shipped_exactly_once(records: list[Record], sent: list[Sent]) -> None:
    expected = expected_shipments(sent)
    counts = Counter((r.key, r.value) for r in records)
    assert counts == Counter(dict.fromkeys(expected, 1))  # every shipment once, nothing else
    # Same key, same partition (Spark's sink and our producers both hash with murmur2): an order's
    # records stay in order. Headers are the order's, untouched.
    assert {(r.key, r.value): (r.partition, r.headers) for r in records} == expected


def assert_dead_letters(bootstrap: str, dlq: str, sent: list[Sent], source_topic: str) -> None:
    got = {}
    for r in read_topic(bootstrap, dlq):
        headers = {k: v.decode() for k, v in r.headers}
        assert headers["source.topic"] == source_topic and headers["error.detail"]
        got[r.key] = (
            r.value,
            headers["error.reason"],
            int(headers["source.partition"]),
            int(headers["source.offset"]),
        )
    assert got == {s.key: (s.value, s.reason, s.partition, s.offset) for s in sent if s.reason is not None}


def run_available_now(
    spark: SparkSession,
    bootstrap: str,
    src: str,
    out: str,
    dlq: str,
    checkpoint: Path,
    max_offsets: int | None,
) -> ShipmentsRunSummary:
    queries = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=src, sink_topic=out, checkpoint=checkpoint,
        dlq_topic=dlq, trigger="available-now", max_offsets_per_trigger=max_offsets,
    )  # fmt: skip
    try:
        for q in queries.values():
            q.awaitTermination()
    finally:
        queries.stop()
    return run_summary(queries)


def test_available_now_ships_each_valid_order_once_and_dead_letters_the_rest(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    src, out, dlq = new_topic(partitions=3), new_topic(partitions=3), new_topic(partitions=1)
    sent = publish_orders(bootstrap, src, tmp_path / "ledger.jsonl", 400, seed=61, malformed=0.05, headers=3)
    summary = run_available_now(spark, bootstrap, src, out, dlq, tmp_path / "checkpoint", max_offsets=150)

    bad = sum(1 for s in sent if s.reason is not None)
    assert bad == 20
    assert summary == ShipmentsRunSummary(read=len(sent), shipped=len(sent) - bad, dead_lettered=bad)
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)
    assert_dead_letters(bootstrap, dlq, sent, src)


def test_processing_time_ships_each_valid_order_once(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    src, out, dlq = new_topic(partitions=2), new_topic(partitions=2), new_topic(partitions=1)
    # On the topic before the query reads it, so every partition is read the same way.
    sent = publish_orders(bootstrap, src, tmp_path / "ledger.jsonl", 200, seed=62, malformed=0.05, headers=2)
    queries = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=src, sink_topic=out,
        checkpoint=tmp_path / "checkpoint", dlq_topic=dlq, trigger="processing-time=0s",
        max_offsets_per_trigger=80,
    )  # fmt: skip
    try:
        expected = len(expected_shipments(sent))
        wait_for(lambda: topic_size(bootstrap, out) >= expected, queries, f"{expected} shipments")
        wait_for(lambda: topic_size(bootstrap, dlq) >= 10, queries, "10 dead letters")
        for q in queries.values():
            q.processAllAvailable()  # every batch that read data has been committed
    finally:
        queries.stop()
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)
    assert_dead_letters(bootstrap, dlq, sent, src)


def test_real_time_ships_each_order_as_it_arrives_across_checkpoints(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    # One source partition: real-time mode keeps one task per partition running in each of the two
    # queries, and the test session's local[2] has exactly two task slots.
    src, out, dlq = new_topic(partitions=1), new_topic(partitions=1), new_topic(partitions=1)
    first = publish_orders(bootstrap, src, tmp_path / "one.jsonl", 100, seed=63, malformed=0.05, headers=2)
    checkpoint = tmp_path / "checkpoint"
    queries = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=src, sink_topic=out, checkpoint=checkpoint,
        dlq_topic=dlq, trigger="real-time=5s",
    )  # fmt: skip
    try:
        shipments = len(expected_shipments(first))
        wait_for(lambda: topic_size(bootstrap, out) >= shipments, queries, "the first shipments")
        # A checkpoint (the end of a real-time batch) passes while the query runs ...
        wait_for(lambda: (checkpoint / "shipments" / "commits" / "0").is_file(), queries, "a checkpoint")
        # ... and orders sent now are read by the long-running task as they arrive.
        second = publish_orders(bootstrap, src, tmp_path / "two.jsonl", 50, seed=64)
        acknowledged_at = time.monotonic()
        expected = len(expected_shipments(first + second))
        wait_for(lambda: topic_size(bootstrap, out) >= expected, queries, f"{expected} shipments")
        took = time.monotonic() - acknowledged_at
        print(f"real-time mode: 50 more orders all shipped within {took:.2f} s of their acknowledgement")
        wait_for(lambda: topic_size(bootstrap, dlq) >= 5, queries, "5 dead letters")
    finally:
        queries.stop()
    assert_shipped_exactly_once(read_topic(bootstrap, out), first + second)
    assert_dead_letters(bootstrap, dlq, first + second, src)


def test_real_time_refuses_to_start_without_a_slot_per_partition(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    # Spark itself would start, and never read the third partition (no task slot for it): no error,
    # just missing shipments. The job says so instead.
    src = new_topic(partitions=3)
    with pytest.raises(PipelinesError, match=r"needs 6 task slots .* the session has 2"):
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


def dedupe_all(bootstrap: str, topic: str, group: str, expected_records: int) -> tuple[Counter[bytes], int]:
    """Read the whole topic with the dedupe consumer: (shipment values yielded, duplicates skipped)."""
    with ShipmentDeduplicator(bootstrap, topic, group) as dedupe:
        values = Counter(s.value for s in dedupe.shipments(max_records=expected_records, idle_timeout_s=30))
        assert dedupe.stats.read == expected_records
        return values, dedupe.stats.duplicates


def test_a_batch_written_but_not_committed_is_written_again_and_dedupe_repairs_it(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    src, out, dlq = new_topic(partitions=3), new_topic(partitions=3), new_topic(partitions=1)
    sent = publish_orders(bootstrap, src, tmp_path / "ledger.jsonl", 300, seed=65, malformed=0.03)
    checkpoint = tmp_path / "checkpoint"
    # The first run is the job itself, as a user starts it: it ends with its JSON summary line.
    job = subprocess.run(
        [sys.executable, str(JOB), "--bootstrap-servers", bootstrap, "--source-topic", src,
         "--sink-topic", out, "--dlq-topic", dlq, "--checkpoint", str(checkpoint),
         "--max-offsets-per-trigger", "120"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "PIPELINES_SPARK__MASTER": "local[2]"},
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
    summary = run_available_now(spark, bootstrap, src, out, dlq, checkpoint, max_offsets=120)

    replayed = [s for s in sent if ranges[s.partition][0] <= s.offset < ranges[s.partition][1]]
    twice = {shipment_value(s.value) for s in replayed if s.reason is None}
    assert summary.read == len(replayed)  # the restart re-ran exactly the uncommitted batch
    records = read_topic(bootstrap, out)
    counts = Counter(r.value for r in records)
    assert twice, "the replayed batch held no valid order: nothing would be written twice"
    assert counts == Counter({v: 2 if v in twice else 1 for _, v in expected_shipments(sent)})
    print(f"lost commit of batch {last}: {len(twice)} of {len(counts)} shipments written twice")
    # The dead-letter query committed its own batches: its topic is untouched.
    assert_dead_letters(bootstrap, dlq, sent, src)

    # The remedy: each shipment once, whatever the sink wrote twice.
    values, duplicates = dedupe_all(bootstrap, out, group_id, len(records))
    assert values == Counter({v: 1 for _, v in expected_shipments(sent)})
    assert duplicates == len(twice)


@pytest.mark.slow
def test_sigkill_or_stop_in_real_time_mode_writes_everything_since_the_checkpoint_again(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    src, out, dlq = new_topic(partitions=1), new_topic(partitions=1), new_topic(partitions=1)
    sent = publish_orders(bootstrap, src, tmp_path / "ledger.jsonl", 120, seed=66, malformed=0.05, headers=1)
    expected = expected_shipments(sent)
    checkpoint, log = tmp_path / "checkpoint", tmp_path / "job.log"
    # The default real-time interval (5 minutes) is the time between checkpoints: every shipment is
    # written within seconds, none is committed for minutes.
    job = subprocess.Popen(
        [sys.executable, str(JOB), "--bootstrap-servers", bootstrap, "--source-topic", src,
         "--sink-topic", out, "--dlq-topic", dlq, "--checkpoint", str(checkpoint), "--trigger", "real-time"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
        env={**os.environ, "PIPELINES_SPARK__MASTER": "local[2]"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while topic_size(bootstrap, out) < len(expected):
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the job did not write every shipment in time"
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.wait(timeout=0.5)  # paces the checks; returns at once if the job dies
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, with no chance to commit
        job.wait(timeout=30)
    commits = checkpoint / "shipments" / "commits"
    assert not (commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir()))  # nothing committed
    assert_shipped_exactly_once(read_topic(bootstrap, out), sent)

    # Restarted on the same checkpoint: every shipment is written again. Then stopped cleanly, still
    # before its first checkpoint: a stop does not checkpoint a real-time batch either.
    restarted = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=src, sink_topic=out, checkpoint=checkpoint,
        dlq_topic=dlq, trigger="real-time",
    )  # fmt: skip
    try:
        wait_for(lambda: topic_size(bootstrap, out) >= 2 * len(expected), restarted, "the replayed shipments")
    finally:
        restarted.stop()
    assert Counter((r.key, r.value) for r in read_topic(bootstrap, out)) == Counter(
        dict.fromkeys(expected, 2)
    )
    assert not (commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir()))
    print(f"SIGKILL in real-time mode: all {len(expected)} shipments written twice")

    # So the next run, whatever its trigger, writes them a third time (and checkpoints at last).
    run_available_now(spark, bootstrap, src, out, dlq, checkpoint, max_offsets=None)
    records = read_topic(bootstrap, out)
    assert Counter((r.key, r.value) for r in records) == Counter(dict.fromkeys(expected, 3))
    assert (commits / "0").is_file()

    values, duplicates = dedupe_all(bootstrap, out, group_id, len(records))
    assert values == Counter({v: 1 for _, v in expected})
    assert duplicates == 2 * len(expected)


def test_help_lists_the_contract_arguments() -> None:
    result = subprocess.run([sys.executable, str(JOB), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for argument in ("--bootstrap-servers", "--source-topic", "--sink-topic", "--checkpoint", "--trigger",
                     "--dlq-topic", "available-now", "processing-time=0s", "real-time"):  # fmt: skip
        assert argument in result.stdout
    bad = subprocess.run(
        [sys.executable, str(JOB), "--bootstrap-servers", "x:1", "--checkpoint", "c",
         "--trigger", "sometimes"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "real-time" in bad.stderr
