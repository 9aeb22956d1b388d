"""The Spark side of the exactly-once Kafka sink: a `foreachBatch` function that writes each
partition of a micro-batch from its own task (`mapInArrow`), each in one Kafka transaction with the
partition's batch marker (`pipelines.kafka.transactional_sink`, plain Kafka, has the design and
the reasoning). The driver only plans the batch, skips it when every partition had committed it,
and collects one small row per task: what it wrote or skipped."""

from __future__ import annotations

import logging
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
"""What each task of a batch reports to the driver."""


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
        result = transactions.write(
            batch_id, context.partitionId(), arrow_records(batches), attempt=context.attemptNumber()
        )
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
        columns = [c for c in ("key", "value", "headers", "partition", "topic") if c in batch_df.columns]
        # Spark replays a batch only as the first of a run (the last one logged and not committed
        # when the previous run ended), so only then can all of it have been written before. The
        # tasks check their own partition's marker on every batch all the same (a retried task).
        first, self._first_batch = self._first_batch, False
        if first and self.transactions.batch_written(batch_id, batch_df.rdd.getNumPartitions()):
            # The whole batch committed before the driver could record it: nothing to compute.
            LOG.info(
                "batch %d of %s was written before (its transactions committed): skipped",
                batch_id,
                self.topic,
            )
            return
        writes = [
            PartitionWrite(**row.asDict())
            for row in batch_df.select(*columns)
            .mapInArrow(partition_writer(self.transactions, batch_id), RESULT_SCHEMA)
            .collect()
        ]
        skipped = [w for w in writes if w.skipped]
        if skipped:
            LOG.info(
                "batch %d of %s: partitions %s were written before (their transactions committed): skipped",
                batch_id,
                self.topic,
                sorted(w.partition for w in skipped),
            )
