"""The processor's transform (pipelines.processor.shipments), without a broker: every event the generator
makes gets the shipment or the reason code it was made for, and the edge cases a strict parser must
refuse are refused with the contract's codes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.generators.events import REASON_FAMILIES, generate_events
from pipelines.processor.shipments import RejectedOrder, parse_order, shipment_value
from tests.helpers import shipment_value as expected_shipment

ORDER = {
    "order_id": "order-1",
    "customer_id": "cust-00001",
    "amount": 12.30,
    "currency": "EUR",
    "timestamp": "2026-11-27T10:00:00.123Z",
}


def order_bytes(**changes: object) -> bytes:
    """ORDER as compact JSON, with fields replaced (a value of `...` removes the field)."""
    doc = {name: value for name, value in {**ORDER, **changes}.items() if value is not ...}
    return json.dumps(doc, separators=(",", ":")).encode()


def reason_of(value: bytes | None) -> str:
    with pytest.raises(RejectedOrder) as info:
        shipment_value(value)
    assert info.value.detail  # every rejection says why in words too
    return info.value.reason


def test_every_generated_order_gets_its_shipment_or_the_reason_it_was_made_with() -> None:
    events = list(generate_events("orders", 4000, seed=11, late_fraction=0.05, malformed_fraction=0.1))
    families: Counter[str] = Counter()
    for event in events:
        if event.kind == "malformed":
            assert event.reason is not None
            assert reason_of(event.value) == event.reason, event
            families[event.reason.split(":")[0]] += 1
        else:  # valid and late orders are both valid orders: lateness is not the processor's business
            expected = json.loads(expected_shipment(event.value))
            value = shipment_value(event.value)
            assert json.loads(value) == expected
            assert list(json.loads(value)) == list(expected)  # the contract's field order
    assert set(families) == set(REASON_FAMILIES)  # the test saw every kind of defect


def test_the_shipment_is_compact_json_with_the_timestamp_text_unchanged() -> None:
    value = order_bytes(customer_id="cust-Ünïcödé")
    assert (
        shipment_value(value)
        == (
            '{"shipment_id":"ship-order-1","order_id":"order-1","customer_id":"cust-Ünïcödé",'
            '"status":"pending","created_at":"2026-11-27T10:00:00.123Z"}'
        ).encode()
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),  # a tombstone
        (b"", "empty_value"),
        (b'{"order_id":"\x80"}', "invalid_utf8"),
        (b"[1, 2]", "invalid_json"),
        (b'"order-1"', "invalid_json"),
        (b"null", "invalid_json"),
        (b'{"order_id": "order-1"', "invalid_json"),
        (order_bytes().replace(b"12.3", b"NaN"), "invalid_json"),  # Python's json would take it
        (order_bytes().replace(b'{"order_id":"order-1"', b'{"order_id":"a","order_id":"b"'), "invalid_json"),
        (order_bytes(timestamp=...), "missing_field:timestamp"),
        (order_bytes(timestamp=..., order_id=...), "missing_field:timestamp"),  # timestamp is checked first
        (order_bytes(customer_id=None), "missing_field:customer_id"),  # JSON null counts as missing
        (order_bytes(amount=...), "missing_field:amount"),
        (order_bytes(timestamp=1795773600123), "bad_type:timestamp"),
        (order_bytes(timestamp="2026-11-27T10:00:00Z"), "bad_timestamp"),  # no milliseconds
        (order_bytes(timestamp="2026-11-27T10:00:00.123+01:00"), "bad_timestamp"),
        (order_bytes(timestamp="2026-02-30T10:00:00.000Z"), "bad_timestamp"),  # no such day
        (order_bytes(timestamp="2026-11-27T24:00:00.000Z"), "bad_timestamp"),
        (order_bytes(order_id=7), "bad_type:order_id"),
        (order_bytes(currency=978), "bad_type:currency"),
        (order_bytes(amount="12.30"), "bad_type:amount"),
        (order_bytes(amount=True), "bad_type:amount"),
        (order_bytes().replace(b"12.3", b"12.345"), "bad_type:amount"),
        (order_bytes().replace(b"12.3", b"12.300"), "bad_type:amount"),  # more than two decimals written
        (order_bytes().replace(b"12.3", b"10000000000"), "bad_type:amount"),  # beyond DECIMAL(12,2)
        (order_bytes().replace(b"12.3", b"-0.01"), "negative_amount"),
    ],
)
def test_bad_orders_get_the_contract_reason(value: bytes | None, reason: str) -> None:
    assert reason_of(value) == reason


@pytest.mark.parametrize("amount", [b"0.00", b"-0.00", b"12", b"1.5e2", b"9999999999.99"])
def test_amounts_the_contract_accepts(amount: bytes) -> None:
    order = parse_order(order_bytes().replace(b"12.3", amount))
    assert order.order_id == "order-1"
