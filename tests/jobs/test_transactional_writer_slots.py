"""Which writer slot a task of the exactly-once sink writes as (`pipelines.transactional_writer`),
without Spark or a broker: the source partition its rows carry, checked on every row, else the
task's partition index.

A slot names the transactional id and the batch marker a task uses, so it must be the same for the
same rows on every replay. Spark's partition index is not: a replayed batch gets its input
partitions in the order of the offset log's JSON, the first run in the order of the broker's
answer. The shipments job's SIGKILL test caught it losing 1,500 shipments and writing 1,479 twice
that way (tests/jobs/test_orders_to_shipments.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.errors import PipelinesError
from pipelines.transactional_writer import SLOT_COLUMN, task_slot


def batch(keys: list[bytes], slots: list[int | None] | None = None) -> pa.RecordBatch:
    columns: dict[str, pa.Array] = {"key": pa.array(keys, pa.binary()), "value": pa.array(keys, pa.binary())}
    if slots is not None:
        columns[SLOT_COLUMN] = pa.array(slots, pa.int32())
    return pa.RecordBatch.from_pydict(columns)


def keys_of(batches: object) -> list[bytes]:
    return [k for b in batches for k in b.column("key").to_pylist()]  # type: ignore[attr-defined]


def test_the_slot_is_the_rows_source_partition_not_the_task_index() -> None:
    empty = batch([], [])
    slot, rows = task_slot(
        iter([empty, batch([b"a", b"b"], [2, 2]), empty, batch([b"c"], [2])]), 7, default=0
    )
    assert slot == 2
    assert keys_of(rows) == [b"a", b"b", b"c"]


def test_without_the_column_the_slot_is_the_task_index() -> None:
    slot, rows = task_slot(iter([batch([b"a"]), batch([b"b"])]), 7, default=1)
    assert slot == 1
    assert keys_of(rows) == [b"a", b"b"]


def test_a_task_without_rows_keeps_the_task_index_and_yields_nothing() -> None:
    slot, rows = task_slot(iter([batch([], []), batch([], [])]), 7, default=4)
    assert (slot, keys_of(rows)) == (4, [])


@pytest.mark.parametrize(
    "batches",
    [
        [batch([b"a", b"b"], [1, 0])],  # two source partitions in one record batch
        [batch([b"a"], [1]), batch([b"b"], [0])],  # ... or in the next one
    ],
)
def test_rows_of_two_source_partitions_in_one_task_are_refused(batches: list[pa.RecordBatch]) -> None:
    slot, rows = task_slot(iter(batches), 7, default=0)
    assert slot == 1
    with pytest.raises(
        PipelinesError, match=r"batch 7 holds rows of source partitions 1 and 0: .*Do not repartition"
    ):
        keys_of(rows)


def test_a_row_without_its_source_partition_is_refused() -> None:
    with pytest.raises(PipelinesError, match="a row of batch 7 has no source_partition"):
        task_slot(iter([batch([b"a"], [None])]), 7, default=0)
    _, rows = task_slot(iter([batch([b"a", b"b"], [3, None])]), 7, default=0)
    with pytest.raises(PipelinesError, match="a row of batch 7 has no source_partition"):
        keys_of(rows)
