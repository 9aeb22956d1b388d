"""What every generator shares: the fixed start of event time, the contract's timestamp text, and
JSON with money written as exact numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

DEFAULT_START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
"""Where every generated stream's event time starts (never the wall clock, so runs reproduce)."""


def format_timestamp(ts: datetime) -> str:
    """The contract's timestamp: ISO-8601 UTC with milliseconds and a `Z`."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def dump_json(document: Mapping[str, object]) -> bytes:
    """Compact JSON (UTF-8) of a flat object, fields in the mapping's order.

    `Decimal` values become JSON numbers with exactly two decimals, written from the Decimal's text
    so no float rounding can touch them (`Decimal("12.30")` -> `12.30`, never `12.3`).
    """
    plain: dict[str, object] = {}
    numbers: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, Decimal):
            # A placeholder string, swapped for the number's text after json.dumps.
            placeholder = f"__decimal_{len(numbers)}__"
            numbers[f'"{placeholder}"'] = f"{value:.2f}"
            plain[name] = placeholder
        else:
            plain[name] = value
    text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    for placeholder, number in numbers.items():
        text = text.replace(placeholder, number)
    return text.encode()
