"""What every generator shares: the fixed start of event time, the contract's timestamp text, and
JSON with money written as exact numbers."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from random import NV_MAGICCONST  # type: ignore[attr-defined]

import orjson

DEFAULT_START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
"""Where every generated stream's event time starts (never the wall clock, so runs reproduce)."""


def clock_and_cents(
    rng: random.Random, count: int, *, mean_gap_ms: int, disorder_ms: int, mu: float, sigma: float
) -> Iterator[tuple[int, int]]:
    """The draws every event type starts with, one pair per event: its event time in milliseconds
    after the start (a clock advancing by `randint(0, 2 * mean_gap_ms)` per event, minus
    `randint(0, disorder_ms)`), and its amount in cents, `int(lognormvariate(mu, sigma)) + 1`.

    They are the bodies of Python 3.11's `random._randbelow` and Kinderman and Monahan's
    `normalvariate`, inlined on `rng`'s C draws `getrandbits` and `random`: the same numbers as
    those calls, without their calls and argument checks, which took most of a generator's time.
    Lazy: the caller draws an event's other values from `rng` before asking for the next pair, in
    the order the streams have always drawn them."""
    bits, uniform, log, exp = rng.getrandbits, rng.random, math.log, math.exp
    gap_draws, disorder_draws = 2 * mean_gap_ms + 1, disorder_ms + 1
    gap_k, disorder_k = gap_draws.bit_length(), disorder_draws.bit_length()
    clock_ms = 0  # the stream's clock in whole milliseconds since the start
    for _ in range(count):
        r = bits(gap_k)
        while r >= gap_draws:
            r = bits(gap_k)
        clock_ms += r
        r = bits(disorder_k)
        while r >= disorder_draws:
            r = bits(disorder_k)
        while True:
            u1 = uniform()
            u2 = 1.0 - uniform()
            z = NV_MAGICCONST * (u1 - 0.5) / u2
            if z * z / 4.0 <= -log(u2):
                break
        yield clock_ms - r, int(exp(mu + z * sigma)) + 1


def format_timestamp(ts: datetime) -> str:
    """The contract's timestamp: ISO-8601 UTC with milliseconds and a `Z`."""
    # isoformat is C code and truncates to milliseconds as `microsecond // 1000` does; a third of
    # the generators' time went to strftime before (bench/: generator serialisation).
    text = (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).isoformat(timespec="milliseconds")
    if len(text) == 29 and text.endswith("+00:00"):
        return text[:23] + "Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"  # years < 1000 or > 9999


def _decimal_text(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(f"{value:.2f}")
    raise TypeError


def dump_json(document: Mapping[str, object]) -> bytes:
    """Compact JSON (UTF-8) of a flat object, fields in the mapping's order.

    `Decimal` values become JSON numbers with exactly two decimals, written from the Decimal's text
    so no float rounding can touch them (`Decimal("12.30")` -> `12.30`, never `12.3`).
    """
    # orjson (C) for the flat documents the generators make (strings, Decimals, ints, bools, None),
    # the Decimal's text spliced in as a raw JSON fragment: the same bytes as the slow path below,
    # a third of the time. (Not for floats in general: orjson writes NaN as null.)
    try:
        return orjson.dumps(document, default=_decimal_text)
    except (orjson.JSONEncodeError, TypeError):
        return _dump_json_slow(document)


def _dump_json_slow(document: Mapping[str, object]) -> bytes:
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
