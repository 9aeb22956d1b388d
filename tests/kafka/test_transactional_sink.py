"""The exactly-once batch writer of the Spark jobs (pipelines.kafka.transactional_sink) on the real
broker: each batch id is written once, a replayed batch is skipped, and a zombie writer holding
the same transactional id is fenced. The batches are plain row lists here (the writer reads a
batch's `columns` and `toLocalIterator()`); the Spark jobs' kill tests run it under Spark."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaException

from pipelines.errors import PipelinesError
from pipelines.kafka.transactional_sink import TransactionalBatchWriter
from tests.helpers import read_topic


@dataclass
class Batch:
    """What the writer needs of a micro-batch DataFrame."""

    rows: list[dict[str, Any]]
    columns: list[str] = field(default_factory=lambda: ["key", "value", "headers"])

    def toLocalIterator(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def batch(n: int) -> Batch:
    return Batch(
        [
            {"key": f"k{n}-{i}".encode(), "value": f"v{n}".encode(), "headers": [{"key": "h", "value": b"1"}]}
            for i in range(3)
        ]
    )


def test_each_batch_once_a_replay_skipped_a_zombie_fenced(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(partitions=1), new_topic(partitions=3)
    writer = TransactionalBatchWriter(bootstrap, sink, f"pipelines-test-{sink}", marker_topic=source)
    assert writer.next_batch() == 0
    for n in range(3):
        writer(batch(n), n)
    writer(batch(2), 2)  # the replay of batch 2 after a lost checkpoint commit
    assert (writer.next_batch(), writer.written_batches, writer.skipped_batches) == (3, 3, 1)

    # A restarted driver takes over the transactional id: the old one is fenced mid-batch.
    successor = TransactionalBatchWriter(bootstrap, sink, f"pipelines-test-{sink}", marker_topic=source)
    assert successor.next_batch() == 3
    successor(batch(3), 3)
    with pytest.raises((KafkaException, PipelinesError)):
        writer(batch(4), 4)

    records = read_topic(bootstrap, sink)
    assert sorted(r.key for r in records) == sorted(f"k{n}-{i}".encode() for n in range(4) for i in range(3))
    assert {r.headers for r in records} == {(("h", b"1"),)}
    assert successor.next_batch() == 4
