"""Avro in the Confluent wire format, in Python: what the generators write and the processor reads.

A value is magic byte 0, the writer schema's id (4 bytes, big-endian, signed as Java reads it),
then the record in Avro's binary encoding. Writing goes through confluent-kafka's AvroSerializer;
reading classifies a bad value with the reason codes of `pipelines.contracts.AVRO_REASON_CODES`,
checked in that order, the same ones the Spark parser (pipelines.transforms.avro) gives:

- `empty_value`: null or zero bytes;
- `avro_bad_magic_byte`: the first byte is not 0 (JSON on an Avro topic starts with `{`);
- `avro_truncated`: fewer than 5 bytes, or the record ends early (or is no record of its schema);
- `avro_unknown_schema_id`: the registry has no schema with that id;
- `avro_unreadable_schema`: the registry has it, but the reader's schema cannot read it (Avro's
  schema resolution: another topic's schema, or a change that is not compatible);
- `negative_amount`: the amount is below zero (Avro cannot say "not negative").

Records written with any registered version the reader can resolve are read into the reader's
schema: a field added later with a default is skipped by an older reader, filled by a newer one.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import avro.schema
import fastavro
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipelines.registry.schemas import SERDE_CONF, SchemaStore, subject_for

MAGIC_BYTE = 0
HEADER_BYTES = 5


class AvroRejected(Exception):
    """A value that cannot be read: `reason` is its dead-letter `error.reason`, `detail` the sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def wire_header(schema_id: int) -> bytes:
    """The 5-byte header of a value written with schema `schema_id`."""
    return struct.pack(">bi", MAGIC_BYTE, schema_id)


def split_wire(value: bytes | None) -> tuple[int, bytes]:
    """(schema id, Avro payload) of a wire-format value; AvroRejected for a value without a header."""
    if not value:
        raise AvroRejected("empty_value", "the record has no value")
    if value[0] != MAGIC_BYTE:
        raise AvroRejected(
            "avro_bad_magic_byte",
            f"the value starts with byte 0x{value[0]:02x}, not the wire format's magic byte 0x00",
        )
    if len(value) < HEADER_BYTES:
        raise AvroRejected("avro_truncated", f"the value has {len(value)} bytes, less than the 5-byte header")
    return struct.unpack(">i", value[1:HEADER_BYTES])[0], value[HEADER_BYTES:]


def compact(schema: str) -> str:
    return json.dumps(json.loads(schema), separators=(",", ":"))


def can_read(reader: str, writer: str) -> bool:
    """Whether records written with `writer` resolve into `reader` (Avro's schema resolution)."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(reader), avro.schema.parse(writer)
    )
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


_UNKNOWN = "unknown"
_UNREADABLE = "unreadable"


class WireDecoder:
    """Reads wire-format values into the `reader` schema, looking writer schemas up by id in
    `store` (once per id) and classifying every value it cannot read."""

    def __init__(self, store: SchemaStore, reader: str) -> None:
        self.store = store
        self.reader = compact(reader)
        self._reader = fastavro.parse_schema(json.loads(self.reader))
        self._writers: dict[int, Any] = {}

    def _writer(self, schema_id: int) -> Any:
        if schema_id not in self._writers:
            text = self.store.schema_by_id(schema_id)
            if text is None:
                self._writers[schema_id] = _UNKNOWN
            elif not can_read(self.reader, text):
                self._writers[schema_id] = _UNREADABLE
            else:
                self._writers[schema_id] = fastavro.parse_schema(json.loads(text))
        return self._writers[schema_id]

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The record of `value` in the reader's schema; AvroRejected with the first defect."""
        schema_id, payload = split_wire(value)
        writer = self._writer(schema_id)
        if writer == _UNKNOWN:
            raise AvroRejected("avro_unknown_schema_id", f"schema id {schema_id} is not registered")
        if writer == _UNREADABLE:
            raise AvroRejected(
                "avro_unreadable_schema", f"the reader's schema cannot read records of schema id {schema_id}"
            )
        try:
            record = fastavro.schemaless_reader(io.BytesIO(payload), writer, self._reader)
        except Exception:  # EOFError, struct/UTF-8/index errors: the bytes are not a whole record
            raise AvroRejected(
                "avro_truncated",
                f"the {len(payload)}-byte payload is not a whole record of schema id {schema_id}",
            ) from None
        if not isinstance(record, dict):
            raise AvroRejected("avro_truncated", f"schema id {schema_id} does not describe a record")
        amount = record.get("amount")
        if isinstance(amount, Decimal) and amount < 0:
            raise AvroRejected("negative_amount", f"amount {amount} is negative")
        return record


class WireEncoder:
    """Writes records as `topic`'s values with `schema` (registered under `<topic>-value`, which
    `SchemaStore.register` does first) through confluent-kafka's AvroSerializer."""

    def __init__(self, store: SchemaStore, topic: str, schema: str) -> None:
        self.topic = topic
        self.schema = compact(schema)
        self.schema_id = store.register(topic, self.schema).schema_id
        self._serializer = AvroSerializer(
            store.client,
            self.schema,
            conf={"auto.register.schemas": False, "use.latest.version": False, **SERDE_CONF},
        )
        self._context = SerializationContext(topic, MessageField.VALUE)

    @property
    def subject(self) -> str:
        return subject_for(self.topic)

    def encode(self, record: Mapping[str, object]) -> bytes:
        value = self._serializer(dict(record), self._context)
        assert value is not None
        return value


def avro_record(document: Mapping[str, object]) -> dict[str, object]:
    """A generator's document (the JSON value before encoding: `timestamp` as the contract's text,
    `amount` a Decimal) as an Avro record: `timestamp` as a UTC datetime."""
    record = dict(document)
    stamp = record.get("timestamp")
    if isinstance(stamp, str):
        record["timestamp"] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    return record
