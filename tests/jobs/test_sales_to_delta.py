"""The spine, end to end on real components: seeded producer -> real topic -> Spark's kafka source
(available-now) -> parse -> Delta table, read back and compared row for row with the ledger of
what the broker acknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from pipelines.contracts import SALES_TABLE_SCHEMA
from pipelines.generators.sales import Sale, encode_sale, generate_sales
from pipelines.jobs.sales_to_delta import RunSummary, sales_to_delta
from pipelines.kafka.producer import ProduceReport, make_producer, produce_all
from tests.helpers import PIPELINES, OwnSpark

MALFORMED = [(b"bad-1", b"{not json"), (b"bad-2", b'{"sale_id":"x"}'), (b"bad-3", b"\xff\xfe")]


def produce_sales(bootstrap: str, topic: str, count: int, seed: int) -> tuple[list[Sale], ProduceReport]:
    sales = list(generate_sales(count, seed=seed))
    report = produce_all(make_producer(bootstrap), topic, [encode_sale(s) for s in sales])
    assert report.acknowledged == count and not report.failed
    return sales, report


def expected_tuples(sales: list[Sale], report: ProduceReport) -> list[tuple[Any, ...]]:
    """The rows the job must write, from the generator's events and the broker's acks: sale_id,
    order_id, category, amount, currency, event time, partition, offset."""
    by_key = {s["sale_id"].encode(): s for s in sales}
    return [
        (s["sale_id"], s["order_id"], s["category"], s["amount"], s["currency"], s["timestamp"],
         d.partition, d.offset)
        for d in report.delivered
        for s in [by_key[d.key or b""]]
    ]  # fmt: skip


def expected_rows(spark: SparkSession, sales: list[Sale], report: ProduceReport) -> DataFrame:
    return spark.createDataFrame(expected_tuples(sales, report), SALES_TABLE_SCHEMA)


def spine_options(bootstrap: str, topic: str, tmp_path: Path) -> dict[str, Any]:
    """The job's options: each a keyword of `sales_to_delta` and an argument of the job's script."""
    return {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "delta_path": tmp_path / "sales",
        "checkpoint": tmp_path / "checkpoint",
        "trigger": "available-now",
        "max_offsets_per_trigger": 400,
    }


def run_spine(spark: SparkSession, bootstrap: str, topic: str, tmp_path: Path) -> RunSummary:
    return sales_to_delta(spark, **spine_options(bootstrap, topic, tmp_path))


def job_args(bootstrap: str, topic: str, tmp_path: Path) -> list[str]:
    options = spine_options(bootstrap, topic, tmp_path)
    return [arg for name, value in options.items() for arg in ("--" + name.replace("_", "-"), str(value))]


def test_spine_writes_exact_rows_and_restarts_exactly_once(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    sales, report = produce_sales(bootstrap, topic, 1000, seed=11)
    bad = produce_all(make_producer(bootstrap), topic, MALFORMED)
    assert bad.acknowledged == 3
    # max 400 offsets per trigger: the 1003 records take three micro-batches.
    assert run_spine(spark, bootstrap, topic, tmp_path) == RunSummary(read=1003, written=1000, rejected=3)
    table = spark.read.format("delta").load(str(tmp_path / "sales"))
    assert_df_equality(
        table, expected_rows(spark, sales, report), ignore_row_order=True, ignore_nullable=True
    )

    # Restart from the checkpoint with nothing new: no batch, no duplicate.
    assert run_spine(spark, bootstrap, topic, tmp_path) == RunSummary(read=0, written=0, rejected=0)
    # New events: only they are read and appended.
    more, more_report = produce_sales(bootstrap, topic, 200, seed=12)
    assert run_spine(spark, bootstrap, topic, tmp_path) == RunSummary(read=200, written=200, rejected=0)
    table = spark.read.format("delta").load(str(tmp_path / "sales"))
    everything = expected_rows(spark, sales, report).unionByName(expected_rows(spark, more, more_report))
    assert_df_equality(table, everything, ignore_row_order=True, ignore_nullable=True)


def test_spark_submit_with_local_jars_and_an_independent_reader(
    own_spark: OwnSpark, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """What users run: spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py. The table is
    read back with delta-rs (the `deltalake` package), a Delta reader that shares no code with Spark."""
    from deltalake import DeltaTable

    topic = new_topic(partitions=2)
    sales, report = produce_sales(bootstrap, topic, 300, seed=21)
    jars = subprocess.run([PIPELINES, "jars"], capture_output=True, text=True, check=True)
    cmd = own_spark.submit(
        "sales_to_delta.py",
        *job_args(bootstrap, topic, tmp_path),
        master="local[2]",
        jars=jars.stdout.strip(),
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["read"], summary["written"], summary["rejected"]) == (300, 300, 0)

    table = DeltaTable(str(tmp_path / "sales")).to_pyarrow_table()
    got = sorted(
        (r["sale_id"], r["order_id"], r["category"], r["amount"], r["currency"], r["event_time"],
         r["kafka_partition"], r["kafka_offset"])
        for r in table.to_pylist()
    )  # fmt: skip
    assert got == sorted(expected_tuples(sales, report))
