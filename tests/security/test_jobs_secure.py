"""The revenue and shipments jobs end to end on the secured broker, with TLS and SCRAM: events
published by the producer principal, the jobs run as the pipeline principal (the kafka source and
sink options built by `pipelines.security`), results read back by the admin and compared exactly
with the generator's ledger. Each test starts from the topics' end offsets at its start, so it
sees only its own events."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.orders_to_shipments import run_summary, start_orders_to_shipments
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.admin import end_offsets, read_range
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.monitor.progress import ProgressRecorder
from pipelines.security import KafkaSecurity
from pipelines.sinks import delta_row_count
from tests.jobs.test_orders_to_shipments import shipment_value
from tests.jobs.test_revenue_ledger import expected_windows
from tests.jobs.test_revenue_per_minute import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.spark]

Principal = Callable[[str], KafkaSecurity]


def offsets_json(topic: str, offsets: dict[int, int]) -> str:
    return json.dumps({topic: {str(p): o for p, o in offsets.items()}})


def test_revenue_job_with_tls_and_scram(
    spark: SparkSession, secure_bootstrap: str, as_principal: Principal, secure_run_dir: Path
) -> None:
    as_principal("admin")
    sales_start, dlq_start = (
        end_offsets(secure_bootstrap, "sales"),
        end_offsets(secure_bootstrap, "sales.dlq"),
    )

    as_principal("producer")
    ledger = secure_run_dir / "sales-ledger.jsonl"
    events = generate_events("sales", 600, seed=91, malformed_fraction=0.05)
    report = publish_events(make_producer(secure_bootstrap), "sales", events, ledger=ledger)
    assert report.produce.failed == []
    entries = read_ledger(ledger)
    expected = expected_windows(entries)
    # A heartbeat far ahead of the last sale makes every window final.
    beat = (max(minute for minute, _ in expected) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    produce_all(
        make_producer(secure_bootstrap),
        "sales",
        [(b"heartbeat", f'{{"heartbeat":true,"timestamp":"{beat}"}}'.encode())],
    )

    as_principal("pipeline")
    table = secure_run_dir / "revenue"
    recorder = ProgressRecorder(secure_run_dir / "revenue.progress.jsonl")
    spark.streams.addListener(recorder)
    job = start_revenue_per_minute(
        spark, bootstrap_servers=secure_bootstrap, topic="sales",
        checkpoint=secure_run_dir / "revenue-checkpoint", delta_path=table, dlq_topic="sales.dlq",
        trigger="processing-time=0 seconds",
        starting_offsets=offsets_json("sales", sales_start),
    )  # fmt: skip
    try:
        job.process_all_available()
        wait_until(
            lambda: delta_row_count(spark, table) == len(expected), job.main, f"all {len(expected)} windows"
        )
    finally:
        job.stop()
        spark.streams.removeListener(recorder)

    rows = spark.read.format("delta").load(str(table)).collect()
    got = {
        (r["window_start"].replace(tzinfo=UTC), r["category"]): (r["revenue"], r["sales_count"]) for r in rows
    }
    assert got == expected
    summary = job.summary()
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    assert (summary.read, summary.dead_lettered, summary.heartbeats) == (len(entries) + 1, len(malformed), 1)
    assert summary.reconciles and summary.late == 0

    as_principal("admin")
    letters = read_range(secure_bootstrap, "sales.dlq", dlq_start, end_offsets(secure_bootstrap, "sales.dlq"))
    assert {m.key(): dict(m.headers())["error.reason"].decode() for m in letters} == malformed
    assert (secure_run_dir / "revenue.progress.jsonl").stat().st_size > 0


def test_shipments_job_with_tls_and_scram(
    spark: SparkSession, secure_bootstrap: str, as_principal: Principal, secure_run_dir: Path
) -> None:
    as_principal("admin")
    starts = {t: end_offsets(secure_bootstrap, t) for t in ("orders", "shipments", "orders.dlq")}

    as_principal("producer")
    ledger = secure_run_dir / "orders-ledger.jsonl"
    events = generate_events("orders", 400, seed=92, malformed_fraction=0.05)
    report = publish_events(make_producer(secure_bootstrap), "orders", events, ledger=ledger)
    assert report.produce.failed == []
    entries = read_ledger(ledger)

    as_principal("pipeline")
    queries = start_orders_to_shipments(
        spark, bootstrap_servers=secure_bootstrap, source_topic="orders", sink_topic="shipments",
        checkpoint=secure_run_dir / "shipments-checkpoint", dlq_topic="orders.dlq", trigger="available-now",
        starting_offsets=offsets_json("orders", starts["orders"]),
    )  # fmt: skip
    try:
        for q in queries.values():
            q.awaitTermination()
    finally:
        queries.stop()
    summary = run_summary(queries)

    as_principal("admin")

    def read(topic: str) -> list[object]:
        return read_range(secure_bootstrap, topic, starts[topic], end_offsets(secure_bootstrap, topic))

    shipments = [(m.key(), m.value(), m.partition()) for m in read("shipments")]  # type: ignore[attr-defined]
    valid = [e for e in entries if e.kind != "malformed"]
    assert sorted(shipments) == sorted((e.key, shipment_value(e.value), e.partition) for e in valid)
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    letters = read("orders.dlq")
    assert {m.key(): dict(m.headers())["error.reason"].decode() for m in letters} == malformed  # type: ignore[attr-defined]
    assert (summary.read, summary.shipped, summary.dead_lettered) == (
        len(entries),
        len(valid),
        len(malformed),
    )


def test_spark_redacts_the_jaas_line_where_it_prints_options(
    spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydantic import SecretStr

    from pipelines.security import use_security
    from pipelines.sources import read_kafka_stream

    servers = "127.0.0.1:9"  # never contacted: explaining a plan does not connect
    use_security(servers, KafkaSecurity("SASL_PLAINTEXT", username="u", password=SecretStr("pw-9c1e5a")))
    try:
        read_kafka_stream(spark, bootstrap_servers=servers, topic="t").explain(extended=True)
    finally:
        use_security(servers, KafkaSecurity())
    plan = capsys.readouterr().out
    assert "kafka.sasl.jaas.config=*********(redacted)" in plan
    assert "pw-9c1e5a" not in plan
