"""Orders become shipments, in plain Python: the transform of the confluent-kafka processor.

Contract (`pipelines.contracts`): a valid `orders` value (ORDER_FIELDS) becomes the `shipments`
value, compact UTF-8 JSON with the fields of SHIPMENT_FIELDS in that order:

    {"shipment_id": "ship-<order_id>", "order_id", "customer_id", "status": "pending",
     "created_at": <the order's "timestamp", the same text>}

The record's key and headers are not touched here: the processor carries them over unchanged, so
every record of one order keeps the order's key (and partition). The value bytes are the ones
Spark's `to_json` writes for the same shipment (pipelines.transforms.shipments), so a consumer
cannot tell which of the two wrote it.

An order that is not valid raises RejectedOrder with a reason code of the dead-letter contract
(`pipelines.contracts.REASON_CODES`): the same code the Spark parser (pipelines.transforms.parsing)
assigns, checked in the same order (the first defect found wins). This parser is stricter than
JSON's grammar in two places a strict reader refuses too: NaN/Infinity and duplicate field names
are `invalid_json`, and `bad_timestamp` also covers a well-formed text that is no real date and
time (month 13, February 30).

Pure functions, no I/O: tests check them against every malformed event the generator makes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pipelines.contracts import ORDER_FIELDS, ORDERS, SHIPMENT_FIELDS, SHIPMENT_ID_PREFIX, SHIPMENT_STATUS

_TEXT_FIELDS = ORDERS.text_fields
_MAX_AMOUNT = Decimal(10) ** 10
"""DECIMAL(12,2) holds up to 10 digits before the point."""
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class RejectedOrder(Exception):
    """An order that can never become a shipment: `reason` is the dead-letter `error.reason` code,
    `detail` the human-readable `error.detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ValidOrder:
    """An order that passed every check, its fields as they arrived (`timestamp` still the text)."""

    order_id: str
    customer_id: str
    amount: Decimal
    currency: str
    timestamp: str


@dataclass(frozen=True)
class Shipment:
    """A `shipments` value."""

    shipment_id: str
    order_id: str
    customer_id: str
    status: str
    created_at: str

    @classmethod
    def for_order(cls, order: ValidOrder) -> Shipment:
        return cls(
            shipment_id=SHIPMENT_ID_PREFIX + order.order_id,
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=SHIPMENT_STATUS,
            created_at=order.timestamp,
        )

    def to_json(self) -> bytes:
        """Compact JSON, fields in SHIPMENT_FIELDS order, non-ASCII text unescaped (as Spark's `to_json`)."""
        document = {name: getattr(self, name) for name in SHIPMENT_FIELDS}
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def shipment_value(order_value: bytes | None) -> bytes:
    """The `shipments` value for an `orders` value; raises RejectedOrder when it is not a valid order."""
    return Shipment.for_order(parse_order(order_value)).to_json()


def parse_order(value: bytes | None) -> ValidOrder:
    """Check an `orders` value against the contract; raises RejectedOrder with the first defect."""
    if not value:
        raise RejectedOrder("empty_value", "the record has no value")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedOrder("invalid_utf8", "the value is not valid UTF-8 text") from None
    doc = _json_object(text)

    timestamp = doc.get("timestamp")
    if timestamp is None:
        raise _missing("timestamp")
    if not isinstance(timestamp, str):
        raise _bad_type("timestamp", timestamp)
    if not _is_contract_timestamp(timestamp):
        raise RejectedOrder(
            "bad_timestamp",
            f"timestamp {json.dumps(timestamp)[:40]} is not ISO-8601 UTC with milliseconds and Z "
            "(2026-11-27T10:00:00.123Z)",
        )
    for name in ORDER_FIELDS:
        if doc.get(name) is None:
            raise _missing(name)
    for name in _TEXT_FIELDS:
        if not isinstance(doc[name], str):
            raise _bad_type(name, doc[name])
    amount = doc["amount"]
    if not _is_money(amount):
        raise RejectedOrder(
            "bad_type:amount",
            "field 'amount' must be a JSON number with at most two decimals that fits DECIMAL(12,2), "
            f"got {_json_text(amount)[:40]} ({_json_type(amount)})",
        )
    assert isinstance(amount, Decimal)
    if amount < 0:
        raise RejectedOrder("negative_amount", f"amount {amount} is negative")
    return ValidOrder(
        order_id=doc["order_id"],
        customer_id=doc["customer_id"],
        amount=amount,
        currency=doc["currency"],
        timestamp=timestamp,
    )


def _json_object(text: str) -> dict[str, Any]:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError("duplicate field names")
        return dict(pairs)

    try:
        # Numbers as Decimal, never float: the amount's decimals are checked on the exact value.
        doc = json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=reject_constant,
            object_pairs_hook=unique_names,
        )
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise RejectedOrder("invalid_json", f"the value is not a JSON object: {text[:80]}")
    return doc


def _is_contract_timestamp(text: str) -> bool:
    if not _TIMESTAMP.match(text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")  # month 13, February 30, hour 24 ...
    except ValueError:
        return False
    return True


def _is_money(value: object) -> bool:
    if not isinstance(value, Decimal):
        return False  # a string, a boolean, an object ...
    try:
        exponent = value.as_tuple().exponent
        return isinstance(exponent, int) and exponent >= -2 and abs(value) < _MAX_AMOUNT
    except InvalidOperation:
        return False


def _missing(name: str) -> RejectedOrder:
    return RejectedOrder(f"missing_field:{name}", f"required field '{name}' is missing or null")


def _bad_type(name: str, value: object) -> RejectedOrder:
    return RejectedOrder(f"bad_type:{name}", f"field '{name}' must be a JSON string, got {_json_type(value)}")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, Decimal):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, dict):
        return "OBJECT"
    if isinstance(value, list):
        return "ARRAY"
    return "NULL"


def _json_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)
