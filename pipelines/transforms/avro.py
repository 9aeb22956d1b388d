"""Parsing Kafka records in Avro (the Confluent wire format) into the rows `parse_events` gives.

Open-source Spark's `from_avro` reads a bare Avro record with one writer schema. A Confluent value
is a magic byte 0, the writer schema's id (4 bytes, big-endian, signed) and then the record, and a
topic carries records of several registered versions. So the header is split off here and each
record is read with `from_avro(payload, <its writer schema>, {"avroSchema": <reader schema>})`:
Avro's schema resolution reads every writer version into the job's reader schema (a field added
later with a default is skipped, or filled).

What may be read is fixed when the query starts (`AvroReadPlan`, built by the job from the
registry, plain values here): the readable writer schemas by id, the registered ids the reader
cannot read, the ids met in records that the registry does not have, and the newest id registered
then. A record whose id is above that was registered after the job started: the query fails with
`NEW_SCHEMA_ID` and the id, and the job starts its queries again with a new plan
(`pipelines.registry.spark`), resuming from the checkpoint, so that record is read, not
dead-lettered. An id at or below it that the registry does not have, or one the plan already
looked up and the registry does not have (a positive id from another registry), is
`avro_unknown_schema_id`.

The reason codes (`pipelines.contracts.AVRO_REASON_CODES`, first defect wins) and their details are
those of the Python reader (`pipelines.registry.avro`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro, to_avro

from pipelines.contracts import MONEY, EventSpec
from pipelines.transforms.parsing import KAFKA_COLUMNS

NEW_SCHEMA_ID = "pipelines: a schema registered after the job started, id "
"""What the query fails with on a record of an id newer than its plan (the id follows)."""


@dataclass(frozen=True)
class AvroReadPlan:
    """How a job reads a topic in Avro: `reader` the job's schema (JSON text); `writers` the
    registered schemas it can read, by id; `unreadable` the registered ids it cannot read;
    `unknown` ids met in records that the registry did not have when the plan was made (records
    of another registry: dead-lettered, never a reason to start again); `newest_id` the newest id
    registered when the plan was made."""

    reader: str
    writers: Mapping[int, str] = field(default_factory=dict)
    unreadable: frozenset[int] = frozenset()
    newest_id: int = 0
    unknown: frozenset[int] = frozenset()


def _u8(value: Column, position: int) -> Column:
    return F.conv(F.hex(F.substring(value, position, 1)), 16, 10).cast("long")


def schema_id(value: Column) -> Column:
    """The signed 32-bit schema id of a wire-format value's header (bytes 2 to 5)."""
    unsigned = _u8(value, 2) * 16777216 + _u8(value, 3) * 65536 + _u8(value, 4) * 256 + _u8(value, 5)
    return F.when(unsigned >= 2**31, unsigned - 2**32).otherwise(unsigned).cast("int")


def _branches(schema: str) -> list[tuple[str, str]] | None:
    """(full name, schema JSON) of each member of a union schema; None for any other schema."""
    doc = json.loads(schema)
    if not isinstance(doc, list):
        return None
    members = []
    for member in doc:
        name = member.get("name", "") if isinstance(member, dict) else str(member)
        space = member.get("namespace") if isinstance(member, dict) else None
        members.append((f"{space}.{name}" if space and "." not in name else name, json.dumps(member)))
    return members


def _read(record: Column, reader: str) -> Column:
    """`record` as `from_avro` read it in PERMISSIVE mode, or null where the bytes were not a whole
    record: spark-avro then gives a struct of nulls, not a null, and a record read whole has its
    first required (non-nullable) field set."""
    doc = json.loads(reader)
    for field_ in doc.get("fields", []) if isinstance(doc, dict) else []:
        kind = field_.get("type")
        if not (isinstance(kind, list) and "null" in kind):
            return F.when(record.getField(field_["name"]).isNotNull(), record)
    return record


def _with_decoded(df: DataFrame, ids: Column, plan: AvroReadPlan) -> DataFrame:
    """`df` with `_decoded`: the record read into the reader schema, or null when the id is not
    readable or the bytes are not a whole record.

    spark-avro reads a record at the top, never a union: for a union reader (`[Sale, Heartbeat]`)
    the union's encoding is read here, a zig-zag varint index of the writer's member (one byte for
    the first 64 members) and then that member's record, which is read into the reader's member of
    the same name (Avro's resolution of unions). `_decoded` is then a struct `member0`, `member1`,
    ... (the reader's members, in order) with the one that was written set."""
    readable = ids.isin(list(plan.writers))
    readers = _branches(plan.reader)
    if readers is None:
        options = {"avroSchema": plan.reader, "mode": "PERMISSIVE"}
        payload = F.expr("substring(value, 6)")
        record: Column | None = None
        for schema_id_, writer in sorted(plan.writers.items()):
            read, matches = _read(from_avro(payload, writer, options), plan.reader), ids == schema_id_
            record = F.when(matches, read) if record is None else record.when(matches, read)
        return df.withColumn("_decoded", F.when(readable, record) if record is not None else F.lit(None))
    index = F.conv(F.hex(F.substring(F.col("value"), 6, 1)), 16, 10).cast("int")
    rest = F.expr("substring(value, 7)")
    for position, (name, reader) in enumerate(readers):
        member: Column | None = None
        for schema_id_, writer in sorted(plan.writers.items()):
            for w_index, (w_name, w_schema) in enumerate(_branches(writer) or []):
                if w_name == name:
                    chosen = (ids == schema_id_) & (index == 2 * w_index)
                    options = {"avroSchema": reader, "mode": "PERMISSIVE"}
                    read = _read(from_avro(rest, w_schema, options), reader)
                    member = F.when(chosen, read) if member is None else member.when(chosen, read)
        df = df.withColumn(f"_m{position}", F.when(readable, member) if member is not None else F.lit(None))
    names = [f"_m{i}" for i in range(len(readers))]
    written = F.lit(False)
    for n in names:
        written = written | F.col(n).isNotNull()
    struct = F.struct(*[F.col(n).alias(f"member{i}") for i, n in enumerate(names)])
    return df.withColumn("_decoded", F.when(written, struct))


