"""The ground truth of the aggregation workload, computed from the bytes that went on the topic
(not with any code under test), and the comparison every implementation's result must pass.

Windows are keyed by (minute start as `YYYY-MM-DDTHH:MM`, category); revenue is an exact Decimal
with two places, the count an int.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

WindowKey = tuple[str, str]
Totals = dict[WindowKey, tuple[Decimal, int]]
CENT = Decimal("0.01")


@dataclass
class ExpectedTotals:
    """Revenue and count per (minute, category) of the sales sent, built one value at a time."""

    events: int = 0
    value_bytes: int = 0
    _sums: dict[WindowKey, list[object]] = field(default_factory=dict)
    max_timestamp: str = ""

    def add(self, value: bytes) -> None:
        doc = json.loads(value, parse_float=Decimal)
        ts: str = doc["timestamp"]
        key = (ts[:16], doc["category"])
        slot = self._sums.get(key)
        if slot is None:
            self._sums[key] = [doc["amount"], 1]
        else:
            slot[0] = slot[0] + doc["amount"]  # type: ignore[operator]
            slot[1] = slot[1] + 1  # type: ignore[operator]
        self.events += 1
        self.value_bytes += len(value)
        self.max_timestamp = max(self.max_timestamp, ts)

    def totals(self) -> Totals:
        return {k: (Decimal(v[0]).quantize(CENT), int(v[1])) for k, v in self._sums.items()}  # type: ignore[call-overload]


def normalise(rows: Iterable[tuple[str, str, object, int]]) -> Totals:
    """(minute text or ISO timestamp, category, revenue as anything Decimal() takes, count) rows ->
    Totals; floats are rounded to cents from their shortest repr (what `round(x, 2)` gives)."""
    out: Totals = {}
    for minute, category, revenue, count in rows:
        amount = Decimal(repr(round(revenue, 2))) if isinstance(revenue, float) else Decimal(str(revenue))
        out[(minute[:16], category)] = (amount.quantize(CENT), int(count))
    return out


@dataclass(frozen=True)
class Check:
    """Whether an implementation's windows equal the expected ones."""

    ok: bool
    windows_expected: int
    windows_compared: int
    mismatches: list[str]
    missing: int = 0
    """Expected windows the implementation did not emit (allowed only where `allow_missing` says)."""
    events_counted: int = 0
    missing_events: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "windows_expected": self.windows_expected,
            "windows_compared": self.windows_compared,
            "missing": self.missing,
            "events_counted": self.events_counted,
            "missing_events": self.missing_events,
            "mismatches": self.mismatches[:5],
        }


def compare(
    actual: Mapping[WindowKey, tuple[Decimal, int]], expected: Totals, *, allow_open_tail: bool = False
) -> Check:
    """Every window in `actual` must equal `expected` exactly (revenue and count) and none may be
    missing, except, with `allow_open_tail`, windows later than every window emitted: a job with a
    watermark leaves the last windows open at the end of an available-now run (the caller checks
    that their events are exactly the ones the job reports as still open: `missing_events`)."""
    mismatches: list[str] = []
    for key, (revenue, count) in sorted(actual.items()):
        want = expected.get(key)
        if want is None:
            mismatches.append(f"{key}: unexpected window {revenue} / {count}")
        elif want != (revenue, count):
            mismatches.append(f"{key}: got {revenue} / {count}, expected {want[0]} / {want[1]}")
    missing = [k for k in expected if k not in actual]
    last_emitted = max((k[0] for k in actual), default="")
    bad_missing = [k for k in missing if not allow_open_tail or k[0] <= last_emitted]
    mismatches.extend(f"{k}: window missing" for k in sorted(bad_missing))
    return Check(
        ok=not mismatches,
        windows_expected=len(expected),
        windows_compared=len(actual),
        mismatches=mismatches,
        missing=len(missing),
        events_counted=sum(c for _, c in actual.values()),
        missing_events=sum(expected[k][1] for k in missing),
    )
