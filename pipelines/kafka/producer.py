"""Producers the project uses, and a produce loop that never loses track of a record.

Every producer sets `partitioner=murmur2_random`: librdkafka's default (`consistent_random`, CRC32)
would put a key on a different partition than Java clients (Spark's kafka sink, Kafka Streams) do.

The defaults are for throughput without giving up safety: idempotence on and `acks=all` (no
duplicates from the client's own retries, nothing acknowledged before every in-sync replica has
it), batches that fill for up to `linger.ms` and up to `batch.size` bytes, and lz4 compression
(cheap on CPU; zstd compresses JSON better for a little more).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipelines.errors import PipelinesError
from pipelines.security import client_conf

LIBRDKAFKA_LOGGER = logging.getLogger("pipelines.kafka.librdkafka")
"""librdkafka's own log lines (transient broker warnings and the like) go to Python logging here
instead of straight to stderr, so the entry point decides what a user sees."""

PARTITIONER = "murmur2_random"
PRODUCER_DEFAULTS: dict[str, str | int | bool] = {
    "partitioner": PARTITIONER,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 262144,
    "compression.type": "lz4",
}
COMPRESSION_TYPES = ("lz4", "zstd", "snappy", "gzip", "none")

ConfValue = str | int | bool


def make_producer(bootstrap_servers: str, overrides: Mapping[str, ConfValue] | None = None) -> Producer:
    """A producer with the project's defaults; `overrides` win, except that the partitioner stays
    murmur2_random (asking for another raises PipelinesError, as does any setting librdkafka
    rejects, such as idempotence with `acks` other than `all`)."""
    conf: dict[str, ConfValue] = {
        **client_conf(bootstrap_servers),
        **PRODUCER_DEFAULTS,
        **(overrides or {}),
    }
    if conf["partitioner"] != PARTITIONER:
        raise PipelinesError(
            f"partitioner={conf['partitioner']} would put keys on other partitions than Java clients do; "
            f"the project's producers use {PARTITIONER}"
        )
    try:
        return Producer(conf, logger=LIBRDKAFKA_LOGGER)
    except KafkaException as exc:
        raise PipelinesError(f"invalid producer configuration: {_error_text(exc)}") from None


def _error_text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


@dataclass(frozen=True)
class Delivered:
    """One record as the broker acknowledged it: the ground truth for tests and reconciliation."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int


