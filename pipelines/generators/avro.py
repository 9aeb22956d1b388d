"""The generators' Avro writers: what `pipelines generate --format avro` and `pipelines demo --format
avro` write events with.

`avro_writers(store, event_type, topic)` registers the topic's schema (the contract's, or a later
version) under `<topic>-value` and the other event type's contract schema under its own topic's
subject first, so a schema the registry refuses stops the run in one line before any event is sent.
Its `foreign` writer is what the `avro_unreadable_schema` events are written with: the event as a
record of the other type (a producer that wrote to the wrong topic), which the topic's readers
cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.generators.events import AvroWriters
from pipelines.registry.avro import WireEncoder, avro_record
from pipelines.registry.schemas import SchemaStore, contract_schema

FOREIGN = {"orders": "sales", "sales": "orders"}
"""The event type whose registered contract schema the `avro_unreadable_schema` events of a type
are written with (under its own subject)."""


@dataclass(frozen=True)
class EventWriters:
    """`writers` for `generate_events(..., avro=)`, the topic's registered schema id, and `encode`,
    one document (a valid event or a heartbeat) in the topic's schema."""

    writers: AvroWriters
    schema_id: int
    encode: Callable[[dict[str, object]], bytes]


def avro_writers(store: SchemaStore, event_type: str, topic: str, schema: str | None = None) -> EventWriters:
    """The writers of `event_type` events on `topic`, with `schema` (JSON text; default: the
    contract's), registered first (RegistryError in one line when the registry refuses it)."""
    own = WireEncoder(store, topic, schema if schema is not None else contract_schema(event_type))
    other = FOREIGN[event_type]
    foreign = WireEncoder(store, other, contract_schema(other))

    def encode(document: dict[str, object]) -> bytes:
        return own.encode(avro_record(document))

    def encode_foreign(document: dict[str, object]) -> bytes:
        return foreign.encode(avro_record(_as_other_type(other, document)))

    return EventWriters(AvroWriters(encode, encode_foreign), own.schema_id, encode)


def _as_other_type(other: str, document: dict[str, object]) -> dict[str, object]:
    """The event as a record of the `other` type, made from its own fields (a producer that wrote
    to the wrong topic)."""
    shared = {k: document[k] for k in ("order_id", "amount", "currency", "timestamp")}
    if other == "orders":
        return {"order_id": shared["order_id"], "customer_id": "cust-00000", **shared}
    return {"sale_id": f"sale-of-{shared['order_id']}", "category": "unknown", **shared}
