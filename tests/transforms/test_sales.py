"""Parsing `sales` records on batch DataFrames shaped like the kafka source's output."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType

from pipelines.schemas import SALES_TABLE_SCHEMA
from pipelines.transforms.sales import filter_invalid_sales, to_sales_rows, with_parsed_sale

pytestmark = pytest.mark.spark

KAFKA_ROWS = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
    ]
)

GOOD = (
    b'{"sale_id":"s1","order_id":"o1","category":"books","amount":12.30,'
    b'"currency":"EUR","timestamp":"2026-11-27T10:00:00.123Z"}'
)
RECORDS = [
    (b"s1", GOOD, 0),
    (
        b"s2",
        b'{"sale_id":"s2","order_id":"o2","category":"toys","amount":0.05,'
        b'"currency":"EUR","timestamp":"2026-11-27T23:59:59.999Z"}',
        1,
    ),
    (b"x", b"{not json", 2),
    (
        b"x",
        b'{"sale_id":"s3","order_id":"o3","category":"toys","currency":"EUR",'
        b'"timestamp":"2026-11-27T10:00:00.000Z"}',
        3,
    ),  # missing amount
    (
        b"x",
        b'{"sale_id":"s4","order_id":"o4","category":"toys","amount":"lots",'
        b'"currency":"EUR","timestamp":"2026-11-27T10:00:00.000Z"}',
        4,
    ),  # wrong type
    (
        b"x",
        b'{"sale_id":"s5","order_id":"o5","category":"toys","amount":-1.00,'
        b'"currency":"EUR","timestamp":"2026-11-27T10:00:00.000Z"}',
        5,
    ),  # negative
    (
        b"x",
        b'{"sale_id":"s6","order_id":"o6","category":"toys","amount":1.00,'
        b'"currency":"EUR","timestamp":"yesterday"}',
        6,
    ),  # bad timestamp
    (b"x", None, 7),  # tombstone / empty value
    (b"x", b"\xff\xfe\x00garbage", 8),  # not UTF-8
]


@pytest.fixture
def kafka_df(spark: SparkSession):  # type: ignore[no-untyped-def]
    return spark.createDataFrame([(k, v, "sales", 0, off) for k, v, off in RECORDS], schema=KAFKA_ROWS)


def test_valid_records_become_typed_rows(spark: SparkSession, kafka_df) -> None:  # type: ignore[no-untyped-def]
    actual = kafka_df.transform(with_parsed_sale).transform(to_sales_rows)
    expected = spark.createDataFrame(
        [
            (
                "s1",
                "o1",
                "books",
                Decimal("12.30"),
                "EUR",
                datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC),
                0,
                0,
            ),
            (
                "s2",
                "o2",
                "toys",
                Decimal("0.05"),
                "EUR",
                datetime(2026, 11, 27, 23, 59, 59, 999000, tzinfo=UTC),
                0,
                1,
            ),
        ],
        schema=SALES_TABLE_SCHEMA,
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


def test_every_bad_record_is_split_off_not_nulled(kafka_df) -> None:  # type: ignore[no-untyped-def]
    bad = kafka_df.transform(with_parsed_sale).transform(filter_invalid_sales)
    assert sorted(r["offset"] for r in bad.collect()) == [2, 3, 4, 5, 6, 7, 8]
