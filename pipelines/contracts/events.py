"""Event contracts: the fields of each topic's JSON values, and their formats.

Timestamps are ISO-8601 UTC with milliseconds and a `Z` (`2026-11-27T10:00:00.123Z`); money is a
JSON number with at most two decimals, read as DECIMAL(12,2) and summed as DECIMAL(18,2), never a
float; keys are UTF-8 strings.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
"""Spark datetime pattern of the contract's timestamps (`2026-11-27T10:00:00.123Z`)."""
TIMESTAMP_PATTERN = r"(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
"""The whole text of a contract timestamp, as a regex Python and Java read alike (anchor it at both
ends): ASCII digits, exactly three of milliseconds, an upper-case `Z`, no year 0000. Spark's
TIMESTAMP_FORMAT alone also takes offsets (`+01`), one or two fraction digits, `z` and year 0000."""
TIMESTAMP_OUTPUT_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
"""Spark `date_format` pattern that writes a UTC TIMESTAMP in the contract's form."""


@dataclass(frozen=True)
class EventSpec:
    """What a topic's events look like: the fields in contract order (`amount` is money,
    `timestamp` the event time, every other field a string), the field that is the record key,
    and whether heartbeats (`{"heartbeat": true, "timestamp": ...}`) may appear."""

    fields: tuple[str, ...]
    key_field: str
    heartbeats: bool = False

    @property
    def text_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in ("amount", "timestamp"))


ORDER_FIELDS = ("order_id", "customer_id", "amount", "currency", "timestamp")
"""The fields of an `orders` value, in the order they are written."""
SALE_FIELDS = ("sale_id", "order_id", "category", "amount", "currency", "timestamp")
"""The fields of a `sales` value, in the order they are written."""

ORDERS = EventSpec(ORDER_FIELDS, key_field="order_id")
SALES = EventSpec(SALE_FIELDS, key_field="sale_id", heartbeats=True)

SHIPMENT_FIELDS = ("shipment_id", "order_id", "customer_id", "status", "created_at")
"""The fields of a `shipments` value, in the order they are written. The key is the order's key,
`shipment_id` is SHIPMENT_ID_PREFIX + `order_id`, `status` is SHIPMENT_STATUS and `created_at` is the
order's `timestamp` text, unchanged."""
SHIPMENT_ID_PREFIX = "ship-"
SHIPMENT_STATUS = "pending"
