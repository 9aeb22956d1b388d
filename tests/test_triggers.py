from __future__ import annotations

import pytest

from pipelines.errors import PipelinesError
from pipelines.triggers import is_available_now, is_real_time, trigger_kwargs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("available-now", {"availableNow": True}),
        ("processing-time=5s", {"processingTime": "5 seconds"}),
        ("processing-time=0s", {"processingTime": "0 seconds"}),
        ("processing-time=500ms", {"processingTime": "500 milliseconds"}),
        ("processing-time=1 minute", {"processingTime": "1 minutes"}),
        # Spark's own default batch duration (checkpoint interval) of Trigger.RealTime().
        ("real-time", {"realTime": "5 minutes"}),
        ("Real-Time", {"realTime": "5 minutes"}),
        ("real-time=30s", {"realTime": "30 seconds"}),
        ("real-time=5 seconds", {"realTime": "5 seconds"}),
        ("real-time=2m", {"realTime": "2 minutes"}),
        ("realtime=10s", {"realTime": "10 seconds"}),
    ],
)
def test_trigger_specs(spec: str, expected: dict[str, object]) -> None:
    assert trigger_kwargs(spec) == expected


@pytest.mark.parametrize(
    ("spec", "real_time", "available_now"),
    [("available-now", False, True), ("processing-time=0s", False, False), ("real-time=5s", True, False)],
)
def test_trigger_kinds(spec: str, real_time: bool, available_now: bool) -> None:
    assert (is_real_time(spec), is_available_now(spec)) == (real_time, available_now)


@pytest.mark.parametrize(
    "spec", ["sometimes", "real-time=", "real-time=fast", "continuous=1s", "processing-time"]
)
def test_unknown_trigger_says_what_is_accepted(spec: str) -> None:
    with pytest.raises(PipelinesError, match=r"available-now, processing-time=<N>s .* or real-time"):
        trigger_kwargs(spec)
