"""Records that name a positive schema id this registry does not have (written with another
registry's ids) on the real broker, registry and the run's SparkSession.

What docs/schemas.md promises: such an id is newer than the job's plan, so the revenue job's queries
fail once on it and start again from their checkpoints with a plan that knows it as unknown; its
records are then dead-lettered as `avro_unknown_schema_id`, each once, and nothing else is lost or
counted twice. A schema registered later (whose id is smaller than the foreign one) still starts the
queries again and its records are read. A job started again on the same checkpoint does not read
the records it already dead-lettered, and a new record of the foreign id costs it one restart too.
The spine starts its query again the same way instead of failing at every start.

Expected values are the same seeds' JSON events in plain Python (the valid events of a seed do not
depend on the format) and the records the test wrote with the foreign id."""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.generators.common import DEFAULT_START, format_timestamp
from pipelines.generators.events import AvroWriters, GeneratedEvent, generate_events
from pipelines.jobs.revenue_per_minute import RevenueJob, start_revenue_per_minute
from pipelines.jobs.sales_to_delta import RunSummary, sales_to_delta
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.registry.avro import WireEncoder, avro_record
from pipelines.registry.jobs import AvroPlans, RenewingRun
from pipelines.registry.schemas import SCHEMA_DIR, SchemaStore, contract_schema, load_schema
from tests.helpers import DeltaRows, dead_letter_headers, expected_windows, read_topic, topic_size, windows_of

FOREIGN_ID = 900_001
"""A positive schema id of another registry: far above any id the run's registry assigns."""


def _foreign(good: bytes) -> bytes:
    """A good wire-format value, behind FOREIGN_ID instead of its own schema id."""
    return good[:1] + struct.pack(">i", FOREIGN_ID) + good[5:]


def _sales(
    encode: Callable[[dict[str, object]], bytes], count: int, seed: int, start: datetime
) -> list[bytes]:
    writers = AvroWriters(encode, lambda _: b"")
    return [e.value for e in generate_events("sales", count, seed=seed, start=start, avro=writers)]


def _json(count: int, seed: int, start: datetime) -> list[GeneratedEvent]:
    return list(generate_events("sales", count, seed=seed, start=start))


def _keys(events: Iterable[GeneratedEvent]) -> list[bytes]:
    return [e.key for e in events]


def _v2(store: SchemaStore, topic: str) -> WireEncoder:
    """Sales v2 (an optional `channel`) with one more optional field of its own, so that the
    registry gives it an id no other test's schema has."""
    doc = json.loads(load_schema(SCHEMA_DIR / "evolution" / "sales-v2.avsc"))
    doc[0]["fields"].append({"name": f"x{uuid.uuid4().hex[:8]}", "type": ["null", "string"], "default": None})
    return WireEncoder(store, topic, json.dumps(doc))


