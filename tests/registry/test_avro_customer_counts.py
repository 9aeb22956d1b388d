"""The per-customer counts job in Avro (`customer_order_counts --format avro`) on the real broker,
registry and the run's SparkSession: orders written by `pipelines generate orders --format avro`
with every Avro malformed class and some late ones are counted per customer exactly, in the Delta
table, the compacted topic and the state store; each bad order is dead-lettered with the reason the
generator marked it with. Started again on the same checkpoint, with orders written with a later
version of the schema, the counts continue from the state.

The job runs as its command line sets it up (`parse_args`, then the run `main` does inside
`runner.run_job`, on the run's session). Expected values come from the ledger and from the same
seeds generated as JSON (the valid and late events of a seed do not depend on the format)."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.config import Settings
from pipelines.contracts import AVRO_REASON_CODES
from pipelines.generators.common import DEFAULT_START
from pipelines.generators.events import AvroWriters, generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.customer_order_counts import parse_args, read_customer_state, run_from_args
from pipelines.kafka.producer import make_producer
from pipelines.registry.avro import WireEncoder, avro_record
from pipelines.registry.schemas import SchemaStore, contract_schema
from tests.helpers import dead_letter_headers, make_topics, pipelines, read_topic

COUNT, SEED = 400, 23
Counts = dict[str, tuple[int, Decimal]]


def counts_of(orders: Iterable[tuple[str, Decimal]]) -> Counts:
    """(customer, amount) of every order that counts -> orders and amount per customer."""
    n: Counter[str] = Counter()
    total: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for customer, amount in orders:
        n[customer] += 1
        total[customer] += amount
    return {c: (n[c], total[c]) for c in n}


def json_orders(count: int, seed: int, start: datetime = DEFAULT_START) -> list[tuple[str, Decimal]]:
    """(customer, amount) of each order of the seed's clean run in JSON."""
    docs = [
        json.loads(e.value, parse_float=Decimal)
        for e in generate_events("orders", count, seed=seed, start=start)
    ]
    return [(d["customer_id"], d["amount"]) for d in docs]


def test_avro_orders_are_counted_per_customer_exactly_and_bad_ones_dead_lettered(
    spark: SparkSession,
    bootstrap: str,
    new_topic: Callable[..., str],
    registry_url: str,
    store: SchemaStore,
    settings: Settings,
    tmp_path: Path,
) -> None:
    topics = make_topics(bootstrap, new_topic, partitions=3)
    out = new_topic(partitions=3, **{"cleanup.policy": "compact"})
    ledger_path = tmp_path / "orders.jsonl"
    generated = pipelines(
        "generate", "orders", "--count", COUNT, "--seed", SEED, "--malformed-fraction", "0.2",
        "--late-fraction", "0.05", "--format", "avro", "--registry-url", registry_url,
        "--topic", topics.source, "--ledger", ledger_path, bootstrap=bootstrap,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    ledger = read_ledger(ledger_path)
    assert Counter(e.kind for e in ledger) == {"valid": 300, "late": 20, "malformed": 80}
    bad = [e for e in ledger if e.kind == "malformed"]
    assert {e.reason for e in bad} == set(AVRO_REASON_CODES)
    clean = json_orders(COUNT, SEED)  # event n of the faulty run is event n of the clean run, but late
    counted = [clean[e.seq] for e in ledger if e.kind != "malformed"]  # a late order counts too
    first = counts_of(counted)

    argv = [
        "--bootstrap-servers", bootstrap, "--checkpoint", str(tmp_path / "checkpoint"),
        "--source-topic", topics.source, "--dlq-topic", topics.dlq, "--sink", "both", "--sink-topic", out,
        "--delta-path", str(tmp_path / "counts"), "--format", "avro", "--registry-url", registry_url,
    ]  # fmt: skip

    def run_job() -> dict[str, object]:
        summary, status = run_from_args(parse_args(argv), settings, spark, {})
        assert status == 0
        return summary

    assert run_job()["read"] == COUNT
    assert state_of(spark, tmp_path / "checkpoint" / "kafka") == first
    letters = read_topic(bootstrap, topics.dlq)
    got = Counter((m.key, m.value, dead_letter_headers(m)["error.reason"]) for m in letters)
    assert got == Counter((e.key, e.value, e.reason) for e in bad)

    # Started again on the same checkpoint: 100 more orders, written with a later version of the
    # orders schema (one more optional field), which the contract's schema reads.
    v2_doc = json.loads(contract_schema("orders"))
    v2_doc["fields"].append({"name": f"x{uuid.uuid4().hex[:8]}", "type": ["null", "string"], "default": None})
    v2 = WireEncoder(store, topics.source, json.dumps(v2_doc))
    start = DEFAULT_START.replace(hour=11)
    writers = AvroWriters(lambda d: v2.encode(avro_record(d)), lambda _: b"")
    more = generate_events("orders", 100, seed=SEED + 1, start=start, avro=writers)
    report = publish_events(make_producer(bootstrap), topics.source, more)
    assert report.produce.acknowledged == 100
    expected = counts_of([*counted, *json_orders(100, SEED + 1, start)])
    assert expected != first
    assert run_job()["read"] == 100

    table = spark.read.format("delta").load(str(tmp_path / "counts")).collect()
    assert {r["customer_id"]: (r["order_count"], r["total_amount"]) for r in table} == expected
    assert latest_per_key(bootstrap, out) == expected
    assert state_of(spark, tmp_path / "checkpoint" / "merge") == expected
    assert len(read_topic(bootstrap, topics.dlq)) == len(bad)  # nothing more dead-lettered


def state_of(spark: SparkSession, query_checkpoint: Path) -> Counts:
    rows = read_customer_state(spark, query_checkpoint).collect()
    return {r["customer_id"]: (r["order_count"], r["total_amount"]) for r in rows}


def latest_per_key(bootstrap: str, topic: str) -> Counts:
    """The compacted topic's latest record per customer (the counts stay JSON in Avro)."""
    latest: Counts = {}
    for record in sorted(read_topic(bootstrap, topic), key=lambda r: (r.partition, r.offset)):
        doc = json.loads(record.value or b"", parse_float=Decimal)
        assert record.key is not None and record.key.decode() == doc["customer_id"]
        latest[doc["customer_id"]] = (doc["order_count"], Decimal(doc["total_amount"]))
    return latest
