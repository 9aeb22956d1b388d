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
assigns, checked in the same order (the first defect found wins), and for a valid order the same
values: the two parsers are compared on generated and mutated records
(tests/transforms/test_parsers_differential.py). Beyond JSON's grammar, `invalid_json` also covers
NaN/Infinity, duplicate field names, a `\\ud800` escape that is half a surrogate pair, and the
limits of Spark's JSON parser (docs/contracts.md): nesting deeper than 1,000 objects and arrays, a
number of more than 1,000 digits, a field name of more than 50,000 or a string of more than
20,000,000 UTF-16 code units. `bad_timestamp` also covers a well-formed text that is no real date
and time (month 13, February 30, year 0000).

Pure functions, no I/O: tests check them against every malformed event the generator makes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipelines.contracts import ORDER_FIELDS, ORDERS, SHIPMENT_FIELDS, SHIPMENT_ID_PREFIX, SHIPMENT_STATUS

_TEXT_FIELDS = ORDERS.text_fields
_MONEY_DIGITS = 10
"""DECIMAL(12,2) holds up to 10 digits before the point (and two after)."""
_MONEY_DECIMALS = 2
_CENT = Decimal("0.01")
_TIMESTAMP = re.compile(r"(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
"""The contract's timestamp text (pipelines.contracts.events.TIMESTAMP_PATTERN): ASCII digits only."""

# The limits of Spark's JSON parser (Jackson's defaults), which the contract adopts for every value:
# a value beyond one is `invalid_json` from either parser.
_MAX_DEPTH = 1000
"""Objects and arrays nested at most this deep (the value itself is level 1)."""
_MAX_NUMBER_DIGITS = 1000
"""Digits of one number, counting those of the fraction and the exponent."""
_MAX_NAME_UNITS = 50_000
"""UTF-16 code units of one field name (a character beyond U+FFFF is two)."""
_MAX_STRING_UNITS = 20_000_000
"""UTF-16 code units of one string."""
_DEPTH_STEP = 250
"""Python's json parser recurses once per level; deeper documents are parsed this many levels at a
time (`_load_deep`), so a valid document never runs out of stack."""

_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""In a decoded string: half a surrogate pair (json joins whole pairs into one character)."""
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string (skipped whole, brackets in it are text) or a bracket."""


class RejectedOrder(Exception):
    """An order that can never become a shipment: `reason` is the dead-letter `error.reason` code,
    `detail` the human-readable `error.detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ValidOrder:
    """An order that passed every check: its text fields as they arrived (`timestamp` still the
    text), `amount` as DECIMAL(12,2) holds it (two places: `12.5` is 12.50)."""

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
    # _number made a Decimal of every number that can be money, and of no other.
    if not isinstance(amount, Decimal):
        raise RejectedOrder(
            "bad_type:amount",
            "field 'amount' must be a JSON number with at most two decimals that fits DECIMAL(12,2), "
            f"got {_json_text(amount)[:40]} ({_json_type(amount)})",
        )
    if amount < 0:
        raise RejectedOrder("negative_amount", f"amount {amount} is negative")
    return ValidOrder(
        order_id=doc["order_id"],
        customer_id=doc["customer_id"],
        amount=amount.quantize(_CENT) if amount else Decimal("0.00"),  # as DECIMAL(12,2): no -0.00
        currency=doc["currency"],
        timestamp=timestamp,
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        doc = _load(text)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise RejectedOrder("invalid_json", f"the value is not a JSON object: {text[:80]}")
    return doc


def _load(text: str) -> Any:
    """JSON text -> value, refusing (ValueError) what Spark's parser refuses: see the module's doc."""
    if text.count("{") + text.count("[") > _DEPTH_STEP:  # C speed; a typical value has one
        return _load_deep(text)
    return _decode(text)


def _decode(text: str) -> Any:
    # Numbers are read exactly, never as floats: the amount's decimals are checked on its text.
    value = json.loads(
        text,
        parse_float=_number,
        parse_int=_number,
        parse_constant=_reject_constant,
        object_pairs_hook=_unique_names,
    )
    if len(text) > _MAX_STRING_UNITS // 2 or _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


def _load_deep(text: str) -> Any:
    """`_decode` for a value that may nest deeper than _DEPTH_STEP, without recursing deeper.

    The deepest containers are decoded on their own (checked as any value is) and replaced by an
    empty one of their kind, `_DEPTH_STEP` levels at a time, until the rest is shallow. Only the
    top level's fields are used, and their JSON types are kept: `{"amount": [[...]]}` is still an
    array. The result is valid exactly when the whole text is, since a placeholder stands where a
    valid value was."""
    while True:
        containers, deepest = _containers(text)
        if deepest > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        if deepest <= _DEPTH_STEP:
            return _decode(text)
        cut = max(2, deepest - _DEPTH_STEP + 1)
        parts, done = [], 0
        for depth, start, end in containers:
            if depth == cut:
                _decode(text[start:end])
                parts += [text[done:start], " [] " if text[start] == "[" else " {} "]
                done = end
        text = "".join([*parts, text[done:]])


def _containers(text: str) -> tuple[list[tuple[int, int, int]], int]:
    """The (depth, start, end) of every closed object and array of a JSON text, in the order they
    close, and the deepest level any bracket opens at. Brackets inside strings are text."""
    containers: list[tuple[int, int, int]] = []
    opened: list[int] = []
    deepest = 0
    for match in _STRUCTURE.finditer(text):
        bracket = match.group()
        if bracket in ("[", "{"):
            opened.append(match.start())
            deepest = max(deepest, len(opened))
        elif bracket in ("]", "}") and opened:
            containers.append((len(opened), opened.pop(), match.end()))
    return containers, deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate field names")
    for name in names:
        if len(name) > _MAX_NAME_UNITS // 2 and _utf16_units(name) > _MAX_NAME_UNITS:
            raise ValueError(f"a field name of more than {_MAX_NAME_UNITS} UTF-16 code units")
    return dict(pairs)


def _check_strings(value: Any) -> None:
    """Refuse half surrogate pairs and over-long strings anywhere in a decoded value."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                raise ValueError("half a surrogate pair is not text")
            if len(item) > _MAX_STRING_UNITS // 2 and _utf16_units(item) > _MAX_STRING_UNITS:
                raise ValueError(f"a string of more than {_MAX_STRING_UNITS} UTF-16 code units")


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True)
class _Number:
    """A JSON number that can never be money (more than two decimals, or too large): its text."""

    text: str


