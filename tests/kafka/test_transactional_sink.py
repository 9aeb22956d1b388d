"""The exactly-once partition writer of the Spark jobs (pipelines.kafka.transactional_sink) on the
real broker, without Spark: each (batch id, partition) is written once, a replayed partition is
skipped while the batch's other partitions are written, and a zombie writer of the same partition
is fenced mid-transaction. The Spark jobs' kill and task-failure tests run it under Spark."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipelines.errors import PipelinesError
from pipelines.kafka import transactional_sink
from pipelines.kafka.producer import make_producer
from pipelines.kafka.transactional_sink import FailOnce, PartitionTransactions, Record
from pipelines.security import client_conf
from tests.helpers import read_topic


def rows(batch: int, partition: int, n: int = 3) -> list[Record]:
    return [(f"k{batch}-{partition}-{i}".encode(), b"v", [("h", b"1")], None, None) for i in range(n)]


def keys(batch: int, partition: int, n: int = 3) -> list[bytes]:
    return [key for key, *_ in rows(batch, partition, n) if key is not None]


def test_each_partition_of_each_batch_once_a_replay_skipped_a_zombie_fenced(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(partitions=1), new_topic(partitions=3)
    writer = PartitionTransactions(client_conf(bootstrap), sink, f"pipelines-test-{sink}", source)
    assert (writer.next_batch(0), writer.next_batch(1)) == (0, 0)
    for batch in range(2):
        for partition in range(2):
            assert writer.write(batch, partition, rows(batch, partition)).rows == 3
    # Batch 2: partition 0 commits, then the driver dies before partition 1 does. The replay
    # skips partition 0 and writes partition 1; an empty partition opens no transaction.
    assert writer.write(2, 0, rows(2, 0)).rows == 3
    assert writer.write(2, 0, rows(2, 0)).skipped
    assert writer.write(2, 1, rows(2, 1)).rows == 3
    assert writer.write(2, 2, []).rows == 0
    assert (writer.next_batch(0), writer.next_batch(1), writer.next_batch(2)) == (3, 3, 0)

    # A zombie: the writer of batch 3's partition 0 is still producing when a new attempt of the
    # same partition starts (a restarted driver's task). The new one fences it and commits; the
    # zombie's commit fails and its rows stay invisible to read_committed readers.
    successor = PartitionTransactions(client_conf(bootstrap), sink, f"pipelines-test-{sink}", source)

    def zombie_rows() -> Iterator[Record]:
        yield from rows(3, 0)[:2]
        assert successor.write(3, 0, rows(3, 0), attempt=1).rows == 3
        yield from [(b"zombie", b"v", None, None, None)]

    with pytest.raises((KafkaException, PipelinesError)):
        writer.write(3, 0, zombie_rows())

    records = read_topic(bootstrap, sink)
    expected = [k for b in range(3) for p in range(2) for k in keys(b, p)] + keys(3, 0)
    assert sorted(r.key for r in records) == sorted(expected)
    assert {r.headers for r in records} == {(("h", b"1"),)}
    assert successor.next_batch(0) == 4


def test_a_kept_producer_is_reused_and_one_fenced_by_another_writer_gives_way_to_a_new_one(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(partitions=1), new_topic(partitions=1)
    writer = PartitionTransactions(client_conf(bootstrap), sink, f"pipelines-test-{sink}", source)
    key = writer._producer_key(0)
    assert writer.write(0, 0, rows(0, 0)).rows == 3
    first = transactional_sink._PRODUCERS[key]
    assert writer.write(1, 0, rows(1, 0)).rows == 3
    assert transactional_sink._PRODUCERS[key] is first  # no init_transactions for batch 1

    # Batch 2 of the slot goes to another Python worker (here: the kept producer out of sight),
    # whose new producer fences `first`. Batch 3 comes back to this worker and its fenced producer.
    del transactional_sink._PRODUCERS[key]
    assert writer.write(2, 0, rows(2, 0)).rows == 3
    assert transactional_sink._PRODUCERS[key] is not first
    transactional_sink._PRODUCERS[key] = first
    assert writer.write(3, 0, rows(3, 0)).rows == 3
    assert transactional_sink._PRODUCERS[key] is not first  # dropped for a new one

    records = read_topic(bootstrap, sink)
    assert sorted(r.key for r in records) == sorted(k for b in range(4) for k in keys(b, 0))
    assert writer.next_batch(0) == 4


def test_a_kept_producer_whose_marker_is_held_by_a_dead_writers_transaction_takes_a_new_one(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(partitions=1), new_topic(partitions=1)
    writer = PartitionTransactions(
        client_conf(bootstrap), sink, f"pipelines-test-{sink}", source, kept_marker_timeout_s=2.0
    )
    assert writer.write(0, 0, rows(0, 0)).rows == 3  # its producer is kept
    # A writer of batch 1 (another worker's task) dies inside its transaction, which holds a row
    # and the marker's offset: the marker is not stable until that transaction ends.
    dead = make_producer(bootstrap, {"transactional.id": writer.partition_transactional_id(0)})
    dead.init_transactions(30)
    dead.begin_transaction()
    dead.produce(sink, key=b"dead", value=b"v")
    group = Consumer({**client_conf(bootstrap), "group.id": writer.marker_group(0)})
    dead.send_offsets_to_transaction([TopicPartition(source, 0, 2)], group.consumer_group_metadata(), 30)
    dead.flush(30)
    group.close()
    # The retry of batch 1 lands on the worker with the kept (fenced) producer: its marker read
    # waits 2 s, then a new producer aborts the dead transaction, and batch 1 is written once.
    assert writer.write(1, 0, rows(1, 0)).rows == 3
    records = read_topic(bootstrap, sink)
    assert sorted(r.key for r in records) == sorted(keys(0, 0) + keys(1, 0))
    assert writer.next_batch(0) == 2


def test_fault_injection_setting_is_parsed_or_refused_in_one_line() -> None:
    assert FailOnce.from_env({}) is None
    assert FailOnce.from_env(
        {"PIPELINES_FAULT_FAIL_TASK_ONCE": "batch=1,partition=0,after_rows=50"}
    ) == FailOnce(1, 0, 50)
    with pytest.raises(PipelinesError, match="expected batch=<id>,partition=<n>,after_rows=<n>"):
        FailOnce.from_env({"PIPELINES_FAULT_FAIL_TASK_ONCE": "batch=1"})
