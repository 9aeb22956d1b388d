"""Exactly-once from Spark into Kafka: each partition of each micro-batch is written in one Kafka
transaction that also records the batch id, so no replay can write it twice.

Spark's kafka sink is at-least-once: a batch written but not yet committed in the checkpoint when
the driver dies is written again on restart. This sink is a `foreachBatch` function instead. The
batch is written where it is computed, by the executors, one task per partition of the batch:

1. the task for slot `p` (see below) opens a transactional producer whose `transactional.id` is
   `<sink id>-p<p>`, stable across restarts of the same checkpoint (`transactional_id_for`);
   `init_transactions` fences any older writer of that partition still holding the id (a killed
   driver's task, a failed or speculative attempt) and aborts its open transaction. The Python
   worker keeps the producer after its commit for the slot's later batches (`init_transactions`
   is a few round trips to the transaction coordinator, 65-500 ms on two cores, every batch).
   A kept producer may have been fenced since by another worker that wrote the slot (Spark does
   not send a slot's tasks to the same worker): each transaction therefore starts with the
   marker's `send_offsets_to_transaction`, the first request to the broker, and a kept producer
   it fails for is dropped for a new one, whose `init_transactions` comes before the marker is
   read again (step 2). A producer that is not fenced there was not fenced when the marker was
   read either: fencing is permanent. A retried task, and a kept producer whose marker read does
   not answer within `kept_marker_timeout_s` (a dead writer's open transaction holding the
   marker's offset), take a new producer first, whose `init_transactions` aborts that transaction;
2. it reads the partition's *marker*: the committed offset of the consumer group
   `<sink id>-p<p>.batches` on partition 0 of the job's source topic, read with `read_committed`,
   which holds the last batch id this partition wrote + 1. A batch below it was written already:
   the task skips it. (The source topic because committing an offset in a transaction needs Read
   on its topic, which the job has there; the group is a marker, never a consumer.) The marker's
   consumer is kept by the Python worker for later batches, and its first lookup of the group's
   coordinator overlaps `init_transactions`; the read that decides comes after it, since a zombie
   can commit until then;
3. otherwise it begins a transaction, moves the marker to `batch id + 1` with
   `send_offsets_to_transaction`, produces every row of its partition (key, value, headers, to
   the row's `topic` when the batch has that column, like Spark's own sink, else the sink's topic;
   with `murmur2_random`: Java's partitioner, so a key lands where Spark's own sink puts it) and
   commits: rows and marker together, or neither.

**A task's writer slot must name the same rows on every replay.** A slot (`partition` below) is
what names a task's transactional id and marker. Spark replays the offset ranges it logged in the
checkpoint before the batch ran, so a replay reads exactly the rows the first run read, split the
same way (one input partition per topic-partition with new records). But not in the same order:
the first run numbers its input partitions in the order of the broker's offsets answer, a replay
in the order of the offset log's JSON, so Spark's partition index is not a stable slot for a
stateless job (the shipments job's SIGKILL test caught this: 1,500 shipments lost and 1,479
written twice). So:

- a stateless job gives every row its source Kafka partition in a `source_partition` column, and
  that is the slot (`pipelines.transactional_writer.SLOT_COLUMN`). A task holding two source
  partitions (a repartition) fails before it commits (its transaction aborted); two tasks of one
  source partition (the source's `minPartitions` or `maxRecordsPerPartition` split it) are found
  only after the batch ran, when one may have skipped the other's rows: the batch fails,
  uncommitted. The jobs never set either option; a caller of this sink must not;
- after a stateful aggregation (the revenue job) the slot is the partition index: the shuffle
  partitions, which the checkpoint fixes, hash-partitioned by key.

Empty partitions open no transaction.

Consumers that read with `isolation.level=read_committed` see every row exactly once;
`read_uncommitted` readers also see aborted attempts. The executors need confluent-kafka (local
mode: the driver's Python; on a cluster, docs/guarantees.md says how to ship it).

The Spark side (`pipelines.transactional_writer.TransactionalBatchWriter`) runs
`PartitionTransactions.write` in every task of a batch with `mapInArrow`; this module is plain
Kafka (and pyarrow's record batches).

`PIPELINES_FAULT_FAIL_TASK_ONCE=batch=B,partition=P,after_rows=N` is a fault injection for tests
and drills: the first attempt of that task dies (its Python worker exits, no abort) after
producing N rows; Spark retries the task, whose `init_transactions` aborts the dead attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pipelines.errors import PipelinesError
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER, make_producer

if TYPE_CHECKING:
    import pyarrow as pa

LOG = logging.getLogger(__name__)
MARKER_PARTITION = 0
MAX_KEPT_MARKERS = 64
_MARKERS: dict[tuple[str, str], Consumer] = {}
"""The marker consumers of this process, by (client config, marker group): `PartitionTransactions._marker`."""
MAX_KEPT_PRODUCERS = 64
_PRODUCERS: dict[tuple[str, str], Producer] = {}
"""The transactional producers of this process between two transactions, by (client and producer
config, transactional id): `PartitionTransactions._kept_producer`. A task takes its slot's out while
it writes and puts it back after its commit, so two writers in one process never share one."""
FAULT_ENV = "PIPELINES_FAULT_FAIL_TASK_ONCE"
_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int | None, str | None]
"""One row to produce: key, value, headers, partition (None: chosen by the key), topic (None: the
sink's)."""


TRANSACTIONAL_ID_PREFIX = "pipelines-"
"""Every transactional id of the Spark sinks starts so (the ACLs grant the prefix)."""


def transactional_id_for(query_name: str, checkpoint: Path) -> str:
    """`pipelines-<query name>-<8 hex of the checkpoint's absolute path>`: the same for every
    restart of one checkpoint, different for two checkpoints of the same job. Each partition's
    writer appends `-p<partition>`."""
    digest = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:8]
    return f"{TRANSACTIONAL_ID_PREFIX}{query_name}-{digest}"


