"""The revenue and shipments jobs end to end on the secured broker, with TLS and SCRAM: events
published by the producer principal, the jobs run as the pipeline principal (the kafka source and
sink options built by `pipelines.security`), results read back by the admin and compared exactly
with the generator's ledger. Each test starts from the topics' end offsets at its start, so it
sees only its own events."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.contracts import ORDERS_TOPIC, SALES_TOPIC, SHIPMENTS_TOPIC, dead_letter_topic
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.orders_to_shipments import run_summary, start_orders_to_shipments
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.admin import end_offsets
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.monitor.progress import ProgressRecorder
from pipelines.security import KafkaSecurity
from tests.helpers import (
    DeltaRows,
    Record,
    expected_windows,
    heartbeat_after,
    letter_reasons,
    read_topic,
    run_to_end,
    shipment_value,
    wait_until,
    windows_of,
)

Principal = Callable[[str], KafkaSecurity]
SALES_DLQ, ORDERS_DLQ = dead_letter_topic(SALES_TOPIC), dead_letter_topic(ORDERS_TOPIC)


def offsets_json(topic: str, offsets: dict[int, int]) -> str:
    return json.dumps({topic: {str(p): o for p, o in offsets.items()}})


def publish_as_producer(
    as_principal: Principal, bootstrap: str, event_type: str, topic: str, ledger: Path, count: int, seed: int
) -> list[LedgerEntry]:
    """`count` seeded events (5% malformed) published by the producer principal: the ledger."""
    as_principal("producer")
    events = generate_events(event_type, count, seed=seed, malformed_fraction=0.05)
    report = publish_events(make_producer(bootstrap), topic, events, ledger=ledger)
    assert report.produce.failed == []
    return read_ledger(ledger)


def read_new(bootstrap: str, topics: dict[str, dict[int, int]], topic: str) -> list[Record]:
    """The records of `topic` from the offsets in `topics`, read as the principal in use."""
    return read_topic(bootstrap, topic, start=topics[topic])


def test_revenue_job_with_tls_and_scram(
    spark: SparkSession, secure_bootstrap: str, as_principal: Principal, secure_run_dir: Path
) -> None:
    as_principal("admin")
    starts = {t: end_offsets(secure_bootstrap, t) for t in (SALES_TOPIC, SALES_DLQ)}

    ledger = secure_run_dir / "sales-ledger.jsonl"
    entries = publish_as_producer(as_principal, secure_bootstrap, "sales", SALES_TOPIC, ledger, 600, 91)
    expected = expected_windows(entries)
    # A heartbeat far ahead of the last sale makes every window final.
    produce_all(make_producer(secure_bootstrap), SALES_TOPIC, [heartbeat_after(expected)])

    as_principal("pipeline")
    table = secure_run_dir / "revenue"
    recorder = ProgressRecorder(secure_run_dir / "revenue.progress.jsonl")
    spark.streams.addListener(recorder)
    job = start_revenue_per_minute(
        spark, bootstrap_servers=secure_bootstrap, topic=SALES_TOPIC,
        checkpoint=secure_run_dir / "revenue-checkpoint", delta_path=table, dlq_topic=SALES_DLQ,
        trigger="processing-time=0 seconds",
        starting_offsets=offsets_json(SALES_TOPIC, starts[SALES_TOPIC]),
    )  # fmt: skip
    try:
        job.process_all_available()
        written = DeltaRows(spark, table)
        wait_until(lambda: written() == len(expected), job.main, f"all {len(expected)} windows")
    finally:
        job.stop()
        spark.streams.removeListener(recorder)

    rows = spark.read.format("delta").load(str(table)).collect()
    assert windows_of(rows) == expected
    summary = job.summary()
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    assert (summary.read, summary.dead_lettered, summary.heartbeats) == (len(entries) + 1, len(malformed), 1)
    assert summary.reconciles and summary.late == 0

    as_principal("admin")
    assert letter_reasons(read_new(secure_bootstrap, starts, SALES_DLQ)) == malformed
    assert (secure_run_dir / "revenue.progress.jsonl").stat().st_size > 0


def test_shipments_job_with_tls_and_scram(
    spark: SparkSession, secure_bootstrap: str, as_principal: Principal, secure_run_dir: Path
) -> None:
    as_principal("admin")
    starts = {t: end_offsets(secure_bootstrap, t) for t in (ORDERS_TOPIC, SHIPMENTS_TOPIC, ORDERS_DLQ)}

    ledger = secure_run_dir / "orders-ledger.jsonl"
    entries = publish_as_producer(as_principal, secure_bootstrap, "orders", ORDERS_TOPIC, ledger, 400, 92)

    as_principal("pipeline")
    queries = start_orders_to_shipments(
        spark, bootstrap_servers=secure_bootstrap, source_topic=ORDERS_TOPIC, sink_topic=SHIPMENTS_TOPIC,
        checkpoint=secure_run_dir / "shipments-checkpoint", dlq_topic=ORDERS_DLQ, trigger="available-now",
        starting_offsets=offsets_json(ORDERS_TOPIC, starts[ORDERS_TOPIC]),
    )  # fmt: skip
    run_to_end(queries)
    summary = run_summary(queries)

    as_principal("admin")
    shipments = [(r.key, r.value, r.partition) for r in read_new(secure_bootstrap, starts, SHIPMENTS_TOPIC)]
    valid = [e for e in entries if e.kind != "malformed"]
    assert sorted(shipments) == sorted((e.key, shipment_value(e.value), e.partition) for e in valid)
    malformed = {e.key: e.reason for e in entries if e.kind == "malformed"}
    assert letter_reasons(read_new(secure_bootstrap, starts, ORDERS_DLQ)) == malformed
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
