"""Orders -> shipments on batch DataFrames shaped like the kafka source's output with headers:
every valid order becomes exactly its shipment (key and headers untouched, created_at the same
text), every bad one is no shipment and becomes a dead letter with its reason."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from pipelines.contracts import HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE_TOPIC
from pipelines.generators.events import generate_events
from pipelines.spark import INTERPRETED, query_conf
from pipelines.transforms.dead_letters import to_dead_letters
from pipelines.transforms.orders import parse_orders
from pipelines.transforms.parsing import filter_bad_records
from pipelines.transforms.shipments import (
    parse_orders_with_headers,
    route_orders,
    shipment_json,
    to_shipments,
)
from tests.helpers import KAFKA_HEADERS, kafka_batch

SHIPMENT_ROWS = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", StringType()),
        StructField("headers", KAFKA_HEADERS),
    ]
)

Headers = list[tuple[str, bytes | None]] | None


def order(
    order_id: str, customer_id: str = "cust-00001", timestamp: str = "2026-11-27T10:00:00.123Z"
) -> bytes:
    return json.dumps(
        {"order_id": order_id, "customer_id": customer_id, "amount": 12.5, "currency": "EUR",
         "timestamp": timestamp}, ensure_ascii=False,
    ).encode()  # fmt: skip


def shipment(order_id: str, customer_id: str, created_at: str) -> str:
    """The expected value, written out independently of the code under test."""
    return json.dumps(
        {"shipment_id": f"ship-{order_id}", "order_id": order_id, "customer_id": customer_id,
         "status": "pending", "created_at": created_at},
        separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip


TRACE: Headers = [("trace-id", b"abc-1"), ("source", b"web"), ("empty", None)]

# (key, value, headers) of valid orders
GOOD: list[tuple[bytes | None, bytes, Headers]] = [
    (b"o-1", order("o-1"), TRACE),
    (b"o-2", order("o-2", "cust-00002", "2026-11-27T23:59:59.999Z"), None),
    (b"o-3", order("o-3", 'Zoë & "co"'), []),  # non-ASCII and quotes survive the JSON round trip
    (None, order("o-4", timestamp="2026-11-27T10:00:00.000Z"), None),  # a null key stays null
    # The canonical shape (no spaces, contract order): the parser's fast path, read off the text.
    (b"o-5", b'{"order_id":"o-5","customer_id":"cust-00005","amount":3.1,"currency":"EUR",'
     b'"timestamp":"2026-11-27T10:00:00.456Z"}', TRACE),
]  # fmt: skip
EXPECTED = [
    (b"o-1", shipment("o-1", "cust-00001", "2026-11-27T10:00:00.123Z"), TRACE),
    (b"o-2", shipment("o-2", "cust-00002", "2026-11-27T23:59:59.999Z"), None),
    (b"o-3", shipment("o-3", 'Zoë & "co"', "2026-11-27T10:00:00.123Z"), []),
    (None, shipment("o-4", "cust-00001", "2026-11-27T10:00:00.000Z"), None),
    (b"o-5", shipment("o-5", "cust-00005", "2026-11-27T10:00:00.456Z"), TRACE),
]
BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"b-1", None, "empty_value"),
    (b"b-2", b"\xff\xfegarbage", "invalid_utf8"),
    (b"b-3", b"{not json", "invalid_json"),
    (b"b-4", b'{"order_id":"b-4","customer_id":"c","currency":"EUR","timestamp":"2026-11-27T10:00:00.000Z"}',
     "missing_field:amount"),
    (b"b-5", b'{"order_id":"b-5","customer_id":null,"amount":1,"currency":"EUR",'
     b'"timestamp":"2026-11-27T10:00:00.000Z"}', "missing_field:customer_id"),
    (b"b-6", b'{"order_id":6,"customer_id":"c","amount":1,"currency":"EUR",'
     b'"timestamp":"2026-11-27T10:00:00.000Z"}', "bad_type:order_id"),
    (b"b-7", order("b-7", timestamp="2026-11-27 10:00:00"), "bad_timestamp"),
    (b"b-8", b'{"order_id":"b-8","customer_id":"c","amount":-0.01,"currency":"EUR",'
     b'"timestamp":"2026-11-27T10:00:00.000Z"}', "negative_amount"),
]  # fmt: skip


@pytest.fixture
def kafka_df(spark: SparkSession) -> DataFrame:
    return kafka_batch(spark, "orders", [*GOOD, *((k, v, [("trace-id", b"bad")]) for k, v, _ in BAD)])


def test_valid_orders_become_exactly_their_shipments(spark: SparkSession, kafka_df: DataFrame) -> None:
    actual = kafka_df.transform(parse_orders_with_headers).transform(to_shipments)
    expected = spark.createDataFrame(EXPECTED, schema=SHIPMENT_ROWS)
    assert actual.columns == ["key", "value", "headers"]  # exactly what the kafka sink takes
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_headers_ride_through_the_shared_parser(kafka_df: DataFrame) -> None:
    with_headers = kafka_df.transform(parse_orders_with_headers)
    without = kafka_df.drop("headers").transform(parse_orders)
    assert with_headers.columns == [*without.columns[:5], "headers", *without.columns[5:], "timestamp_text"]
    # Apart from the headers and the timestamp's text, every column is what the shared parser gives.
    assert_df_equality(with_headers.drop("headers", "timestamp_text"), without, ignore_row_order=True)
    texts = {r["offset"]: r["timestamp_text"] for r in with_headers.collect()}
    assert texts == {
        **{i: json.loads(v)["timestamp"] for i, (_k, v, _h) in enumerate(GOOD)},
        **{len(GOOD) + i: None for i in range(len(BAD))},
    }
    got = {r["offset"]: r["headers"] for r in with_headers.select("offset", "headers").collect()}
    assert got[0] == [(k, v) for k, v in TRACE or []]
    assert (got[1], got[2]) == (None, [])


def test_bad_orders_are_no_shipments_and_become_dead_letters_with_reasons(kafka_df: DataFrame) -> None:
    parsed = kafka_df.transform(parse_orders_with_headers)
    shipped = {r["key"] for r in parsed.transform(to_shipments).collect()}
    assert shipped.isdisjoint({k for k, _, _ in BAD})
    letters = parsed.transform(filter_bad_records).transform(to_dead_letters)
    assert letters.columns == ["key", "value", "headers"]
    got = {}
    for r in letters.collect():
        headers = {h["key"]: bytes(h["value"]).decode() for h in r["headers"]}
        got[bytes(r["key"])] = (None if r["value"] is None else bytes(r["value"]), headers[HEADER_REASON])
        assert headers[HEADER_SOURCE_TOPIC] == "orders" and headers[HEADER_DETAIL]
    assert got == {k: (v, reason) for k, v, reason in BAD}


def test_interpreted_projections_route_every_order_as_generated_code_does(
    spark: SparkSession, kafka_df: DataFrame
) -> None:
    # The job's micro-batches evaluate the parser interpreted (pipelines.spark.INTERPRETED); the
    # exact rows of the tests above are checked with Spark's generated code.
    events = generate_events("orders", 300, seed=11, malformed_fraction=0.1)
    generated = [(e.key, e.value, TRACE) for e in events]
    records = kafka_df.unionByName(kafka_batch(spark, "orders", generated))

    def routed() -> DataFrame:
        parsed = records.transform(parse_orders_with_headers)
        return route_orders(parsed, shipment_json(), sink_topic="shipments", dlq_topic="orders.dlq")

    before = {key: spark.conf.get(key) for key in INTERPRETED}
    with query_conf(spark, INTERPRETED):
        interpreted = routed()
        plan = interpreted._jdf.queryExecution().executedPlan().toString()
        rows = interpreted.collect()
    assert {key: spark.conf.get(key) for key in INTERPRETED} == before
    compiled = routed()
    whole_stage = re.compile(r"\*\(\d+\) ")  # `*(1) Project` in a plan: whole-stage generated code
    assert whole_stage.search(compiled._jdf.queryExecution().executedPlan().toString())
    assert not whole_stage.search(plan)
    assert len(rows) == len(GOOD) + len(BAD) + 300
    assert_df_equality(spark.createDataFrame(rows, compiled.schema), compiled, ignore_row_order=True)


def test_orders_without_their_headers_column_are_refused(spark: SparkSession, kafka_df: DataFrame) -> None:
    with pytest.raises(ValueError, match="includeHeaders=true"):
        kafka_df.drop("headers").transform(parse_orders_with_headers)


def test_one_query_routes_each_order_to_its_shipment_or_its_dead_letter(
    spark: SparkSession, kafka_df: DataFrame
) -> None:
    # The job writes shipments and dead letters from one query: each row names its topic.
    routed = kafka_df.transform(parse_orders_with_headers).transform(
        lambda df: route_orders(df, shipment_json(), sink_topic="shipments", dlq_topic="orders.dlq")
    )
    assert routed.columns == ["topic", "key", "value", "headers", "source_partition"]
    assert routed.count() == len(GOOD) + len(BAD)
    # Every row names the Kafka partition its order came from (the exactly-once writer's slot):
    # here the orders are spread over partitions 0, 1 and 2 by their offset.
    spread = kafka_df.withColumn("partition", (kafka_df["offset"] % 3).cast("int"))
    slots = Counter(
        (None if r.key is None else bytes(r.key), r.source_partition)
        for r in spread.transform(parse_orders_with_headers)
        .transform(lambda df: route_orders(df, shipment_json(), sink_topic="s", dlq_topic="d"))
        .collect()
    )
    assert slots == Counter((record[0], offset % 3) for offset, record in enumerate([*GOOD, *BAD]))
    shipped = routed.filter(routed.topic == "shipments").drop("topic", "source_partition")
    expected = spark.createDataFrame(EXPECTED, schema=SHIPMENT_ROWS)
    assert_df_equality(
        shipped.selectExpr("key", "cast(value as string) value", "headers"),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    got = {}
    for r in routed.filter(routed.topic == "orders.dlq").collect():
        headers = {h["key"]: bytes(h["value"]).decode() for h in r["headers"]}
        got[bytes(r["key"])] = (None if r["value"] is None else bytes(r["value"]), headers[HEADER_REASON])
        assert headers[HEADER_SOURCE_TOPIC] == "orders" and headers[HEADER_DETAIL]
    assert got == {k: (v, reason) for k, v, reason in BAD}
