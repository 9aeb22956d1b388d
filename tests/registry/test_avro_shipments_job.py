"""The Spark shipments job in Avro (`--format avro`) on the real broker and registry: orders written
by `pipelines generate orders --format avro` with every Avro malformed class become Avro shipments,
exactly-once, that confluent-kafka's AvroDeserializer reads; each bad order is dead-lettered with
the reason the generator marked it with in the ledger.

Expected values come from the ledger and from the same seed generated as JSON (the valid events of
a seed do not depend on the format), never from the code under test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyspark.sql import SparkSession

from pipelines.contracts import AVRO_REASON_CODES
from pipelines.generators.ledger import read_ledger
from pipelines.jobs.orders_to_shipments import ShipmentsRunSummary, run_summary, start_orders_to_shipments
from tests.helpers import dead_letter_headers, make_topics, pipelines, read_topic, run_to_end
from tests.registry.expected import expected_shipments

COUNT, SEED = 400, 11


def test_the_spark_shipments_job_turns_avro_orders_into_avro_shipments_exactly_once(
    spark: SparkSession,
    bootstrap: str,
    new_topic: Callable[..., str],
    registry_url: str,
    tmp_path: Path,
    avro_deserializer: AvroDeserializer,
) -> None:
    topics = make_topics(bootstrap, new_topic, partitions=3)
    ledger_path = tmp_path / "orders.jsonl"
    generated = pipelines(
        "generate", "orders", "--count", COUNT, "--seed", SEED, "--malformed-fraction", "0.2",
        "--format", "avro", "--registry-url", registry_url, "--topic", topics.source,
        "--ledger", ledger_path, bootstrap=bootstrap,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    ledger = read_ledger(ledger_path)
    bad = [e for e in ledger if e.kind == "malformed"]
    assert {e.reason for e in bad} == set(AVRO_REASON_CODES)

    group = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=topics.source, sink_topic=topics.sink,
        dlq_topic=topics.dlq, checkpoint=tmp_path / "checkpoint", max_offsets_per_trigger=150,
        guarantee="exactly-once", value_format="avro", registry_url=registry_url,
    )  # fmt: skip
    run_to_end(group)
    valid = COUNT - len(bad)
    assert run_summary(group) == ShipmentsRunSummary(read=COUNT, shipped=valid, dead_lettered=len(bad))

    context = SerializationContext(topics.sink, MessageField.VALUE)
    records = read_topic(bootstrap, topics.sink, isolation="read_committed")
    shipments = {m.key: avro_deserializer(m.value, context) for m in records}
    assert len(records) == len(shipments) == valid  # each once
    assert shipments == expected_shipments(ledger, COUNT, SEED)

    letters = read_topic(bootstrap, topics.dlq)
    got = Counter((m.key, m.value, dead_letter_headers(m)["error.reason"]) for m in letters)
    assert got == Counter((e.key, e.value, e.reason) for e in bad)
