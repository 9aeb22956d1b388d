"""What the Python clients rely on, proved on the real broker: a produce/consume round trip,
transactions on a single broker, and consumer-group offsets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer, TopicPartition

from pipelines.kafka.producer import make_producer, produce_all


def consume_exactly(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list[tuple[bytes, bytes]]:
    """Poll until `expected` records arrived or the deadline passed; return (key, value) pairs."""
    import time

    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append((msg.key() or b"", msg.value() or b""))
    return got


@contextmanager
def subscribed(bootstrap: str, group: str, topic: str, **extra: str) -> Iterator[Consumer]:
    """A member of `group` subscribed to `topic` (from the earliest offset, no auto-commit); closed
    at the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **extra,
        }
    )
    consumer.subscribe([topic])
    try:
        yield consumer
    finally:
        consumer.close()


def test_produce_consume_round_trip(bootstrap: str, new_topic: Callable[..., str], group_id: str) -> None:
    topic = new_topic(partitions=3)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
    report = produce_all(make_producer(bootstrap), topic, records)
    assert (report.sent, report.acknowledged, report.failed) == (300, 300, [])
    # Offsets per partition are dense and start at 0: nothing lost, nothing doubled.
    by_partition: dict[int, list[int]] = {}
    for d in report.delivered:
        by_partition.setdefault(d.partition, []).append(d.offset)
    assert sorted(by_partition) == [0, 1, 2]
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))

    with subscribed(bootstrap, group_id, topic) as consumer:
        got = consume_exactly(consumer, 300)
    assert sorted(got) == sorted(records)


def test_transactional_producer_commits_and_aborts_on_one_broker(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"txn-{topic}",
            "partitioner": "murmur2_random",
        }
    )
    # Hangs forever on a broker whose transaction log wants 3 replicas; ours is set up for one.
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=f"c{i}".encode(), value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=f"a{i}".encode(), value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"last", value=b"committed")
    producer.commit_transaction(30)

    with subscribed(bootstrap, group_id, topic, **{"isolation.level": "read_committed"}) as consumer:
        got = consume_exactly(consumer, 6)
        # Nothing more arrives: the aborted records stay invisible to read_committed.
        assert consumer.poll(2.0) is None
    assert sorted(got) == sorted(
        [(f"c{i}".encode(), b"committed") for i in range(5)] + [(b"last", b"committed")]
    )


def test_consumer_group_commits_and_reads_back_offsets(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=1)
    produce_all(make_producer(bootstrap), topic, [(b"k", f"v{i}".encode()) for i in range(10)])

    with subscribed(bootstrap, group_id, topic) as first:
        got = consume_exactly(first, 4)
        assert [v for _, v in got] == [b"v0", b"v1", b"v2", b"v3"]
        first.commit(asynchronous=False)
        committed = first.committed([TopicPartition(topic, 0)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 4)]

    # A new member of the same group resumes after the committed offset.
    with subscribed(bootstrap, group_id, topic) as second:
        rest = consume_exactly(second, 6)
    assert [v for _, v in rest] == [f"v{i}".encode() for i in range(4, 10)]
