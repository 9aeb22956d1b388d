"""Heartbeats: records that carry only event time, so windows close when the input goes quiet.

A windowed job in append mode writes a window once the watermark (latest event time seen minus
the allowed lateness) passes its end. When events stop, event time stops, and the last windows
would wait for the next event, however long that takes. A heartbeat on every partition moves
event time on; the jobs filter heartbeats out after the watermark and before aggregating.

Contract: key `heartbeat`, value `{"heartbeat": true, "timestamp": "<ISO-8601 UTC ms Z>"}`.
"""

from __future__ import annotations

import json
from datetime import datetime

from confluent_kafka import Producer

from pipelines.errors import PipelinesError
from pipelines.generators.common import format_timestamp

HEARTBEAT_KEY = b"heartbeat"


def heartbeat_value(at: datetime) -> bytes:
    return json.dumps({"heartbeat": True, "timestamp": format_timestamp(at)}, separators=(",", ":")).encode()


def send_heartbeats(
    producer: Producer, topic: str, at: datetime, timeout_s: float = 30.0, *, value: bytes | None = None
) -> int:
    """Send one heartbeat at event time `at` to every partition of `topic` and wait for the
    acknowledgements; returns how many were sent. `value` replaces the JSON heartbeat (the Avro
    `Heartbeat` record of `--format avro`). Every partition gets one because a job's
    watermark may be computed per source partition in other engines, and it costs nothing."""
    metadata = producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise PipelinesError(f"cannot send heartbeats: topic {topic!r} not found")
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    value = value if value is not None else heartbeat_value(at)
    for partition in sorted(metadata.partitions):
        producer.produce(topic, key=HEARTBEAT_KEY, value=value, partition=partition, on_delivery=on_delivery)
    if producer.flush(timeout_s) or failures:
        raise PipelinesError(f"heartbeats to {topic!r} were not all acknowledged: {failures[:1]}")
    return len(metadata.partitions)
