"""The Spark Avro parser on the run's SparkSession and the real registry: every record of the
seeded Avro stream (all malformed classes, a heartbeat, a record of a later schema version) gets
the reason the generator marked it with and the Python reader gives, with the same detail; good
records the values of the same seed in JSON; a record of a schema registered after the plan fails
the query with its id; shipments Spark makes of Avro orders are read back by confluent-kafka's
AvroDeserializer, key and headers kept."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyspark.sql import SparkSession

from pipelines.contracts import AVRO_REASON_CODES, SALES
from pipelines.generators.events import AvroWriters, generate_events
from pipelines.registry.avro import AvroRejected, WireDecoder, WireEncoder, avro_record
from pipelines.registry.schemas import SCHEMA_DIR, SchemaStore, contract_schema, load_schema
from pipelines.registry.spark import new_schema_id, read_plan
from pipelines.transforms.avro import parse_avro_events
from pipelines.transforms.shipments import parse_avro_orders_with_headers, to_avro_shipments
from tests.helpers import kafka_batch

COUNT, SEED = 300, 11


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def test_spark_reads_every_version_and_gives_each_bad_record_the_generators_reason(
    spark: SparkSession, store: SchemaStore
) -> None:
    topic = f"sales-{uuid.uuid4().hex[:8]}"
    own = WireEncoder(store, topic, contract_schema("sales"))
    foreign = WireEncoder(store, f"orders-{uuid.uuid4().hex[:8]}", contract_schema("orders"))

    def as_order(doc: dict[str, object]) -> dict[str, object]:
        return {k: doc[k] for k in ("order_id", "amount", "currency", "timestamp")} | {"customer_id": "c"}

    writers = AvroWriters(
        lambda d: own.encode(avro_record(d)), lambda d: foreign.encode(avro_record(as_order(d)))
    )
    events = list(generate_events("sales", COUNT, seed=SEED, malformed_fraction=0.3, avro=writers))
    as_json = [json.loads(e.value, parse_float=Decimal) for e in generate_events("sales", COUNT, seed=SEED)]
    v2 = WireEncoder(store, topic, load_schema(SCHEMA_DIR / "evolution" / "sales-v2.avsc"))
    later = {**as_json[0], "sale_id": "sale-v2", "channel": "web"}
    beat = own.encode(avro_record({"heartbeat": True, "timestamp": "2026-11-27T10:09:00.000Z"}))
    values = [e.value for e in events] + [v2.encode(avro_record(later)), beat]

    plan = read_plan(store, contract_schema("sales"))
    assert plan.writers.keys() >= {own.schema_id, v2.schema_id} and foreign.schema_id in plan.unreadable
    rows = (
        parse_avro_events(kafka_batch(spark, topic, [(b"k", v) for v in values]), SALES, plan)
        .orderBy("offset")
        .collect()
    )
    assert {e.reason for e in events if e.kind == "malformed"} == set(AVRO_REASON_CODES)
    python = WireDecoder(store, contract_schema("sales"))
    for event, row in zip(events, rows, strict=False):
        assert row.error_reason == event.reason, event
        if event.reason is not None:
            with pytest.raises(AvroRejected) as rejected:
                python.decode(event.value)
            assert (rejected.value.reason, rejected.value.detail) == (row.error_reason, row.error_detail)
            continue
        doc = as_json[event.seq]
        assert (row.sale_id, row.order_id, row.category, row.currency) == (
            doc["sale_id"], doc["order_id"], doc["category"], doc["currency"],
        )  # fmt: skip
        assert (row.amount, row.event_time, row.is_heartbeat) == (
            Decimal(str(doc["amount"])),
            _at(doc["timestamp"]),
            False,
        )
    v2_row, beat_row = rows[-2:]
    assert (v2_row.sale_id, v2_row.error_reason, v2_row.amount) == (
        "sale-v2",
        None,
        Decimal(str(as_json[0]["amount"])),
    )
    assert (beat_row.is_heartbeat, beat_row.error_reason, beat_row.sale_id, beat_row.event_time) == (
        True, None, None, datetime(2026, 11, 27, 10, 9),
    )  # fmt: skip

    # A schema registered after the plan was read: the query fails with its id.
    newer_schema = json.loads(load_schema(SCHEMA_DIR / "evolution" / "sales-v2.avsc"))
    newer_schema[0]["fields"].append(
        {"name": f"x{uuid.uuid4().hex[:8]}", "type": ["null", "string"], "default": None}
    )
    newer = WireEncoder(store, topic, json.dumps(newer_schema))
    assert newer.schema_id > plan.newest_id
    with pytest.raises(Exception) as failed:
        rows_of = kafka_batch(spark, topic, [(b"k", newer.encode(avro_record(later)))])
        parse_avro_events(rows_of, SALES, plan).collect()
    assert new_schema_id(failed.value) == newer.schema_id


def test_shipments_written_by_spark_from_avro_orders_are_read_by_confluent_kafka(
    spark: SparkSession, store: SchemaStore, avro_deserializer: AvroDeserializer
) -> None:
    orders_topic, topic = f"orders-{uuid.uuid4().hex[:8]}", f"shipments-{uuid.uuid4().hex[:8]}"
    own = WireEncoder(store, orders_topic, contract_schema("orders"))
    writers = AvroWriters(lambda d: own.encode(avro_record(d)), lambda d: b"\x00\x00\x00\x00\x00")
    events = list(generate_events("orders", 40, seed=5, malformed_fraction=0.25, avro=writers))
    as_json = [json.loads(e.value) for e in generate_events("orders", 40, seed=5)]
    headers = [("trace", b"t-1")]
    batch = kafka_batch(spark, orders_topic, [(e.key, e.value, headers) for e in events])
    version = store.register(topic, contract_schema("shipments"))

    plan = read_plan(store, contract_schema("orders"))
    rows = to_avro_shipments(parse_avro_orders_with_headers(batch, plan), version.schema_id, version.schema)
    deserialize = avro_deserializer
    context = SerializationContext(topic, MessageField.VALUE)
    got = {
        (bytes(r.key), deserialize(bytes(r.value), context)["shipment_id"]): r.headers for r in rows.collect()
    }
    shipments = [deserialize(bytes(r.value), context) for r in rows.collect()]
    valid = [e for e in events if e.kind == "valid"]
    assert len(valid) == 30 and len(shipments) == 30
    assert sorted(shipments, key=lambda s: s["order_id"]) == [
        {
            "shipment_id": "ship-" + as_json[e.seq]["order_id"],
            "order_id": as_json[e.seq]["order_id"],
            "customer_id": as_json[e.seq]["customer_id"],
            "status": "pending",
            "created_at": datetime.fromisoformat(as_json[e.seq]["timestamp"].replace("Z", "+00:00")),
        }
        for e in sorted(valid, key=lambda e: as_json[e.seq]["order_id"])
    ]
    assert set(got) == {(e.key, "ship-" + as_json[e.seq]["order_id"]) for e in valid}
    assert all([(h.key, bytes(h.value)) for h in hs] == headers for hs in got.values())
