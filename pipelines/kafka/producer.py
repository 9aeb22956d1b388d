"""Producers the project uses, and a produce loop that never loses track of a record.

Every producer sets `partitioner=murmur2_random`: librdkafka's default (`consistent_random`, CRC32)
would put a key on a different partition than Java clients (Spark's kafka sink, Kafka Streams) do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

LIBRDKAFKA_LOGGER = logging.getLogger("pipelines.kafka.librdkafka")
"""librdkafka's own log lines (transient broker warnings and the like) go to Python logging here
instead of straight to stderr, so the entry point decides what a user sees."""

PRODUCER_DEFAULTS: dict[str, str | int | bool] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 262144,
    "compression.type": "lz4",
}


def make_producer(
    bootstrap_servers: str, overrides: Mapping[str, str | int | bool] | None = None
) -> Producer:
    """A producer with the project's defaults; `overrides` win (except the partitioner rule)."""
    conf: dict[str, str | int | bool] = {
        "bootstrap.servers": bootstrap_servers,
        **PRODUCER_DEFAULTS,
        **(overrides or {}),
    }
    return Producer(conf, logger=LIBRDKAFKA_LOGGER)


@dataclass(frozen=True)
class Delivered:
    """One record as the broker acknowledged it: the ground truth for tests and reconciliation."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int


@dataclass
class ProduceReport:
    sent: int = 0
    delivered: list[Delivered] = field(default_factory=list)
    failed: list[tuple[bytes | None, str]] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return len(self.delivered)


def produce_all(
    producer: Producer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    flush_timeout_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Produce every (key, value) to `topic`, wait for all delivery reports, and return them.

    `poll(0)` after each produce serves delivery callbacks as they arrive; a full local queue
    (BufferError) waits for deliveries to drain instead of failing. Records still unacknowledged
    after `flush_timeout_s` are reported as failed, never dropped silently.
    """
    report = ProduceReport()

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            report.failed.append((msg.key(), str(err)))
            return
        value = msg.value()
        partition, offset = msg.partition(), msg.offset()
        assert value is not None and partition is not None and offset is not None
        report.delivered.append(Delivered(msg.key(), value, partition, offset))

    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # back-pressure: let deliveries drain the local queue
        report.sent += 1
        producer.poll(0)
        if on_progress is not None:
            on_progress(report.sent)
    remaining = producer.flush(flush_timeout_s)
    if remaining:
        report.failed.extend([(None, f"not acknowledged within {flush_timeout_s} s")] * remaining)
    return report
