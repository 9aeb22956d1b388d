"""Avro on the real broker and registry, in Python: `pipelines generate orders --format avro` with
every Avro malformed class, the processor in Avro (exactly-once) turning the orders into shipments
that confluent-kafka's AvroDeserializer reads, and every bad order dead-lettered with the reason
the generator marked it with in the ledger.

Expected values come from the ledger and from the same seed generated as JSON (the valid events of
a seed do not depend on the format), never from the code under test."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipelines.contracts import AVRO_REASON_CODES
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.processor.avro import AvroShipments
from pipelines.processor.processor import Guarantee, Processor, ProcessorConfig
from tests.helpers import dead_letter_headers, make_topics, pipelines, read_topic
from tests.registry.expected import expected_shipments

COUNT, SEED = 400, 7


def test_avro_orders_become_avro_shipments_and_each_bad_one_is_dead_lettered_with_its_reason(
    bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    registry_url: str,
    tmp_path: Path,
    avro_deserializer: AvroDeserializer,
) -> None:
    topics = make_topics(bootstrap, new_topic)
    ledger_path = tmp_path / "orders.jsonl"
    generated = pipelines(
        "generate", "orders", "--count", COUNT, "--seed", SEED, "--malformed-fraction", "0.25",
        "--format", "avro", "--registry-url", registry_url, "--topic", topics.source,
        "--ledger", ledger_path, bootstrap=bootstrap,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    ledger = read_ledger(ledger_path)
    assert Counter(e.kind for e in ledger) == {"valid": 300, "malformed": 100}
    assert {e.reason for e in ledger if e.kind == "malformed"} == set(AVRO_REASON_CODES)

    config = ProcessorConfig(
        bootstrap,
        Guarantee.EXACTLY_ONCE,
        topics.source,
        topics.sink,
        group_id,
        batch_size=150,
        transform=AvroShipments(registry_url, topics.sink),
    )
    with Processor(config) as processor:
        result = processor.run(max_records=COUNT, idle_timeout_s=30)
    assert (result.stats.consumed, result.stats.shipped, result.stats.dead_lettered) == (COUNT, 300, 100)

    deserialize = avro_deserializer
    context = SerializationContext(topics.sink, MessageField.VALUE)
    shipments = {
        m.key: deserialize(m.value, context)
        for m in read_topic(bootstrap, topics.sink, isolation="read_committed")
    }
    # The valid events of the seed are those of the JSON run, at the same positions.
    assert shipments == expected_shipments(ledger, COUNT, SEED)

    letters = read_topic(bootstrap, topics.dlq)
    got = Counter((m.key, m.value, dead_letter_headers(m)["error.reason"]) for m in letters)
    assert got == Counter((e.key, e.value, e.reason) for e in ledger if e.kind == "malformed")


def test_avro_amounts_are_exact_decimals_and_a_refused_schema_stops_the_generator_in_one_line(
    bootstrap: str,
    new_topic: Callable[..., str],
    registry_url: str,
    tmp_path: Path,
    avro_deserializer: AvroDeserializer,
) -> None:
    topic = new_topic(partitions=1)
    v3 = Path("pipelines/contracts/avro/evolution/sales-v3-incompatible.avsc").resolve()
    ok = pipelines(
        "generate", "sales", "--count", 5, "--format", "avro", "--registry-url", registry_url,
        "--topic", topic, "--ledger", tmp_path / "l.jsonl", "--heartbeat", 60, bootstrap=bootstrap,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    deserialize = avro_deserializer
    context = SerializationContext(topic, MessageField.VALUE)
    records = [deserialize(m.value, context) for m in read_topic(bootstrap, topic)]
    as_json = [json.loads(e.value) for e in generate_events("sales", 5, seed=42)]
    assert [r["amount"] for r in records[:5]] == [Decimal(str(d["amount"])) for d in as_json]
    assert all(r["amount"].as_tuple().exponent == -2 for r in records[:5])
    assert records[5] == {"heartbeat": True, "timestamp": records[5]["timestamp"]}

    refused = pipelines(
        "generate", "sales", "--count", 5, "--format", "avro", "--registry-url", registry_url,
        "--topic", topic, "--schema", v3, bootstrap=bootstrap,
    )  # fmt: skip
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        f"error: the registry refused this schema for {topic}-value: it is not BACKWARD compatible"
    )
    assert len(read_topic(bootstrap, topic)) == 6  # nothing more was sent
