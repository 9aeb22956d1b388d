"""The dead-letter contract: a record that cannot be processed goes to `<topic>.dlq` with its
original key and value bytes, untouched, and five headers (UTF-8 values) saying why and where from.

The Python dead-letter writer (`pipelines.kafka.dlq`) also keeps the headers the original record
carried, first and in their order, except ones reusing these five names (the dead letter's own say
why *this* record failed); Spark's dead letters carry only the five.
"""

from __future__ import annotations

HEADER_REASON = "error.reason"
"""A short machine-readable code, one of REASON_CODES (`<field>` replaced by the field's name)."""
HEADER_DETAIL = "error.detail"
"""A human-readable sentence about the defect."""
HEADER_SOURCE_TOPIC = "source.topic"
HEADER_SOURCE_PARTITION = "source.partition"
"""The source partition, in decimal."""
HEADER_SOURCE_OFFSET = "source.offset"
"""The source offset, in decimal."""

DEAD_LETTER_HEADERS = (
    HEADER_REASON,
    HEADER_DETAIL,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
)
"""The five headers every dead letter carries, in the order it carries them."""

REASON_CODES: dict[str, str] = {
    "empty_value": "the value is null (a tombstone) or zero bytes",
    "invalid_utf8": "the value is not valid UTF-8",
    "invalid_json": "the value is not one JSON object (also NaN/Infinity and duplicate field names)",
    "missing_field:<field>": "a contract field is absent or JSON null (`timestamp` first, then in "
    "contract order)",
    "bad_type:<field>": "a text field is not a JSON string; `amount` is not a JSON number, has more than "
    "two decimals or does not fit DECIMAL(12,2)",
    "bad_timestamp": "`timestamp` is a string but not ISO-8601 UTC with milliseconds and a `Z`, "
    "or not a real date and time",
    "negative_amount": "`amount` is below zero (0.00 is a valid amount)",
}
"""Every `error.reason` the parsers give, with when. Checked in this order, first defect wins. The
Spark parser (pipelines.transforms.parsing) and the Python one (pipelines.processor.shipments) give
the same code for every malformed event the generators make (a test compares them); docs/contracts.md
lists the inputs outside the contract on which they still differ."""

AVRO_REASON_CODES: dict[str, str] = {
    "empty_value": "the value is null (a tombstone) or zero bytes",
    "avro_bad_magic_byte": "the value does not start with the Confluent wire format's magic byte 0 "
    "(JSON or text on an Avro topic, or another framing)",
    "avro_truncated": "the value ends inside its 5-byte header or before the end of its record (or "
    "its bytes are not a record of its writer schema)",
    "avro_unknown_schema_id": "the schema id in the header is not registered in the schema registry",
    "avro_unreadable_schema": "the writer schema is registered but the job's reader schema cannot read "
    "it (another topic's schema, or a change that is not compatible)",
    "negative_amount": "`amount` is below zero (0.00 is a valid amount)",
}
"""Every `error.reason` of a record on a topic read with `--format avro`, checked in this order (first
defect wins). Avro's schema makes the JSON codes (`invalid_json`, `missing_field`, `bad_type`,
`bad_timestamp`, `invalid_utf8`) impossible; `empty_value` and `negative_amount` stay. The Spark
parser (pipelines.transforms.avro) and the Python one (pipelines.registry.avro) give the same codes."""