def _number(text: str) -> Decimal | _Number:
    """A JSON number, exactly: a Decimal when it can be money (at most two decimals as written,
    digits after the point minus the exponent, and at most 10 digits before the point), else its
    text. Never rounded, and never beyond Decimal's range whatever the exponent (`1e99999999999999999999`)."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a JSON number")
    whole, fraction, exponent = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(whole) + len(fraction) + len(exponent.lstrip("+-")) > _MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of more than {_MAX_NUMBER_DIGITS} digits")
    decimals = len(fraction) - int(exponent or 0)
    if decimals > _MONEY_DECIMALS:
        return _Number(text)
    significant = (whole + fraction).lstrip("0")
    if not significant:
        return Decimal(0)  # zero, also with an exponent beyond Decimal's range (0e99999999999999999999)
    if len(significant) - decimals > _MONEY_DIGITS:  # the digits before the point
        return _Number(text)
    return Decimal(text)


def _is_contract_timestamp(text: str) -> bool:
    if not _TIMESTAMP.fullmatch(text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")  # month 13, February 30, hour 24 ...
    except ValueError:
        return False
    return True


def _missing(name: str) -> RejectedOrder:
    return RejectedOrder(f"missing_field:{name}", f"required field '{name}' is missing or null")


def _bad_type(name: str, value: object) -> RejectedOrder:
    return RejectedOrder(f"bad_type:{name}", f"field '{name}' must be a JSON string, got {_json_type(value)}")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, Decimal | _Number):
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
    if isinstance(value, _Number):
        return value.text
    return json.dumps(value, ensure_ascii=False, default=str)
