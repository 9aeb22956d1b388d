"""The `--trigger` argument of the jobs: `available-now`, `processing-time=5s`, `real-time[=5m]`.

- `available-now` -> `availableNow=True`: what the source holds now, in bounded micro-batches, then
  the query stops;
- `processing-time=5s` -> `processingTime="5 seconds"`: a micro-batch every 5 s (`0s`: back to back);
- `real-time` -> `realTime="5 minutes"`, `real-time=30s` -> `realTime="30 seconds"`: Spark 4.x
  real-time mode (below).

Real-time mode (`Trigger.RealTime`, Spark 4.1+) runs long-lived tasks that read, transform and write
each record as it arrives (milliseconds end to end) instead of planning a micro-batch per trigger.
The duration is how often progress is checkpointed (a batch's length), not a latency: on a crash
everything since the last checkpoint is processed again. Its constraints, checked by Spark when the
query starts: update output mode only; stateless queries (projections, filters, unions,
stream-static joins); sources and sinks Kafka, foreach or console (not Delta, memory or
foreachBatch); and one free task slot per source partition for as long as the query runs, since its
tasks never end (`local[2]` runs a query on a 1-partition topic, or two such queries, and no more).
"""

from __future__ import annotations

import re
from typing import Any

from pipelines.errors import PipelinesError

_PROCESSING = re.compile(r"^processing-time=(\d+(?:\.\d+)?)\s*(ms|s|seconds?|minutes?|m)?$")
_REAL_TIME = re.compile(r"^real-?time(?:=(\d+(?:\.\d+)?)\s*(ms|s|seconds?|minutes?|m)?)?$")

REAL_TIME_DEFAULT_DURATION = "5 minutes"
"""Spark's own default batch duration of `Trigger.RealTime()`: the checkpoint interval."""


def _duration(number: str, unit: str | None) -> str:
    unit_name = {"ms": "milliseconds", "s": "seconds", "m": "minutes"}.get(unit or "s", unit or "s")
    if not unit_name.endswith("s"):
        unit_name += "s"
    return f"{number} {unit_name}"


def trigger_kwargs(spec: str) -> dict[str, Any]:
    """Keyword arguments for `DataStreamWriter.trigger` from a `--trigger` value."""
    spec = spec.strip().lower()
    if spec in ("available-now", "availablenow"):
        return {"availableNow": True}
    m = _PROCESSING.match(spec)
    if m:
        return {"processingTime": _duration(m.group(1), m.group(2))}
    m = _REAL_TIME.match(spec)
    if m:
        return {"realTime": _duration(m.group(1), m.group(2)) if m.group(1) else REAL_TIME_DEFAULT_DURATION}
    raise PipelinesError(
        f"unknown --trigger {spec!r}: use available-now, processing-time=<N>s (e.g. processing-time=5s) "
        "or real-time[=<checkpoint interval>] (e.g. real-time=30s)"
    )


def is_real_time(spec: str) -> bool:
    """True for a `--trigger` value that selects Spark's real-time mode."""
    return "realTime" in trigger_kwargs(spec)


def is_available_now(spec: str) -> bool:
    """True for a `--trigger` value that processes what is there and stops."""
    return "availableNow" in trigger_kwargs(spec)
