"""Fixtures of the processor tests (test_processor.py, test_processor_kill.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import Topics, make_topics


@pytest.fixture
def topics(bootstrap: str, new_topic: Callable[..., str]) -> Topics:
    """A fresh source and sink of three partitions each, and the source's dead-letter topic."""
    return make_topics(bootstrap, new_topic)
