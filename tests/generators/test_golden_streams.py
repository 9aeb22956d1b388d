"""The generators' streams, byte for byte, as they were before their hot loops were optimised.

The seeded streams are a contract (pipelines.generators.events: the same seed gives the same events
on one Python minor version): ledgers, tests and published benchmark results depend on them. These
digests were taken from the generators as they were before the draws were inlined (`_randbelow` and
`bisect` instead of `randint` and `choices`), JSON moved to orjson and events became NamedTuples; a
change that alters a single byte, kind, reason, lateness or event time fails here. (Taken on
Python 3.11, the version CI runs; `random` keeps its algorithms within a minor version.)
"""

from __future__ import annotations

import hashlib

import pytest

from pipelines.generators.events import generate_events

GOLDEN = {
    "sales": "2f7d88e536b8b4d80d820119ee2f36e3d137869cea03bfb22195c6efc1a90aa2",
    "orders": "c9c9c96103d57c44372ebb79f4654faf7d632fa6418185fd1415f6aae85a52d9",
}


@pytest.mark.parametrize("event_type", list(GOLDEN))
def test_the_seeded_stream_is_byte_for_byte_what_it_was(event_type: str) -> None:
    events = generate_events(event_type, 20_000, seed=11, late_fraction=0.02, malformed_fraction=0.03)
    lines = [
        e.key + b"|" + e.value + b"|" + str((e.kind, e.reason, e.late_by_ms, e.event_time)).encode()
        for e in events
    ]
    assert hashlib.sha256(b"\n".join(lines)).hexdigest() == GOLDEN[event_type]