def test_a_foreign_id_costs_one_restart_per_run_is_dead_lettered_once_and_later_schemas_still_restart(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], store: SchemaStore, tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    dlq = topic + ".dlq"
    create_topic(bootstrap, dlq, partitions=1)
    producer = make_producer(bootstrap)
    v1 = WireEncoder(store, topic, contract_schema("sales"))

    def encode_v1(d: dict[str, object]) -> bytes:
        return v1.encode(avro_record(d))

    assert store.schema_by_id(FOREIGN_ID) is None
    stray = _sales(encode_v1, 5, 69, DEFAULT_START)  # payloads for the records of the foreign id

    # Part A: 300 v1 sales with three records of the foreign id among them.
    a_start, b_start = DEFAULT_START, DEFAULT_START + timedelta(minutes=2)
    c_start = DEFAULT_START + timedelta(minutes=30)
    a_values, a_keys = _sales(encode_v1, 300, 61, a_start), _keys(_json(300, 61, a_start))
    foreign_a = [(f"foreign-{n}".encode(), _foreign(stray[n])) for n in range(3)]
    records = list(zip(a_keys, a_values, strict=True))
    produce_all(
        producer, topic, [*records[:100], foreign_a[0], *records[100:200], *foreign_a[1:], *records[200:]]
    )

    plans = AvroPlans(store, contract_schema("sales"))  # the job starts: its plan knows v1
    assert plans.plan is not None and plans.plan.newest_id < FOREIGN_ID
    first_plan_newest = plans.plan.newest_id
    checkpoint, table = tmp_path / "checkpoint", tmp_path / "revenue"

    def start(p: AvroPlans) -> RevenueJob:
        return start_revenue_per_minute(
            spark, bootstrap_servers=bootstrap, topic=topic, checkpoint=checkpoint, delta_path=table,
            dlq_topic=dlq, trigger="processing-time=0 seconds", value_format="avro", avro_plan=p.plan,
        )  # fmt: skip

    def running(run: RenewingRun[RevenueJob]) -> tuple[threading.Thread, list[BaseException]]:
        failures: list[BaseException] = []

        def body() -> None:
            try:
                run.run()
            except BaseException as exc:  # reported by the test thread
                failures.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread, failures

    def wait(
        what: str, done: Callable[[], bool], thread: threading.Thread, failures: list[BaseException]
    ) -> None:
        deadline = time.monotonic() + 180
        while not done():
            assert not failures and time.monotonic() < deadline, failures or f"{what} not within 180 s"
            thread.join(0.5)  # paces the checks on the run's thread, which ends only on a failure

    run = RenewingRun(plans, start)
    thread, failures = running(run)
    try:
        wait("the foreign records dead-lettered", lambda: topic_size(bootstrap, dlq) >= 3, thread, failures)
        assert len(run.groups) == 2 and plans.seen == {FOREIGN_ID}  # one restart, for the foreign id
        assert plans.plan is not None and plans.plan.unknown == {FOREIGN_ID}
        assert plans.plan.newest_id < FOREIGN_ID  # still this registry's newest: later ids restart

        # Part B: a version registered while the queries run, whose id is below the foreign one.
        v2 = _v2(store, topic)
        assert first_plan_newest < v2.schema_id < FOREIGN_ID
        b_values = _sales(lambda d: v2.encode(avro_record({**d, "channel": "web"})), 300, 62, b_start)
        b_keys = _keys(_json(300, 62, b_start))
        expected = expected_windows([*_json(300, 61, a_start), *_json(300, 62, b_start)])
        beat_at = max(minute for minute, _ in expected) + timedelta(minutes=15)
        beat = v2.encode(avro_record({"heartbeat": True, "timestamp": format_timestamp(beat_at)}))
        produce_all(producer, topic, [*zip(b_keys, b_values, strict=True), (b"heartbeat", beat)])
        written = DeltaRows(spark, table)
        wait("parts A and B in the table", lambda: written() >= len(expected), thread, failures)
    finally:
        run.stop()
        thread.join(60)
    assert not failures, failures
    assert len(run.groups) == 3 and plans.seen == {FOREIGN_ID, v2.schema_id}  # one restart each
    rows = spark.read.format("delta").load(str(table)).collect()
    assert windows_of(rows) == expected and len(rows) == len(expected)  # v2 read, nothing twice

    # The job started again (a new process: a new plan) on the same checkpoint, with part C and two
    # more records of the foreign id: one restart again, and the first three are not read again.
    foreign_c = [(f"foreign-{n}".encode(), _foreign(stray[n])) for n in (3, 4)]
    c_values, c_keys = _sales(encode_v1, 100, 63, c_start), _keys(_json(100, 63, c_start))
    c_records = list(zip(c_keys, c_values, strict=True))
    expected = expected_windows(
        [*_json(300, 61, a_start), *_json(300, 62, b_start), *_json(100, 63, c_start)]
    )
    beat_at = max(minute for minute, _ in expected) + timedelta(minutes=15)
    beat = v1.encode(avro_record({"heartbeat": True, "timestamp": format_timestamp(beat_at)}))
    produce_all(
        producer, topic, [*c_records[:50], foreign_c[0], *c_records[50:], foreign_c[1], (b"heartbeat", beat)]
    )
    again = AvroPlans(store, contract_schema("sales"))
    assert again.plan is not None and FOREIGN_ID not in again.plan.unknown
    rerun = RenewingRun(again, start)
    thread, failures = running(rerun)
    try:
        wait("part C in the table", lambda: written() >= len(expected), thread, failures)
        # The dead letters come from their own query, which may finish after the table's.
        wait(
            "part C's foreign records dead-lettered",
            lambda: topic_size(bootstrap, dlq) >= 5,
            thread,
            failures,
        )
    finally:
        rerun.stop()
        thread.join(60)
    assert not failures, failures
    assert len(rerun.groups) == 2 and again.seen == {FOREIGN_ID}
    rows = spark.read.format("delta").load(str(table)).collect()
    assert windows_of(rows) == expected and len(rows) == len(expected)

    # Every record of the foreign id dead-lettered once, with its reason and detail; nothing else.
    letters = read_topic(bootstrap, dlq)
    assert sorted((m.key, m.value) for m in letters) == sorted([*foreign_a, *foreign_c])
    for letter in letters:
        headers = dead_letter_headers(letter)
        assert headers["error.reason"] == "avro_unknown_schema_id"
        assert headers["error.detail"] == f"schema id {FOREIGN_ID} is not registered"


def test_the_spine_rejects_a_foreign_id_instead_of_failing_at_every_start(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], store: SchemaStore, tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    producer = make_producer(bootstrap)
    v1 = WireEncoder(store, topic, contract_schema("sales"))

    def encode(d: dict[str, object]) -> bytes:
        return v1.encode(avro_record(d))

    stray = _sales(encode, 3, 69, DEFAULT_START)
    later = DEFAULT_START + timedelta(minutes=5)
    first, second = _json(40, 64, DEFAULT_START), _json(20, 65, later)
    one = list(zip(_keys(first), _sales(encode, 40, 64, DEFAULT_START), strict=True))
    two = list(zip(_keys(second), _sales(encode, 20, 65, later), strict=True))

    def run() -> RunSummary:
        return sales_to_delta(
            spark, bootstrap_servers=bootstrap, topic=topic, delta_path=tmp_path / "sales",
            checkpoint=tmp_path / "checkpoint", value_format="avro", registry_url=store.url,
        )  # fmt: skip

    produce_all(
        producer, topic, [*one[:20], (b"f0", _foreign(stray[0])), *one[20:], (b"f1", _foreign(stray[1]))]
    )
    assert run() == RunSummary(read=42, written=40, rejected=2)
    # Started again on the same checkpoint, with more sales and one more record of the foreign id.
    produce_all(producer, topic, [*two[:10], (b"f2", _foreign(stray[2])), *two[10:]])
    assert run() == RunSummary(read=21, written=20, rejected=1)

    table = spark.read.format("delta").load(str(tmp_path / "sales")).collect()
    expected = {
        (d["sale_id"], d["amount"])
        for e in [*first, *second]
        for d in [json.loads(e.value, parse_float=Decimal)]
    }
    assert len(table) == 60 and {(r.sale_id, r.amount) for r in table} == expected