def parse_avro_events(kafka_df: DataFrame, spec: EventSpec, plan: AvroReadPlan) -> DataFrame:
    """Kafka source rows in Avro -> the columns of `parse_events`: the Kafka columns (and `headers`
    if present), the event's fields in contract order (`amount` DECIMAL(12,2), `timestamp` as
    `event_time`), `is_heartbeat`, `error_reason`, `error_detail`. For a topic with heartbeats the
    reader schema is the union `[event, Heartbeat]`."""
    value = F.col("value")
    size = F.coalesce(F.length(value), F.lit(0))
    ids = F.col("_id")
    decoded = F.col("_decoded")
    record = decoded.getField("member0") if spec.heartbeats else decoded
    beat = decoded.getField("member1") if spec.heartbeats else F.lit(None)
    amount = record.getField("amount") if "amount" in spec.fields else F.lit(None)
    known = list(plan.writers)
    unreadable = sorted(plan.unreadable)
    reason = (
        F.when(size == 0, F.lit("empty_value"))
        .when(F.col("_magic") != 0, F.lit("avro_bad_magic_byte"))
        .when(size < 5, F.lit("avro_truncated"))
        .when(ids.isin(unreadable), F.lit("avro_unreadable_schema"))
        .when(
            ~ids.isin(known) & ~ids.isin(sorted(plan.unknown)) & (ids > plan.newest_id),
            F.raise_error(F.concat(F.lit(NEW_SCHEMA_ID), ids.cast("string"))).cast("string"),
        )
        .when(~ids.isin(known), F.lit("avro_unknown_schema_id"))
        .when(decoded.isNull(), F.lit("avro_truncated"))
        .when(amount < 0, F.lit("negative_amount"))
    )
    id_text = ids.cast("string")
    detail = (
        F.when(F.col("error_reason") == "empty_value", F.lit("the record has no value"))
        .when(
            F.col("error_reason") == "avro_bad_magic_byte",
            F.concat(
                F.lit("the value starts with byte 0x"),
                F.lower(F.hex(F.substring(value, 1, 1))),
                F.lit(", not the wire format's magic byte 0x00"),
            ),
        )
        .when(
            (F.col("error_reason") == "avro_truncated") & (size < 5),
            F.concat(
                F.lit("the value has "), size.cast("string"), F.lit(" bytes, less than the 5-byte header")
            ),
        )
        .when(
            F.col("error_reason") == "avro_truncated",
            F.concat(
                F.lit("the "),
                (size - 5).cast("string"),
                F.lit("-byte payload is not a whole record of schema id "),
                id_text,
            ),
        )
        .when(
            F.col("error_reason") == "avro_unknown_schema_id",
            F.concat(F.lit("schema id "), id_text, F.lit(" is not registered")),
        )
        .when(
            F.col("error_reason") == "avro_unreadable_schema",
            F.concat(F.lit("the reader's schema cannot read records of schema id "), id_text),
        )
        .when(
            F.col("error_reason") == "negative_amount",
            F.concat(F.lit("amount "), amount.cast("string"), F.lit(" is negative")),
        )
    )
    with_checks = (
        kafka_df.withColumn("_magic", F.when(size >= 1, _u8(value, 1)))
        .withColumn("_id", F.when(size >= 5, schema_id(value)))
        .transform(lambda df: _with_decoded(df, ids, plan))
        .withColumn("error_reason", reason)
    )
    good = F.col("error_reason").isNull()
    is_heartbeat = good & beat.isNotNull() if spec.heartbeats else F.lit(False)
    is_event = good & ~is_heartbeat

    def typed(name: str) -> Column:
        if name == "timestamp":
            stamp = (
                F.coalesce(record.getField("timestamp"), beat.getField("timestamp"))
                if spec.heartbeats
                else record.getField("timestamp")
            )
            return F.when(good, stamp).alias("event_time")
        column = record.getField(name)
        if name == "amount":
            column = column.cast(MONEY)
        return F.when(is_event, column).alias(name)

    passthrough = [*KAFKA_COLUMNS, *(["headers"] if "headers" in kafka_df.columns else [])]
    return with_checks.select(
        *passthrough,
        *[typed(f) for f in spec.fields],
        is_heartbeat.alias("is_heartbeat"),
        "error_reason",
        detail.alias("error_detail"),
    )


def to_wire_format(record: Column, schema_id_: int, writer: str) -> Column:
    """`record` (a struct) as a Confluent wire-format value: magic byte 0, `schema_id_`, then the
    record in Avro with `writer` (the registered schema of that id), readable by any Confluent client."""
    header = bytes([0]) + schema_id_.to_bytes(4, "big", signed=True)
    return F.concat(F.lit(header), to_avro(record, writer))
