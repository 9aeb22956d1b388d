"""The Spark side of the exactly-once Kafka sink: a `foreachBatch` function that writes each
partition of a micro-batch from its own task (`mapInArrow`), each in one Kafka transaction with the
partition's batch marker (`pipelines.kafka.transactional_sink`, plain Kafka, has the design and
the reasoning). The driver only plans the batch, skips it when every partition had committed it,
and collects one small row per task: what it wrote or skipped."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from pipelines.errors import PipelinesError
from pipelines.kafka.transactional_sink import (
    FailOnce,
    PartitionTransactions,
    PartitionWrite,
    arrow_records,
)
from pipelines.security import client_conf

if TYPE_CHECKING:
    import pyarrow as pa

LOG = logging.getLogger(__name__)
RESULT_SCHEMA = "partition INT, attempt INT, rows LONG, skipped BOOLEAN"
"""What each task of a batch reports to the driver (`partition`: the writer slot it wrote as)."""
SLOT_COLUMN = "source_partition"
"""A batch column naming each row's writer slot, the source Kafka partition it was read from
(`pipelines.kafka.transactional_sink` says why a stateless job needs it). Without it, the slot is
the task's partition index."""


def _no_slot(batch_id: int) -> PipelinesError:
    return PipelinesError(f"a row of batch {batch_id} has no {SLOT_COLUMN}: it names the row's writer slot")


def _rows_of_one_slot(
    first: pa.RecordBatch, rest: Iterator[pa.RecordBatch], slot: int, batch_id: int
) -> Iterator[pa.RecordBatch]:
    """`first` and `rest`, checked to hold rows of writer slot `slot` only."""
    import pyarrow.compute as pc

    for batch in itertools.chain([first], rest):
        if batch.num_rows == 0:
            continue
        column = batch.column(SLOT_COLUMN)
        if column.null_count:
            raise _no_slot(batch_id)
        bounds = pc.min_max(column).as_py()
        other = bounds["max"] if bounds["min"] == slot else bounds["min"]
        if other != slot:
            raise PipelinesError(
                f"a task of batch {batch_id} holds rows of source partitions {slot} and {other}: the "
                "exactly-once sink writes each source partition from one task. Do not repartition "
                "or coalesce the rows before this sink."
            )
        yield batch


def task_slot(
    batches: Iterator[pa.RecordBatch], batch_id: int, default: int
) -> tuple[int, Iterator[pa.RecordBatch]]:
    """The writer slot of a task's rows and the rows: the value of their `source_partition`
    column (all the same, checked as they are read), else `default`, the task's partition index."""
    first = next((b for b in batches if b.num_rows), None)
    if first is None:
        return default, iter(())
    if SLOT_COLUMN not in first.schema.names:
        return default, itertools.chain([first], batches)
    slot = first.column(SLOT_COLUMN)[0].as_py()
    if slot is None:
        raise _no_slot(batch_id)
    return slot, _rows_of_one_slot(first, batches, slot, batch_id)


def partition_writer(
    transactions: PartitionTransactions, batch_id: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The `mapInArrow` function that writes each task's partition of batch `batch_id`."""

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is None:
            raise PipelinesError("the transactional sink's partition writer runs only in a Spark task")
        slot, rows = task_slot(iter(batches), batch_id, default=context.partitionId())
        result = transactions.write(batch_id, slot, arrow_records(rows), attempt=context.attemptNumber())
        yield pa.RecordBatch.from_pydict(
            {
                "partition": pa.array([result.partition], pa.int32()),
                "attempt": pa.array([result.attempt], pa.int32()),
                "rows": pa.array([result.rows], pa.int64()),
                "skipped": pa.array([result.skipped], pa.bool_()),
            }
        )

    return write_partition


class TransactionalBatchWriter:
    """A `foreachBatch` function writing `key`, `value` (and `headers`, `partition` if present)
    rows to `topic` (or to each row's `topic` when the batch has that column, as Spark's kafka sink
    does), each partition of each batch id exactly once (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        transactional_id: str,
        marker_topic: str,
        producer_config: Mapping[str, Any] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.topic = topic
        self.transactions = PartitionTransactions(
            client_config=client_conf(bootstrap_servers),
            topic=topic,
            transactional_id=transactional_id,
            marker_topic=marker_topic,
            producer_config=dict(producer_config or {}),
            timeout_s=timeout_s,
            fail_once=FailOnce.from_env(),
        )
        self._first_batch = True

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        wanted = ("key", "value", "headers", "partition", "topic", SLOT_COLUMN)
        have = batch_df.columns
        columns = [c for c in wanted if c in have]
        # Spark replays a batch only as the first of a run (the last one logged and not committed
        # when the previous run ended), so only then can all of it have been written before. The
        # tasks check their own slot's marker on every batch all the same (a retried task).
        # With a slot column, slots are source partitions, one task each: if slots 0..n-1 of the
        # batch's n tasks all wrote it, those n source partitions are exactly the batch's.
        first, self._first_batch = self._first_batch, False
        if first and self.transactions.batch_written(batch_id, batch_df.rdd.getNumPartitions()):
            # The whole batch committed before the driver could record it: nothing to compute.
            LOG.info(
                "batch %d of %s was written before (its transactions committed): skipped",
                batch_id,
                self.topic,
            )
            return
        # Every extra DataFrame step is analysed again over the batch's whole plan: rows that have
        # only wanted columns (the orders -> shipments job's) go to the writer as they are (it reads
        # the Arrow columns by name).
        rows = batch_df if set(columns) == set(have) else batch_df.select(*columns)
        writes = [
            PartitionWrite(**row.asDict())
            for row in rows.mapInArrow(partition_writer(self.transactions, batch_id), RESULT_SCHEMA).collect()
        ]
        # Tasks without rows opened nothing and report their task index: they take no slot.
        slots = Counter(w.partition for w in writes if w.rows or w.skipped)
        shared = sorted(slot for slot, tasks in slots.items() if tasks > 1)
        if shared:
            # Two tasks wrote as one slot (the source split one Kafka partition over several tasks):
            # whichever committed second found the first's marker and skipped its rows. Detected
            # only after the fact, so the batch fails and is not committed in the checkpoint.
            raise PipelinesError(
                f"batch {batch_id} of {self.topic}: several tasks wrote source partition(s) {shared}, "
                "so rows of this batch may be missing from the sink. The exactly-once sink needs one "
                "task per source partition: remove the kafka source's minPartitions or "
                "maxRecordsPerPartition (or a repartition before this sink), and recover the batch's "
                "rows from the source offsets in the checkpoint's offsets log before restarting."
            )
        skipped = [w for w in writes if w.skipped]
        if skipped:
            LOG.info(
                "batch %d of %s: slots %s were written before (their transactions committed): skipped",
                batch_id,
                self.topic,
                sorted(w.partition for w in skipped),
            )
