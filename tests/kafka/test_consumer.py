"""The three commit strategies and dead letters, proved on the real broker.

A crash is simulated two ways: a handler that fails on a record (the consumer stops there and is
closed, as a process would exit on an unhandled error), and `abort()`, which leaves the group
without committing anything pending, as a killed process would. A restarted consumer in the same
group then shows what each strategy guarantees.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Message, murmur2

from pipelines.contracts import dead_letter_topic
from pipelines.kafka.admin import create_topic
from pipelines.kafka.consumer import (
    CommitStrategy,
    RecordConsumer,
    RecordFailedError,
    RecordOutcome,
    RecordRejected,
)
from pipelines.kafka.dlq import DeadLetterError, DeadLetterWriter
from pipelines.kafka.producer import Delivered, make_producer, produce_all
from tests.helpers import read_topic

VALUES = [f"v{i}".encode() for i in range(5)]


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> list[Delivered]:
    report = produce_all(make_producer(bootstrap), topic, records)
    assert report.failed == []
    return sorted(report.delivered, key=lambda d: (d.partition, d.offset))


@pytest.fixture
def topic(bootstrap: str, new_topic: Callable[..., str]) -> str:
    """A topic of one partition holding VALUES, all with the same key."""
    name = new_topic(partitions=1)
    produce(bootstrap, name, [(b"k", v) for v in VALUES])
    return name


def member(
    bootstrap: str, group_id: str, topic: str, handle: Callable[[Message], None], **options: Any
) -> RecordConsumer:
    """A member of `group_id` consuming `topic` with `handle`."""
    return RecordConsumer(bootstrap, group_id, [topic], handle, **options)


def with_dead_letters(bootstrap: str, **options: Any) -> dict[str, Any]:
    """RecordConsumer options: commit after processing, dead letters, outcomes kept."""
    return {
        "strategy": CommitStrategy.AT_LEAST_ONCE,
        "dead_letters": DeadLetterWriter.connect(bootstrap, **options),
        "keep_outcomes": True,
    }


def consume_until(consumer: RecordConsumer, handled: int, timeout_s: float = 30.0) -> list[RecordOutcome]:
    """Poll until `handled` records were processed or dead-lettered, within a deadline."""
    deadline = time.monotonic() + timeout_s
    while consumer.stats.handled < handled:
        assert time.monotonic() < deadline, f"only {consumer.stats.handled} of {handled} records"
        consumer.poll_once(0.2)
    return consumer.stats.outcomes


def run_until_failure(consumer: RecordConsumer, timeout_s: float = 30.0) -> RecordFailedError:
    deadline = time.monotonic() + timeout_s
    with pytest.raises(RecordFailedError) as info:
        while time.monotonic() < deadline:
            consumer.poll_once(0.2)
    return info.value


def restarted(
    bootstrap: str, group_id: str, topic: str, strategy: CommitStrategy, handled: int
) -> tuple[list[bytes], dict[tuple[str, int], int]]:
    """A new member of the group after a crash: the values it processes until `handled` records,
    and the offset committed for partition 0 at that point (before it closes)."""
    again: list[bytes] = []
    with member(
        bootstrap, group_id, topic, lambda m: again.append(m.value() or b""), strategy=strategy
    ) as new:
        consume_until(new, handled)
        return again, new.committed([(topic, 0)])


def crash_on_v2(
    bootstrap: str, group_id: str, topic: str, strategy: CommitStrategy, **options: Any
) -> tuple[int, list[bytes], dict[tuple[str, int], int]]:
    """A member whose processing fails on v2, which ends it (as an unhandled error ends a process):
    the failed record's offset, the values processed before it, and what the member had committed
    for partition 0 when it failed. It is closed afterwards."""
    seen: list[bytes] = []
    first = member(bootstrap, group_id, topic, failing_on(b"v2", seen), strategy=strategy, **options)
    failure = run_until_failure(first)
    committed = first.committed([(topic, 0)])
    first.close()
    return failure.offset, seen, committed


def failing_on(value: bytes, seen: list[bytes]) -> Callable[[Message], None]:
    """A handler that records what it processed and fails on `value` (every time)."""

    def handle(msg: Message) -> None:
        if msg.value() == value:
            raise RuntimeError(f"cannot process {value.decode()}")
        seen.append(msg.value() or b"")

    return handle


# -- commit-after-process: at-least-once ------------------------------------------------------------
def test_commit_after_process_redelivers_the_record_whose_processing_crashed(
    bootstrap: str, topic: str, group_id: str
) -> None:
    offset, seen, committed = crash_on_v2(
        bootstrap, group_id, topic, CommitStrategy.AT_LEAST_ONCE, max_attempts=1
    )
    assert (offset, seen) == (2, [b"v0", b"v1"])
    assert committed == {(topic, 0): 2}  # v2 was never committed ...

    # ... so the restarted member gets it again: nothing lost.
    again, committed = restarted(bootstrap, group_id, topic, CommitStrategy.AT_LEAST_ONCE, 3)
    assert again == [b"v2", b"v3", b"v4"]
    assert committed == {(topic, 0): 5}


def test_commit_after_process_redelivers_processed_records_not_yet_committed_after_a_crash(
    bootstrap: str, topic: str, group_id: str
) -> None:
    seen: list[bytes] = []
    first = member(
        bootstrap,
        group_id,
        topic,
        lambda m: seen.append(m.value() or b""),
        strategy=CommitStrategy.AT_LEAST_ONCE,
        commit_every=100,
    )
    consume_until(first, 5)
    assert seen == VALUES
    first.abort()  # a crash: processed, never committed

    again, _ = restarted(bootstrap, group_id, topic, CommitStrategy.AT_LEAST_ONCE, 5)
    # At-least-once: every record processed a second time; the handler must tolerate duplicates.
    assert again == VALUES


# -- commit-before-process: at-most-once --------------------------------------------------------------
def test_commit_before_process_never_redelivers_the_record_whose_processing_crashed(
    bootstrap: str, topic: str, group_id: str
) -> None:
    offset, seen, committed = crash_on_v2(bootstrap, group_id, topic, CommitStrategy.AT_MOST_ONCE)
    assert (offset, seen) == (2, [b"v0", b"v1"])
    assert committed == {(topic, 0): 3}  # committed before v2 was processed ...

    # ... so nobody processes v2 again: never twice, and v2 is lost.
    again, committed = restarted(bootstrap, group_id, topic, CommitStrategy.AT_MOST_ONCE, 2)
    assert again == [b"v3", b"v4"]
    assert committed == {(topic, 0): 5}


# -- auto-commit: no guarantee --------------------------------------------------------------------------
def test_auto_commit_commits_on_its_own_timer(bootstrap: str, topic: str, group_id: str) -> None:
    with member(
        bootstrap,
        group_id,
        topic,
        lambda m: None,
        strategy=CommitStrategy.AUTO_COMMIT,
        config={"auto.commit.interval.ms": 100},
    ) as consumer:
        consume_until(consumer, 5)
        assert consumer.stats.commits == 0  # the library never called commit ...
        deadline = time.monotonic() + 10
        while consumer.committed([(topic, 0)]) != {(topic, 0): 5}:
            assert time.monotonic() < deadline, "auto-commit did not commit within 10 s"
            consumer.poll_once(0.1)  # ... librdkafka's timer did


def test_auto_commit_loses_a_record_whose_processing_failed(
    bootstrap: str, topic: str, group_id: str
) -> None:
    # Closing the failed member commits the offsets stored when poll handed the records over, v2's
    # included.
    offset, seen, _ = crash_on_v2(bootstrap, group_id, topic, CommitStrategy.AUTO_COMMIT, max_attempts=1)
    assert offset == 2

    again, _ = restarted(bootstrap, group_id, topic, CommitStrategy.AUTO_COMMIT, 2)
    # Not at-least-once: v2 failed and is gone. (And not at-most-once: a crash between two timer
    # commits re-delivers records already processed.)
    assert (seen, again) == ([b"v0", b"v1"], [b"v3", b"v4"])


# -- poison records and the dead-letter topic -------------------------------------------------------------
def test_a_record_that_keeps_failing_goes_to_the_dlq_after_max_attempts_and_consumption_continues(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=3)
    create_topic(bootstrap, dead_letter_topic(topic), partitions=2)
    poison_value = b"\xff\x00{amount: twelve}"  # not even UTF-8: must arrive byte for byte
    records = [(b"poison-key", poison_value)] + [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)]
    delivered = produce(bootstrap, topic, records)
    poison = next(d for d in delivered if d.key == b"poison-key")

    attempts: Counter[tuple[int, int]] = Counter()
    processed: list[tuple[int, int]] = []

    def handle(msg: Message) -> None:
        where = (msg.partition() or 0, msg.offset() or 0)
        attempts[where] += 1
        if msg.value() == poison_value:
            raise ValueError("amount is not a number")
        processed.append(where)

    with member(
        bootstrap, group_id, topic, handle, max_attempts=3, **with_dead_letters(bootstrap)
    ) as consumer:
        outcomes = consume_until(consumer, 31)
        ends = {(topic, p): sum(1 for d in delivered if d.partition == p) for p in range(3)}
        assert consumer.committed(ends) == ends  # the poison record's offset is committed too

    assert attempts[(poison.partition, poison.offset)] == 3
    assert sorted(n for w, n in attempts.items() if w != (poison.partition, poison.offset)) == [1] * 30
    assert [
        (o.status, o.attempts, o.reason)
        for o in outcomes
        if o.offset == poison.offset and o.partition == poison.partition
    ] == [("dead_lettered", 3, "processing_failed:ValueError")]
    # Consumption went on past it: the records behind it in its partition were all processed.
    behind = [
        (d.partition, d.offset)
        for d in delivered
        if d.partition == poison.partition and d.offset > poison.offset
    ]
    assert behind and set(behind) <= set(processed)
    assert len(processed) == 30

    [letter] = read_topic(bootstrap, dead_letter_topic(topic))
    assert (letter.key, letter.value) == (b"poison-key", poison_value)
    assert list(letter.headers) == [
        ("error.reason", b"processing_failed:ValueError"),
        ("error.detail", b"failed 3 of 3 attempts; last error: amount is not a number"),
        ("source.topic", topic.encode()),
        ("source.partition", str(poison.partition).encode()),
        ("source.offset", str(poison.offset).encode()),
    ]
    # murmur2_random: the dead letter sits on the partition a Java client would choose for its key.
    assert letter.partition == murmur2(b"poison-key", 2)


def test_a_rejected_record_is_dead_lettered_at_once_with_its_reason_and_headers(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=1)
    create_topic(bootstrap, dead_letter_topic(topic), partitions=1)
    producer = make_producer(bootstrap)
    producer.produce(topic, key=b"s-1", value=b"{not json", headers=[("trace", b"t-9")])
    producer.produce(topic, key=b"s-2", value=b'{"ok": true}')
    assert producer.flush(30) == 0

    calls: list[bytes] = []

    def handle(msg: Message) -> None:
        calls.append(msg.key() or b"")
        if msg.value() == b"{not json":
            raise RecordRejected("invalid_json", "the value is not a JSON object: {not json")

    with member(
        bootstrap, group_id, topic, handle, max_attempts=5, **with_dead_letters(bootstrap)
    ) as consumer:
        outcomes = consume_until(consumer, 2)
    assert calls == [b"s-1", b"s-2"]  # bad data is not retried
    assert [(o.offset, o.status, o.attempts) for o in outcomes] == [
        (0, "dead_lettered", 1),
        (1, "processed", 1),
    ]
    [letter] = read_topic(bootstrap, dead_letter_topic(topic))
    assert (letter.key, letter.value) == (b"s-1", b"{not json")
    assert list(letter.headers) == [
        ("trace", b"t-9"),
        ("error.reason", b"invalid_json"),
        ("error.detail", b"the value is not a JSON object: {not json"),
        ("source.topic", topic.encode()),
        ("source.partition", b"0"),
        ("source.offset", b"0"),
    ]


def test_a_dead_letter_that_cannot_be_written_leaves_the_record_uncommitted(
    bootstrap: str, topic: str, group_id: str
) -> None:
    seen: list[bytes] = []

    def consumer() -> RecordConsumer:
        return member(
            bootstrap,
            group_id,
            topic,
            failing_on(b"v1", seen),
            max_attempts=2,
            **with_dead_letters(bootstrap, timeout_s=10),
        )

    first = consumer()
    deadline = time.monotonic() + 30
    with pytest.raises(DeadLetterError, match=r"\.dlq' does not exist"):
        while time.monotonic() < deadline:
            first.poll_once(0.2)
    assert first.committed([(topic, 0)]) == {(topic, 0): 1}
    first.close()

    # Once the topic exists, the restarted consumer gets v1 again and dead-letters it: nothing lost.
    create_topic(bootstrap, dead_letter_topic(topic), partitions=1)
    with consumer() as again:
        outcomes = consume_until(again, 4)
    assert [(o.offset, o.status) for o in outcomes] == [
        (1, "dead_lettered"),
        (2, "processed"),
        (3, "processed"),
        (4, "processed"),
    ]
    assert seen == [b"v0", b"v2", b"v3", b"v4"]
    [letter] = read_topic(bootstrap, dead_letter_topic(topic))
    assert (letter.value, dict(letter.headers)["source.offset"]) == (b"v1", b"1")
