"""The parser's fast path (one regex over the document's schema for records of the contract's
shape) gives exactly the reason codes of the field-by-field checks, on every kind of record the
generators make and on edge cases of the shape itself."""

from __future__ import annotations

import re

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructField, StructType

from pipelines.contracts import ORDERS, SALES, EventSpec
from pipelines.generators.events import generate_events
from pipelines.transforms import parsing
from pipelines.transforms.parsing import canonical_pattern, good_shape_pattern, parse_events

TS = '"2026-11-27T10:00:00.000Z"'


def _sale(amount: str = "1.00", currency: str = '"EUR"', timestamp: str = TS, extra: str = "") -> bytes:
    head = '{"sale_id":"s","order_id":"o","category":"c",'
    return f'{head}"amount":{amount},"currency":{currency},"timestamp":{timestamp}{extra}}}'.encode()


EDGE_SALES = [
    _sale("12"),  # an integer amount
    b'{"timestamp":'
    + TS.encode()
    + b',"amount":1.5,"currency":"EUR","category":"c","order_id":"o","sale_id":"s"}',
    _sale("1e300"),  # a double that does not fit DECIMAL(12,2)
    _sale("12345678901.00"),  # too many digits for DECIMAL(12,2)
    _sale("1.234"),  # three decimals
    _sale("-0.01"),
    _sale(timestamp='"2026-11-27 10:00:00"'),
    _sale().replace(b'"EUR"', b'"\x80"'),  # cp1252 euro: not UTF-8
    _sale(extra=',"x":1'),  # an extra field: the field-by-field path
    _sale(currency="null"),
    _sale(extra=',"heartbeat":true'),
    b'{"heartbeat":true,"timestamp":' + TS.encode() + b"}",
    b'["not", "an", "object"]',
    b"",
]


def _reasons(
    spark: SparkSession, spec: EventSpec, values: list[bytes]
) -> list[tuple[str | None, str | None]]:
    df = spark.createDataFrame([(v,) for v in values], StructType([StructField("value", BinaryType())]))
    text = F.col("value").cast("string")
    doc = F.try_parse_json(text)
    amount = F.try_variant_get(doc, "$.amount", "decimal(12,2)")
    event_time = parsing.parse_timestamp(F.variant_get(doc, "$.timestamp", "string"))
    heartbeat = F.try_variant_get(doc, "$.heartbeat", "boolean") if spec.heartbeats else F.lit(False)
    hb = F.coalesce(heartbeat, F.lit(False))
    args = (spec, text, doc, amount, event_time, hb)
    rows = df.select(
        parsing._error_reason(*args).alias("fast"), parsing._error_reason_per_field(*args).alias("full")
    ).collect()
    return [(r["fast"], r["full"]) for r in rows]


@pytest.mark.parametrize("spec", [SALES, ORDERS], ids=["sales", "orders"])
def test_fast_path_gives_the_field_by_field_reasons(spark: SparkSession, spec: EventSpec) -> None:
    event_type = "sales" if spec is SALES else "orders"
    values = [e.value for e in generate_events(event_type, 3000, seed=11, malformed_fraction=0.5)]
    values += EDGE_SALES
    pairs = _reasons(spark, spec, values)
    differing = [(v, fast, full) for v, (fast, full) in zip(values, pairs, strict=True) if fast != full]
    assert differing == []
    # The generated mix covers good records and every reason family, so both paths were exercised.
    assert {full for _, full in pairs} >= {None, "invalid_json", "invalid_utf8", "negative_amount"}


def test_good_shape_pattern_lists_the_fields_sorted() -> None:
    pattern = good_shape_pattern(ORDERS)
    schema = (
        "OBJECT<amount: DECIMAL(4,2), currency: STRING, customer_id: STRING, order_id: STRING, "
        "timestamp: STRING>"
    )
    assert re.match(pattern, schema)
    assert not re.match(pattern, schema.replace("DECIMAL(4,2)", "DECIMAL(5,3)"))
    assert not re.match(pattern, schema.replace("timestamp: STRING", "timestamp: VOID"))


CANONICAL_EDGES = [
    _sale("0"),
    _sale("0.5"),
    _sale("9999999999.99"),  # the largest DECIMAL(12,2)
    _sale("10000000000.00"),  # one digit more: not canonical, and too big for the contract
    _sale("007"),  # not JSON
    _sale(timestamp='"2026-13-40T10:00:00.000Z"'),  # canonical shape, not a real instant
    _sale(currency='""'),  # an empty string is a string
    _sale(currency='"E\\u0055R"'),  # an escape: the VARIANT path
    _sale(currency='"EUR "'),
    _sale().replace(b'"amount"', b' "amount"'),  # a space: the VARIANT path
    _sale() + b"\n",  # a line break after the object: the VARIANT path (valid)
    _sale() + "\u2028".encode(),  # U+2028 is no JSON whitespace: invalid_json on both paths
    _sale(currency='"' + "E" * 20_000_001 + '"'),  # longer than the JSON parser takes: invalid_json
]


@pytest.mark.parametrize("spec", [SALES, ORDERS], ids=["sales", "orders"])
def test_canonical_fast_path_gives_the_same_rows_as_the_variant_parse(
    spark: SparkSession, spec: EventSpec
) -> None:
    event_type = "sales" if spec is SALES else "orders"
    events = list(generate_events(event_type, 2000, seed=12, malformed_fraction=0.3, late_fraction=0.05))
    values = [e.value for e in events] + EDGE_SALES + CANONICAL_EDGES
    schema = StructType([StructField("value", BinaryType())])
    columns = [
        F.lit(None).cast("binary").alias("key"),
        F.col("value"),
        F.lit("t").alias("topic"),
        F.lit(0).alias("partition"),
        F.monotonically_increasing_id().alias("offset"),
    ]
    kafka = spark.createDataFrame([(v,) for v in values], schema).select(*columns)
    fast = parse_events(kafka, spec).collect()
    slow = parse_events(kafka, spec, fast_path=False).collect()
    assert [r.asDict() for r in fast] == [r.asDict() for r in slow]
    # The fast path was taken: every valid event the generator wrote has the canonical shape.
    pattern = re.compile(canonical_pattern(spec))
    valid = [e.value for e in events if e.kind != "malformed"]
    assert sum(1 for v in valid if pattern.match(v.decode())) == len(valid)
