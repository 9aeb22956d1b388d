"""Quix Streams with a tumbling-window sum, as its documentation writes it: JSON values, event
time from the record, `group_by("category")`, a one-minute tumbling window with `Sum` and `Count`.
Run as a child process by the aggregation workload:

    python -m bench.quix BOOTSTRAP TOPIC COUNT OUT.json STATE_DIR

Windows are emitted with `.current()` (every update) and the latest value per window is kept, so
the last windows count too (`.final()` would hold them until later data closes them). Stops once
COUNT records went through the window; the seconds are from creating the application to then.
A grace period covering the whole topic (see below); defaults otherwise (changelog topics on,
at-least-once), as a user would run it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum

GRACE_MS = 30 * 24 * 3600 * 1000


def event_time_ms(value: Any, _headers: Any, _timestamp: float, _type: Any) -> int:
    return int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1000)


def main(bootstrap: str, topic_name: str, count: int, out: str, state_dir: str) -> None:
    started = time.monotonic()
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel=logging.WARNING,
    )
    topic = app.topic(topic_name, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(topic)
    sdf = sdf.group_by("category")
    # The backlog's three partitions are read at different speeds, so the repartition topic's
    # event time jumps back and forth by far more than the generator's disorder: a grace period
    # covering the whole topic keeps every record (with grace 0, Quix drops most as late).
    window = sdf.tumbling_window(duration_ms=60_000, grace_ms=GRACE_MS)
    sdf = window.agg(revenue=Sum("amount"), sales_count=Count()).current()
    latest: dict[tuple[int, str], tuple[float, int]] = {}
    seen = [0]
    elapsed = [0.0]

    def collect(value: dict[str, Any], key: Any, _ts: int, _headers: Any) -> None:
        category = key.decode() if isinstance(key, bytes) else str(key)
        latest[(value["start"], category)] = (value["revenue"], value["sales_count"])
        seen[0] += 1
        if seen[0] >= count:
            elapsed[0] = time.monotonic() - started
            app.stop()

    sdf.update(collect, metadata=True)
    app.run()
    rows = [
        [datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%dT%H:%M"), cat, round(rev, 2), n]
        for (start, cat), (rev, n) in latest.items()
    ]
    with open(out, "w") as f:
        json.dump({"seconds": elapsed[0], "records": seen[0], "windows": rows}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