@dataclass
class ProduceReport:
    """What a produce loop did, counted from the delivery reports."""

    sent: int = 0
    """Records handed to the producer."""
    delivered: list[Delivered] = field(default_factory=list)
    """The acknowledged records (empty when the loop ran with `keep_delivered=False`)."""
    failed: list[tuple[bytes | None, str]] = field(default_factory=list)
    """(key, error) of every record that was sent but not acknowledged."""
    acknowledged: int = 0
    """Records the broker acknowledged."""
    seconds: float = 0.0
    """From the first produce until the last delivery report (or the flush timeout)."""
    queue_full_waits: int = 0
    """How often the local queue was full and the loop waited for deliveries (back-pressure)."""

    @property
    def events_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: sent, acknowledged, failed, seconds, events/s."""
        return (
            f"sent {self.sent:,}, acknowledged {self.acknowledged:,}, failed {len(self.failed):,} "
            f"in {self.seconds:.2f} s ({self.events_per_s:,.0f} events/s)"
        )


def produce_all(
    producer: Producer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    flush_timeout_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
    rate: float | None = None,
    on_delivered: Callable[[int, Delivered], None] | None = None,
    on_failed: Callable[[int, bytes | None, str], None] | None = None,
    keep_delivered: bool = True,
    errors_only: bool = False,
) -> ProduceReport:
    """Produce every (key, value) to `topic`, wait for all delivery reports, and return them.

    `poll(0)` every 64 records serves delivery callbacks as they arrive; a full local queue
    (BufferError) waits for deliveries to drain (`poll(0.1)`, then the same record again) instead
    of failing. Records still unacknowledged after `flush_timeout_s` are reported as failed, never
    dropped silently (they stay queued, so a producer used again may still deliver them); the
    flush also runs when the loop is interrupted, so the reports of what was sent still arrive.

    `rate` (records per second) paces sending on the monotonic clock: record n is sent no earlier
    than n / rate seconds after the first, delivery reports being served while waiting. `None`
    sends as fast as the producer takes them.

    `on_delivered(seq, delivered)` and `on_failed(seq, key, error)` are called once per record,
    `seq` being its position in `records`; `on_progress(sent)` after each produce. With
    `keep_delivered=False` the report only counts acknowledgements (for runs too big to hold); with
    neither callback either, records not acknowledged by the end of the flush are reported by
    count, with no key (the generator's fast path: no per-record bookkeeping).

    `errors_only`: the producer was made with `delivery.report.only.error=true`, so only failures
    are reported. When the flush ends in time every record has left the queue, and those not
    reported failed were acknowledged (librdkafka reports every record that fails); when it times
    out, what it left in the queue counts as not acknowledged. It spares the counting path a Python
    call per record; it needs neither callback nor `keep_delivered`.
    """
    counting_only = not keep_delivered and on_delivered is None and on_failed is None
    if errors_only and not counting_only:
        raise ValueError("errors_only only counts: it takes no callback and keeps no delivered record")
    if rate is not None and rate <= 0:
        raise ValueError(f"the rate must be positive, not {rate}")
    report = ProduceReport()
    in_flight: dict[int, bytes | None] = {}

    def on_delivery(seq: int, err: KafkaError | None, msg: Message) -> None:
        if seq not in in_flight:
            return  # already reported as not acknowledged when the flush timed out
        key = in_flight.pop(seq)
        if err is not None:
            report.failed.append((key, err.str()))
            if on_failed is not None:
                on_failed(seq, key, err.str())
            return
        report.acknowledged += 1
        if not keep_delivered and on_delivered is None:
            return  # counting only: no copy of the record's bytes (the generator's hot path)
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        delivered = Delivered(msg.key(), msg.value() or b"", partition, offset)
        if keep_delivered:
            report.delivered.append(delivered)
        if on_delivered is not None:
            on_delivered(seq, delivered)

    def count_delivery(err: KafkaError | None, msg: Message) -> None:
        # The generator's hot path: one callback for all records, no per-record bookkeeping; a
        # refused record is reported with its key, one never acknowledged by count (below).
        if report.seconds:
            return  # after the loop's flush timed out: already reported as not acknowledged
        if err is None:
            report.acknowledged += 1
        else:
            report.failed.append((msg.key(), err.str()))

    produce, poll = producer.produce, producer.poll
    started = time.monotonic()
    try:
        for seq, (key, value) in enumerate(records):
            if rate is not None:
                _serve_until(producer, started + seq / rate)
            callback = count_delivery if counting_only else functools.partial(on_delivery, seq)
            while True:
                try:
                    produce(topic, value, key, on_delivery=callback)
                    break
                except BufferError:
                    # Back-pressure: the local queue is full; serving delivery reports drains it.
                    report.queue_full_waits += 1
                    poll(0.1)
            if not counting_only:
                in_flight[seq] = key
            report.sent += 1
            if not seq & 63:
                # Delivery reports every 64 records, not after each: each poll is a call into
                # librdkafka, and reports wait in its queue meanwhile (a full queue polls above).
                poll(0)
            if on_progress is not None:
                on_progress(report.sent)
    finally:
        left = producer.flush(flush_timeout_s)
        error = f"not acknowledged within {flush_timeout_s:g} s"
        if errors_only:
            # A flush that ended in time left nothing unreported: whatever did not fail was
            # acknowledged. One that timed out counts what it left (log lines included, which the
            # same queue carries) as not acknowledged.
            unreported = report.sent - len(report.failed)
            report.acknowledged = unreported - min(left, unreported)
        if counting_only:
            report.failed += [(None, error)] * (report.sent - report.acknowledged - len(report.failed))
        for seq, key in sorted(in_flight.items()):
            report.failed.append((key, error))
            if on_failed is not None:
                on_failed(seq, key, error)
        in_flight.clear()
        report.seconds = time.monotonic() - started
    return report


def _serve_until(producer: Producer, due: float) -> None:
    """Wait until the monotonic clock reaches `due`, serving delivery reports meanwhile.

    librdkafka's poll takes whole milliseconds and returns at once for less, so the last fraction
    of a millisecond is slept: polling it would spin a core (at 1,000 records/s, every interval is
    under a millisecond, and the generator burnt a whole core of a 2-core machine doing it)."""
    while (left := due - time.monotonic()) > 0:
        if left >= 0.001:
            producer.poll(left)
        else:
            time.sleep(left)
