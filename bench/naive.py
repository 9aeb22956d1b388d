"""The naive Python pattern, as tutorials write it: a confluent-kafka poll loop, `json.loads`, and
a dict of one-minute windows per category. Run as a child process by the aggregation workload:

    python -m bench.naive BOOTSTRAP TOPIC COUNT OUT.json

Reads from the earliest offset until it has seen COUNT records (what the topic held when the
workload started), then writes the windows and the seconds from creating the consumer to the last
record. Revenue is summed as floats, as tutorials do, and rounded to cents at the end.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime

from confluent_kafka import Consumer


def main(bootstrap: str, topic: str, count: int, out: str) -> None:
    started = time.monotonic()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"naive-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    windows: dict[tuple[str, str], list[float]] = {}
    seen = 0
    try:
        while seen < count:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            sale = json.loads(msg.value())
            ts = datetime.fromisoformat(sale["timestamp"])
            minute = ts.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")
            window = windows.setdefault((minute, sale["category"]), [0.0, 0])
            window[0] += sale["amount"]
            window[1] += 1
            seen += 1
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    rows = [[m, c, round(v[0], 2), v[1]] for (m, c), v in windows.items()]
    with open(out, "w") as f:
        json.dump({"seconds": elapsed, "records": seen, "windows": rows}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
