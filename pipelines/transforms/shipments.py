"""Orders become shipments: the `orders` topic -> the `shipments` topic (`pipelines.contracts`).

A valid order becomes one shipment, keyed by the order's key (so every record of one order lands
on the same partition and keeps its order), with the order's headers carried over and the value

    {"shipment_id": "ship-<order_id>", "order_id", "customer_id", "status": "pending",
     "created_at": <the order's "timestamp", the same text>}

Orders that do not parse are not shipments: `parse_orders` gives them a reason code, and the job
sends them to `<topic>.dlq` with `filter_bad_records` and `to_dead_letters`, as the revenue job
does. Every transform here is a projection or a filter (no state, no shuffle), which is what lets
the job run in Spark's real-time mode as well as in micro-batches.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import ORDERS, SHIPMENT_ID_PREFIX, SHIPMENT_STATUS
from pipelines.transforms.avro import AvroReadPlan, parse_avro_events, to_wire_format
from pipelines.transforms.orders import parse_orders


def parse_orders_with_headers(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows of `orders` read with `includeHeaders=true` -> `parse_orders`' columns plus
    `headers` (array<struct<key: string, value: binary>>, null for a record without headers).

    Raises ValueError when `kafka_df` has no `headers` column: a shipment must carry its order's
    headers, and dropping them silently is what this guards against.
    """
    if "headers" not in kafka_df.columns:
        raise ValueError("the orders need their headers: read the topic with includeHeaders=true")
    return parse_orders(kafka_df)


def to_shipments(parsed_df: DataFrame) -> DataFrame:
    """Parsed orders (`parse_orders_with_headers`) -> kafka sink rows of `shipments`: exactly
    `key`, `value`, `headers`, one row per valid order; orders with an error are filtered out.

    - `key`: the order's key bytes, untouched (a null key stays null);
    - `value`: compact JSON with the fields of SHIPMENT_FIELDS in that order; `created_at` is the
      order's `timestamp` text exactly as it arrived (the parser has checked it is the contract's
      ISO-8601 UTC with milliseconds and a `Z`), never re-formatted from a TIMESTAMP;
    - `headers`: the order's headers, untouched.

    Deterministic: the same order always gives the same key and value bytes, which is what lets a
    consumer recognise the duplicates the at-least-once kafka sink can write (`shipment_id`).
    """
    order_timestamp = F.variant_get(F.try_parse_json(F.col("value").cast("string")), "$.timestamp", "string")
    return parsed_df.filter(F.col("error_reason").isNull()).select(
        F.col("key"),
        F.to_json(
            F.struct(
                F.concat(F.lit(SHIPMENT_ID_PREFIX), F.col("order_id")).alias("shipment_id"),
                F.col("order_id"),
                F.col("customer_id"),
                F.lit(SHIPMENT_STATUS).alias("status"),
                order_timestamp.alias("created_at"),
            )
        ).alias("value"),
        F.col("headers"),
    )


def parse_avro_orders_with_headers(kafka_df: DataFrame, plan: AvroReadPlan) -> DataFrame:
    """`parse_orders_with_headers` for orders in Avro (`--format avro`): the same columns, the
    Avro reason codes (`pipelines.transforms.avro`)."""
    if "headers" not in kafka_df.columns:
        raise ValueError("the orders need their headers: read the topic with includeHeaders=true")
    return parse_avro_events(kafka_df, ORDERS, plan)


def to_avro_shipments(parsed_df: DataFrame, schema_id: int, schema: str) -> DataFrame:
    """Parsed Avro orders -> kafka sink rows of `shipments` in Avro: `key` and `headers` as
    `to_shipments` gives them, `value` the Confluent wire format of the `Shipment` record with the
    registered `schema` of `schema_id` (`created_at` the order's timestamp, a timestamp-millis),
    which confluent-kafka's AvroDeserializer reads."""
    record = F.struct(
        F.concat(F.lit(SHIPMENT_ID_PREFIX), F.col("order_id")).alias("shipment_id"),
        F.col("order_id"),
        F.col("customer_id"),
        F.lit(SHIPMENT_STATUS).alias("status"),
        F.col("event_time").alias("created_at"),
    )
    return parsed_df.filter(F.col("error_reason").isNull()).select(
        F.col("key"), to_wire_format(record, schema_id, schema).alias("value"), F.col("headers")
    )
