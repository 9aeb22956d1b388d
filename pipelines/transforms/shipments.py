"""Orders become shipments: the `orders` topic -> the `shipments` topic (`pipelines.contracts`).

A valid order becomes one shipment, keyed by the order's key (so every record of one order lands
on the same partition and keeps its order), with the order's headers carried over and the value

    {"shipment_id": "ship-<order_id>", "order_id", "customer_id", "status": "pending",
     "created_at": <the order's "timestamp", the same text>}

Orders that do not parse are not shipments: `parse_orders` gives them a reason code and they become
dead letters for `<topic>.dlq` (`pipelines.transforms.dead_letters`), as in the revenue job. The job
writes both from one query: `route_orders` gives every parsed order one kafka sink row with a
`topic` column, its shipment or its dead letter. Every transform here is a projection or a filter
(no state, no shuffle), which is what lets the job run in Spark's real-time mode as well as in
micro-batches.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import ORDERS, SHIPMENT_ID_PREFIX, SHIPMENT_STATUS
from pipelines.transforms.avro import AvroReadPlan, parse_avro_events, to_wire_format
from pipelines.transforms.dead_letters import dead_letter_headers
from pipelines.transforms.parsing import parse_events


def parse_orders_with_headers(kafka_df: DataFrame) -> DataFrame:
    """Kafka rows of `orders` read with `includeHeaders=true` -> `parse_orders`' columns plus
    `headers` (array<struct<key: string, value: binary>>, null for a record without headers) and
    `timestamp_text` (a good order's timestamp as it arrived, the shipment's `created_at`).

    Raises ValueError when `kafka_df` has no `headers` column: a shipment must carry its order's
    headers, and dropping them silently is what this guards against.
    """
    if "headers" not in kafka_df.columns:
        raise ValueError("the orders need their headers: read the topic with includeHeaders=true")
    return parse_events(kafka_df, ORDERS, timestamp_text=True)


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
    return parsed_df.filter(F.col("error_reason").isNull()).select(
        F.col("key"), shipment_json().alias("value"), F.col("headers")
    )


def shipment_json() -> Column:
    """The JSON value of the shipment of a valid order parsed by `parse_orders_with_headers` (see
    `to_shipments`)."""
    return F.to_json(
        F.struct(
            F.concat(F.lit(SHIPMENT_ID_PREFIX), F.col("order_id")).alias("shipment_id"),
            F.col("order_id"),
            F.col("customer_id"),
            F.lit(SHIPMENT_STATUS).alias("status"),
            F.col("timestamp_text").alias("created_at"),
        )
    )


def route_orders(
    parsed_df: DataFrame, shipment_value: Column, *, sink_topic: str, dlq_topic: str
) -> DataFrame:
    """Parsed orders -> kafka sink rows with a `topic` column, one per order: a valid order's
    shipment to `sink_topic` (the rows `to_shipments` gives, `shipment_value` being its value
    column: `shipment_json()` or `avro_shipment()`), an order with an `error_reason` its dead letter
    to `dlq_topic` (the rows `to_dead_letters` gives: original key and bytes, the five headers).

    One query writes both, so each order is read and parsed once; Spark's kafka sink and the
    exactly-once writer both send each row to its `topic` (neither is given a topic option).

    `source_partition` is the order's Kafka partition: the exactly-once writer keys each task's
    transactions by it (`pipelines.transactional_writer.SLOT_COLUMN`); Spark's own sink gets the
    rows without it."""
    valid = F.col("error_reason").isNull()
    return parsed_df.select(
        F.when(valid, F.lit(sink_topic)).otherwise(F.lit(dlq_topic)).alias("topic"),
        F.col("key"),
        # Binary on both sides: Spark's non-ANSI type rules do not combine a string with binary.
        F.when(valid, shipment_value.cast("binary")).otherwise(F.col("value")).alias("value"),
        F.when(valid, F.col("headers")).otherwise(dead_letter_headers()).alias("headers"),
        F.col("partition").alias("source_partition"),
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
    return parsed_df.filter(F.col("error_reason").isNull()).select(
        F.col("key"), avro_shipment(schema_id, schema).alias("value"), F.col("headers")
    )


def avro_shipment(schema_id: int, schema: str) -> Column:
    """The Avro value of the shipment of a valid parsed Avro order (see `to_avro_shipments`)."""
    record = F.struct(
        F.concat(F.lit(SHIPMENT_ID_PREFIX), F.col("order_id")).alias("shipment_id"),
        F.col("order_id"),
        F.col("customer_id"),
        F.lit(SHIPMENT_STATUS).alias("status"),
        F.col("event_time").alias("created_at"),
    )
    return to_wire_format(record, schema_id, schema)
