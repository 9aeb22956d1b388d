"""The `--trigger` argument of the jobs: `available-now`, `processing-time=5s`, `once`."""

from __future__ import annotations

import re
from typing import Any

from pipelines.errors import PipelinesError

_PROCESSING = re.compile(r"^processing-time=(\d+(?:\.\d+)?)\s*(ms|s|seconds?|minutes?|m)?$")


def trigger_kwargs(spec: str) -> dict[str, Any]:
    """Keyword arguments for `DataStreamWriter.trigger` from a `--trigger` value."""
    spec = spec.strip().lower()
    if spec in ("available-now", "availablenow"):
        return {"availableNow": True}
    m = _PROCESSING.match(spec)
    if m:
        number, unit = m.group(1), (m.group(2) or "s")
        unit_name = {"ms": "milliseconds", "s": "seconds", "m": "minutes"}.get(unit, unit)
        if not unit_name.endswith("s"):
            unit_name += "s"
        return {"processingTime": f"{number} {unit_name}"}
    raise PipelinesError(
        f"unknown --trigger {spec!r}: use available-now or processing-time=<N>s (e.g. processing-time=5s)"
    )
