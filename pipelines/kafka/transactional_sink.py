"""Exactly-once from Spark into Kafka: each micro-batch is written in one Kafka transaction that
also records the batch id, so no replay can write a batch twice.

Spark's kafka sink is at-least-once: a batch written but not yet committed in the checkpoint when
the driver dies is written again on restart. This sink is a `foreachBatch` function instead:

1. one transactional producer per sink, with a `transactional.id` that is stable across restarts
   of the same checkpoint (`transactional_id_for`); `init_transactions` at the first batch of a
   run fences any older driver still holding that id (a zombie) and aborts its open transaction;
2. per batch: read the sink's *marker* — the committed offset of the consumer group
   `<transactional.id>.batches` on partition 0 of the job's source topic, which holds the last
   batch id written + 1 — with `read_committed`; a batch below it was written already and is
   skipped. (The source topic because committing an offset in a transaction needs Read on its
   topic, which the job has there; that group is a marker, never a consumer.)
3. otherwise begin a transaction, produce every row of the batch (key, value, headers, with
   `murmur2_random`: Java's partitioner, so a key lands where Spark's own sink puts it), move the
   marker to `batch id + 1` with `send_offsets_to_transaction` and commit — rows and marker
   together, or neither.

A replayed batch holds the same rows: Spark replays the offsets it logged before the batch ran,
and the shipments transform is deterministic. Consumers that read with `isolation.level=
read_committed` see every row exactly once; `read_uncommitted` readers also see aborted attempts.

The rows are produced from the driver, one transaction per batch (measured against Spark's sink in
`make bench`). Only the driver needs confluent-kafka; the executors compute the batch as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pipelines.errors import PipelinesError
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER, make_producer
from pipelines.security import client_conf

LOG = logging.getLogger(__name__)
MARKER_PARTITION = 0
_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


TRANSACTIONAL_ID_PREFIX = "pipelines-"
"""Every transactional id of the Spark sinks starts so (the ACLs grant the prefix)."""


def transactional_id_for(query_name: str, checkpoint: Path) -> str:
    """`pipelines-<query name>-<8 hex of the checkpoint's absolute path>`: the same for every
    restart of one checkpoint, different for two checkpoints of the same job."""
    digest = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:8]
    return f"{TRANSACTIONAL_ID_PREFIX}{query_name}-{digest}"


class TransactionalBatchWriter:
    """A `foreachBatch` function writing `key`, `value` (and `headers`, `partition` if present)
    rows to `topic` exactly once per batch id (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        transactional_id: str,
        marker_topic: str,
        producer_config: Mapping[str, Any] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.marker_topic = marker_topic
        self.transactional_id = transactional_id
        self.marker_group = f"{transactional_id}.batches"
        self.producer_config = dict(producer_config or {})
        self.timeout_s = timeout_s
        self.written_batches = 0
        self.skipped_batches = 0
        self._producer: Producer | None = None
        self._marker: Consumer | None = None

    def _open(self) -> tuple[Producer, Consumer]:
        if self._producer is None or self._marker is None:
            producer = make_producer(
                self.bootstrap_servers,
                {
                    **self.producer_config,
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": 60_000,
                },
            )
            try:
                producer.init_transactions(self.timeout_s)  # fences an older driver with this id
            except KafkaException as exc:
                raise PipelinesError(
                    f"cannot initialise transactions for transactional.id {self.transactional_id!r}: "
                    f"{exc.args[0].str()}"
                ) from None
            marker = Consumer(
                {
                    **client_conf(self.bootstrap_servers),
                    "group.id": self.marker_group,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                },
                logger=LIBRDKAFKA_LOGGER,
            )
            self._producer, self._marker = producer, marker
        return self._producer, self._marker

    def next_batch(self) -> int:
        """The first batch id not written yet (0 for a new sink). The group's coordinator may
        still be loading or moving (a new group, a restarted broker): asked again until it answers."""
        _producer, marker = self._open()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                committed = marker.committed(
                    [TopicPartition(self.marker_topic, MARKER_PARTITION)],
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                break
            except KafkaException as exc:
                error = exc.args[0]
                if time.monotonic() >= deadline or not (
                    error.retriable() or error.code() in _COORDINATOR_MOVING
                ):
                    raise PipelinesError(
                        f"cannot read the batch marker of {self.topic!r} (group {self.marker_group!r} on "
                        f"{self.marker_topic!r}): "
                        f"{error.str()}"
                    ) from None
                marker.poll(0.1)  # a coordinator that is loading answers again shortly
        offset = committed[0].offset
        return offset if offset >= 0 else 0

    def __call__(self, batch_df: Any, batch_id: int) -> None:
        producer, marker = self._open()
        if batch_id < self.next_batch():
            self.skipped_batches += 1
            LOG.info(
                "batch %d of %s was written before (transaction committed): skipped", batch_id, self.topic
            )
            return
        columns = set(batch_df.columns)
        producer.begin_transaction()
        try:
            for row in batch_df.toLocalIterator():
                kwargs: dict[str, Any] = {"key": row["key"], "value": row["value"]}
                if "headers" in columns and row["headers"] is not None:
                    kwargs["headers"] = [(h["key"], h["value"]) for h in row["headers"]]
                if "partition" in columns and row["partition"] is not None:
                    kwargs["partition"] = row["partition"]
                while True:
                    try:
                        producer.produce(self.topic, **kwargs)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            marker_offsets = [TopicPartition(self.marker_topic, MARKER_PARTITION, batch_id + 1)]
            producer.send_offsets_to_transaction(
                marker_offsets, marker.consumer_group_metadata(), self.timeout_s
            )
            producer.commit_transaction(self.timeout_s)
        except BaseException:
            # Fenced, or the broker is gone: then the transaction times out on the broker.
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(self.timeout_s)
            raise
        self.written_batches += 1

    def close(self) -> None:
        if self._marker is not None:
            self._marker.close()
        self._producer = self._marker = None
