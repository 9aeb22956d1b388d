"""Expected Avro shipments, computed in plain Python from a generator's ledger and the same seed's
JSON events (the valid events of a seed do not depend on the format)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import LedgerEntry


def expected_shipments(
    ledger: list[LedgerEntry], count: int, seed: int
) -> dict[bytes | None, dict[str, Any]]:
    """Order key -> the shipment record AvroDeserializer should return, for every valid order."""
    as_json = {e.seq: json.loads(e.value) for e in generate_events("orders", count, seed=seed)}
    expected = {}
    for e in ledger:
        if e.kind == "valid":
            order = as_json[e.seq]
            expected[e.key] = {
                "shipment_id": "ship-" + order["order_id"],
                "order_id": order["order_id"],
                "customer_id": order["customer_id"],
                "status": "pending",
                "created_at": datetime.fromisoformat(order["timestamp"].replace("Z", "+00:00")),
            }
    return expected
