"""Schema evolution while the revenue job runs, in Avro, on the real broker, registry and the run's
SparkSession: sales v2 (an optional `channel`) is registered and written while the job's queries
run on the plan they read before it existed; they fail on the first v2 record, start again from
their checkpoints with v2 in their plan (once), and the Delta table equals the totals of the
generator's events, computed in plain Python from the same seeds in JSON (the valid events of a
seed do not depend on the format). Every Avro malformed class is dead-lettered with the reason
the generator's ledger marks it with."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from pipelines.contracts import AVRO_REASON_CODES, SALES_TABLE_SCHEMA
from pipelines.generators.common import DEFAULT_START, format_timestamp
from pipelines.generators.events import AvroWriters, generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import RevenueJob, start_revenue_per_minute
from pipelines.jobs.sales_to_delta import RunSummary, sales_to_delta
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.registry.avro import WireEncoder, avro_record
from pipelines.registry.jobs import AvroPlans, RenewingRun
from pipelines.registry.schemas import SCHEMA_DIR, SchemaStore, contract_schema, load_schema
from tests.helpers import (
    DeltaRows,
    expected_windows,
    letter_reasons,
    parse_timestamp,
    read_topic,
    windows_of,
)

COUNT = 300


def _writers(store: SchemaStore, topic: str, schema: str, extra: dict[str, object]) -> AvroWriters:
    own = WireEncoder(store, topic, schema)
    foreign = WireEncoder(store, "orders", contract_schema("orders"))

    def as_order(d: dict[str, object]) -> dict[str, object]:
        return {k: d[k] for k in ("order_id", "amount", "currency", "timestamp")} | {"customer_id": "c"}

    return AvroWriters(
        lambda d: own.encode(avro_record({**d, **extra})), lambda d: foreign.encode(avro_record(as_order(d)))
    )


def test_v2_registered_while_the_job_runs_keeps_the_totals_exact(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], store: SchemaStore, tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    dlq = topic + ".dlq"
    create_topic(bootstrap, dlq, partitions=1)
    producer = make_producer(bootstrap)
    v1 = _writers(store, topic, contract_schema("sales"), {})
    part_a = dict(seed=41, malformed_fraction=0.1)
    publish_events(
        producer, topic, generate_events("sales", COUNT, **part_a, avro=v1), ledger=tmp_path / "a.jsonl"
    )

    plans = AvroPlans(store, contract_schema("sales"))  # the job starts: its plan knows v1 only

    def start(p: AvroPlans) -> RevenueJob:
        return start_revenue_per_minute(
            spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=tmp_path / "checkpoint",
            delta_path=tmp_path / "revenue", dlq_topic=dlq, trigger="processing-time=0 seconds",
            watermark="10 minutes", value_format="avro", avro_plan=p.plan,
        )  # fmt: skip

    run = RenewingRun(plans, start)
    failures: list[BaseException] = []

    def body() -> None:
        try:
            run.run()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while run.current is None or run.current.input_rows("delta") < COUNT:
            assert not failures and time.monotonic() < deadline, failures or "part A not read in 120 s"
            thread.join(0.25)
        # v2 is registered and written while the queries run on their v1 plan.
        v2_schema = load_schema(SCHEMA_DIR / "evolution" / "sales-v2.avsc")
        v2 = _writers(store, topic, v2_schema, {"channel": "web"})
        part_b = dict(seed=42, start=DEFAULT_START + timedelta(minutes=2))
        publish_events(
            producer, topic, generate_events("sales", COUNT, **part_b, avro=v2), ledger=tmp_path / "b.jsonl"
        )
        expected = expected_windows(
            [*generate_events("sales", COUNT, **part_a), *generate_events("sales", COUNT, **part_b)]
        )
        last = max(minute for minute, _ in expected)
        beat = v2.encode({"heartbeat": True, "timestamp": format_timestamp(last + timedelta(minutes=15))})
        produce_all(producer, topic, [(b"heartbeat", beat)])
        written = DeltaRows(spark, tmp_path / "revenue")
        deadline = time.monotonic() + 180
        while written() < len(expected):
            assert not failures and time.monotonic() < deadline, failures or "windows not written in 180 s"
            thread.join(0.25)  # paces the checks on the run's thread, which ends only on a failure
    finally:
        run.stop()
        thread.join(60)
    assert not failures, failures
    assert len(run.groups) == 2 and len(plans.seen) == 1  # one restart, for v2's id

    rows = spark.read.format("delta").load(str(tmp_path / "revenue")).collect()
    assert windows_of(rows) == expected and len(rows) == len(expected)

    entries = read_ledger(tmp_path / "a.jsonl") + read_ledger(tmp_path / "b.jsonl")
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    assert set(malformed.values()) == set(AVRO_REASON_CODES)
    assert letter_reasons(read_topic(bootstrap, dlq)) == malformed


def test_the_spine_writes_the_valid_avro_sales_exactly(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], store: SchemaStore, tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    producer = make_producer(bootstrap)
    writers = _writers(store, topic, contract_schema("sales"), {})
    events = generate_events("sales", 60, seed=43, malformed_fraction=0.2, avro=writers)
    report = publish_events(producer, topic, events, ledger=tmp_path / "ledger.jsonl")
    summary = sales_to_delta(
        spark, bootstrap_servers=bootstrap, topic=topic, delta_path=tmp_path / "sales",
        checkpoint=tmp_path / "checkpoint", value_format="avro", registry_url=store.url,
    )  # fmt: skip
    assert summary == RunSummary(read=60, written=48, rejected=12)
    ledger = read_ledger(tmp_path / "ledger.jsonl")
    as_json = {e.seq: json.loads(e.value, parse_float=Decimal) for e in generate_events("sales", 60, seed=43)}
    rows = [
        (d["sale_id"], d["order_id"], d["category"], d["amount"], d["currency"],
         parse_timestamp(d["timestamp"]).replace(tzinfo=None), e.partition, e.offset)
        for e in ledger if e.kind == "valid" for d in [as_json[e.seq]]
    ]  # fmt: skip
    assert report.produce.failed == []
    expected = spark.createDataFrame(rows, SALES_TABLE_SCHEMA)
    table = spark.read.format("delta").load(str(tmp_path / "sales"))
    assert_df_equality(table, expected, ignore_row_order=True, ignore_nullable=True)