@dataclass(frozen=True)
class FailOnce:
    """A fault to inject: the first attempt of `partition`'s task in `batch_id` dies after
    producing `after_rows` rows, inside its open transaction."""

    batch_id: int
    partition: int
    after_rows: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FailOnce | None:
        """The fault `PIPELINES_FAULT_FAIL_TASK_ONCE=batch=B,partition=P,after_rows=N` asks for."""
        text = (os.environ if environ is None else environ).get(FAULT_ENV, "").strip()
        if not text:
            return None
        try:
            fields = dict(part.split("=", 1) for part in text.split(","))
            return cls(int(fields["batch"]), int(fields["partition"]), int(fields["after_rows"]))
        except (KeyError, ValueError):
            raise PipelinesError(
                f"{FAULT_ENV}={text!r}: expected batch=<id>,partition=<n>,after_rows=<n>"
            ) from None


@dataclass(frozen=True)
class PartitionWrite:
    """What one task did: wrote `rows` rows of its partition, or skipped a partition written before."""

    partition: int
    attempt: int
    rows: int
    skipped: bool


@dataclass(frozen=True)
class PartitionTransactions:
    """Writes one partition of one batch exactly once (see the module docstring). Plain data, so
    Spark ships it to the executors; each task opens its own clients there. `client_config` is
    the bootstrap servers and security settings, resolved on the driver."""

    client_config: Mapping[str, Any]
    topic: str
    transactional_id: str
    marker_topic: str
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0
    fail_once: FailOnce | None = None
    kept_marker_timeout_s: float = 5.0
    """How long a task with a kept producer waits for its marker before it takes a new producer:
    a transaction a dead attempt left open with its marker offset holds the read until a new
    producer's `init_transactions` aborts it (or it times out, after a minute)."""

    def partition_transactional_id(self, partition: int) -> str:
        return f"{self.transactional_id}-p{partition}"

    def marker_group(self, partition: int) -> str:
        return f"{self.partition_transactional_id(partition)}.batches"

    def _consumer(self, partition: int) -> Consumer:
        return Consumer(
            {
                **self.client_config,
                "group.id": self.marker_group(partition),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            },
            logger=LIBRDKAFKA_LOGGER,
        )

    def _marker_key(self, partition: int) -> tuple[str, str]:
        return (repr(sorted(self.client_config.items())), self.marker_group(partition))

    def _marker(self, partition: int) -> tuple[Consumer, bool]:
        """The marker consumer of `partition`'s slot, and whether it was just made. It is kept in
        this process (a Spark Python worker, reused across tasks) so that later batches skip its
        start-up. It only ever reads its group's committed offset, and the producer moves that
        offset, so keeping it is safe."""
        key = self._marker_key(partition)
        consumer = _MARKERS.get(key)
        if consumer is not None:
            return consumer, False
        while len(_MARKERS) >= MAX_KEPT_MARKERS:  # the oldest goes: a bound on kept connections
            _MARKERS.pop(next(iter(_MARKERS))).close()
        consumer = _MARKERS[key] = self._consumer(partition)
        return consumer, True

    def _warm_up(self, marker: Consumer) -> None:
        with contextlib.suppress(KafkaException):  # the real read, after it, says what went wrong
            marker.committed([TopicPartition(self.marker_topic, MARKER_PARTITION)], timeout=self.timeout_s)

    def next_batch(
        self, partition: int, marker: Consumer | None = None, timeout_s: float | None = None
    ) -> int:
        """The first batch id `partition` has not written yet (0 for a new sink). The group's
        coordinator may still be loading or moving (a new group, a restarted broker): asked
        again until it answers, for `timeout_s` (default: the sink's)."""
        own = marker is None
        consumer = self._consumer(partition) if marker is None else marker
        try:
            deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
            while True:
                try:
                    committed = consumer.committed(
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
                            f"cannot read the batch marker of {self.topic!r} partition writer {partition} "
                            f"(group {self.marker_group(partition)!r} on {self.marker_topic!r}): "
                            f"{error.str()}"
                        ) from None
                    consumer.poll(0.1)  # a coordinator that is loading answers again shortly
        finally:
            if own:
                consumer.close()
        offset = committed[0].offset
        return offset if offset >= 0 else 0

    def batch_written(self, batch_id: int, partitions: int) -> bool:
        """Whether every one of `partitions` partitions has written batch `batch_id` (the replay
        of a batch whose checkpoint commit was lost), from the driver: the markers are read in
        partition order up to the first that has not (usually partition 0, one lookup)."""
        return all(self.next_batch(p) > batch_id for p in range(partitions))

    def _producer_key(self, partition: int) -> tuple[str, str]:
        config = {**self.client_config, **self.producer_config}
        return (repr(sorted(config.items())), self.partition_transactional_id(partition))

    def _kept_producer(self, partition: int) -> Producer | None:
        """The producer this process kept for `partition`'s slot after its last commit, taken out
        (it goes back with `_keep`), or None."""
        return _PRODUCERS.pop(self._producer_key(partition), None)

    def _keep(self, partition: int, producer: Producer) -> None:
        while len(_PRODUCERS) >= MAX_KEPT_PRODUCERS:  # the oldest goes: a bound on kept connections
            _PRODUCERS.pop(next(iter(_PRODUCERS))).flush(0)
        _PRODUCERS[self._producer_key(partition)] = producer

    def _new_producer(self, partition: int, marker: Consumer, new_marker: bool) -> Producer:
        """A new producer for `partition`'s slot, its `init_transactions` done. A new marker
        consumer's first read, which finds the group's coordinator and connects to it, runs
        while `init_transactions` waits on the broker; the marker read that counts, after it, is
        then one round trip. A kept consumer knows its coordinator already."""
        warm_up = threading.Thread(target=self._warm_up, args=(marker,), daemon=True) if new_marker else None
        if warm_up is not None:
            warm_up.start()
        try:
            return self._producer(partition)
        finally:
            if warm_up is not None:
                warm_up.join()

    def _replace(self, partition: int, marker: Consumer, why: str) -> Producer:
        """A new producer for `partition`'s slot in place of the kept one, which `why`. The kept
        one holds nothing between transactions and closes when the caller drops it (no flush: on
        a fenced producer that raises the fence)."""
        LOG.info("partition %d: the kept producer %s: a new one", partition, why)
        return self._new_producer(partition, marker, new_marker=False)

    def _producer(self, partition: int) -> Producer:
        transactional_id = self.partition_transactional_id(partition)
        producer = make_producer(
            self.client_config["bootstrap.servers"],
            {
                **self.client_config,
                **self.producer_config,
                "transactional.id": transactional_id,
                "transaction.timeout.ms": 60_000,
            },
        )
        try:
            producer.init_transactions(self.timeout_s)  # fences an older writer with this id
        except KafkaException as exc:
            raise PipelinesError(
                f"cannot initialise transactions for transactional.id {transactional_id!r}: "
                f"{exc.args[0].str()}"
            ) from None
        return producer

    def write(
        self, batch_id: int, partition: int, records: Iterable[Record], attempt: int = 0
    ) -> PartitionWrite:
        """Produce `records` (partition `partition` of batch `batch_id`) in one transaction with
        the partition's marker, unless the marker says this batch was written. Nothing is opened
        for an empty partition."""
        rows = iter(records)
        first = next(rows, None)
        if first is None:
            return PartitionWrite(partition, attempt, 0, skipped=False)
        marker, new_marker = self._marker(partition)
        producer = self._kept_producer(partition)
        if producer is not None and attempt > 0:
            # A retried task: its failed attempt may have died inside a transaction holding the
            # marker's offset; a new producer's init_transactions aborts it.
            producer = None
        kept = producer is not None
        try:
            if producer is None:
                producer = self._new_producer(partition, marker, new_marker)
            marker_offsets = [TopicPartition(self.marker_topic, MARKER_PARTITION, batch_id + 1)]
            while True:
                # The marker is read after init_transactions (a zombie may still commit until then).
                # A kept producer may find it held by a transaction a dead writer left open (its
                # offset is not stable until that transaction ends): then a new producer, whose
                # init_transactions aborts it.
                try:
                    next_batch = self.next_batch(
                        partition, marker, self.kept_marker_timeout_s if kept else None
                    )
                except PipelinesError:
                    if not kept:
                        raise
                    kept = False
                    producer = self._replace(partition, marker, "finds its marker held")
                    continue
                if batch_id < next_batch:
                    LOG.info("partition %d of batch %d was written before: skipped", partition, batch_id)
                    self._keep(partition, producer)
                    return PartitionWrite(partition, attempt, 0, skipped=True)
                try:
                    producer.begin_transaction()
                    producer.send_offsets_to_transaction(
                        marker_offsets, marker.consumer_group_metadata(), self.timeout_s
                    )
                    break
                except KafkaException:
                    if not kept:
                        with contextlib.suppress(KafkaException):
                            producer.abort_transaction(self.timeout_s)
                        raise
                # A kept producer another writer of this slot has fenced since (or whose broker went
                # away): a new one, which fences every other, and the marker read again after it.
                kept = False
                producer = self._replace(partition, marker, "cannot write (fenced?)")
            fault = self.fail_once
            fail_after = (
                fault.after_rows
                if fault and attempt == 0 and (fault.batch_id, fault.partition) == (batch_id, partition)
                else None
            )
            written = 0
            try:
                for key, value, headers, target, topic in itertools.chain([first], rows):
                    if written == fail_after:
                        producer.flush(self.timeout_s)  # the rows reach the broker, uncommitted
                        os._exit(17)  # the injected fault: the worker dies inside its transaction
                    kwargs: dict[str, Any] = {"key": key, "value": value}
                    if headers is not None:
                        kwargs["headers"] = headers
                    if target is not None:
                        kwargs["partition"] = target
                    while True:
                        try:
                            producer.produce(topic or self.topic, **kwargs)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    producer.poll(0)
                    written += 1
                producer.commit_transaction(self.timeout_s)
            except BaseException:
                # Fenced, or the broker is gone: then the transaction times out on the broker.
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(self.timeout_s)
                raise
            self._keep(partition, producer)
            return PartitionWrite(partition, attempt, written, skipped=False)
        except BaseException:
            _MARKERS.pop(self._marker_key(partition), None)  # a fresh consumer for the next attempt
            marker.close()
            if producer is not None:  # not kept: it closes when dropped
                with contextlib.suppress(KafkaException):  # a fenced one raises the fence again
                    producer.flush(0)
            raise


def arrow_records(batches: Iterable[pa.RecordBatch]) -> Iterator[Record]:
    """The rows of Arrow record batches with `key`, `value` and optional `headers`, `partition`,
    `topic`."""
    for batch in batches:
        names = batch.schema.names
        keys = batch.column("key").to_pylist()
        values = batch.column("value").to_pylist()
        absent = [None] * len(keys)
        headers = batch.column("headers").to_pylist() if "headers" in names else absent
        targets = batch.column("partition").to_pylist() if "partition" in names else absent
        topics = batch.column("topic").to_pylist() if "topic" in names else absent
        for key, value, hdrs, target, topic in zip(keys, values, headers, targets, topics, strict=True):
            yield key, value, None if hdrs is None else [(h["key"], h["value"]) for h in hdrs], target, topic
