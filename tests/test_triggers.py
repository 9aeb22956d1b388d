from __future__ import annotations

import pytest

from pipelines.errors import PipelinesError
from pipelines.triggers import trigger_kwargs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("available-now", {"availableNow": True}),
        ("processing-time=5s", {"processingTime": "5 seconds"}),
        ("processing-time=0s", {"processingTime": "0 seconds"}),
        ("processing-time=500ms", {"processingTime": "500 milliseconds"}),
        ("processing-time=1 minute", {"processingTime": "1 minutes"}),
    ],
)
def test_trigger_specs(spec: str, expected: dict[str, object]) -> None:
    assert trigger_kwargs(spec) == expected


def test_unknown_trigger_says_what_is_accepted() -> None:
    with pytest.raises(PipelinesError, match="available-now or processing-time"):
        trigger_kwargs("sometimes")
