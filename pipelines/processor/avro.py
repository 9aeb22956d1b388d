"""The processor's orders -> shipments transform for topics in Avro (`--format avro`).

Orders are read in the Confluent wire format into the contract's `Order` schema, whatever
registered version wrote them (`pipelines.registry.avro.WireDecoder`); shipments are written with
the contract's `Shipment` schema through confluent-kafka's AvroSerializer, so any Confluent client
(AvroDeserializer) reads them back. A value that cannot be read is a RejectedOrder with the Avro
reason code (`pipelines.contracts.AVRO_REASON_CODES`), dead-lettered like a bad JSON order.
"""

from __future__ import annotations

from pipelines.contracts import SHIPMENT_ID_PREFIX, SHIPMENT_STATUS
from pipelines.processor.shipments import RejectedOrder
from pipelines.registry.avro import AvroRejected, WireDecoder, WireEncoder
from pipelines.registry.schemas import SchemaStore, contract_schema


class AvroShipments:
    """`shipments(order_value) -> shipment_value`, both in Avro; RejectedOrder for a bad order."""

    def __init__(self, registry_url: str, sink_topic: str) -> None:
        store = SchemaStore(registry_url)
        self.decoder = WireDecoder(store, contract_schema("orders"))
        self.encoder = WireEncoder(store, sink_topic, contract_schema("shipments"))

    def __call__(self, value: bytes | None) -> bytes:
        try:
            order = self.decoder.decode(value)
        except AvroRejected as exc:
            raise RejectedOrder(exc.reason, exc.detail) from None
        return self.encoder.encode(
            {
                "shipment_id": SHIPMENT_ID_PREFIX + order["order_id"],
                "order_id": order["order_id"],
                "customer_id": order["customer_id"],
                "status": SHIPMENT_STATUS,
                "created_at": order["timestamp"],
            }
        )
