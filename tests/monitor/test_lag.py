"""Lag of a Spark query from its checkpoint, against the real broker's log-end offsets, and the
`pipelines status` command that shows it (ordinary group-based lag tools see nothing here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.generators.sales import encode_sale, generate_sales
from pipelines.jobs.sales_to_delta import sales_to_delta
from pipelines.kafka.admin import end_offsets
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.monitor.lag import find_checkpoints, query_lag, read_query_offsets
from tests.helpers import pipelines


def test_lag_is_log_end_minus_the_last_committed_batch(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    first = produce_all(
        make_producer(bootstrap), topic, [encode_sale(s) for s in generate_sales(300, seed=61)]
    )
    root = tmp_path / "checkpoints"
    sales_to_delta(spark, bootstrap_servers=bootstrap, topic=topic, delta_path=tmp_path / "t",
                   checkpoint=root / "spine")  # fmt: skip
    more = produce_all(make_producer(bootstrap), topic, [encode_sale(s) for s in generate_sales(70, seed=62)])

    assert find_checkpoints(root) == [root / "spine"]
    offsets = read_query_offsets(root / "spine")
    processed = {p: 0 for p in range(3)}
    for d in first.delivered:
        processed[d.partition] = max(processed[d.partition], d.offset + 1)
    assert offsets.offsets == {topic: processed}
    [lag] = query_lag(offsets, {topic: end_offsets(bootstrap, topic)})
    added = {p: sum(1 for d in more.delivered if d.partition == p) for p in range(3)}
    assert {p: lag_ for p, (_, _, lag_) in lag.per_partition.items()} == added
    assert lag.total == 70

    proc = pipelines("status", "--checkpoints", str(root), "-b", bootstrap, columns=200)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "spine" in line and topic in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][1:6] == [topic, "0", "300", "370", "70"]
