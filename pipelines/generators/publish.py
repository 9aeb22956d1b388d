"""Send generated events to a Kafka topic and keep the ledger of what the broker acknowledged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from pipelines.generators.events import GeneratedEvent
from pipelines.generators.ledger import LedgerEntry, LedgerWriter
from pipelines.kafka.producer import Delivered, ProduceReport, produce_all


@dataclass(frozen=True)
class PublishReport:
    """What a generator run sent, by kind, and what the delivery reports said."""

    produce: ProduceReport
    kinds: Counter[str]
    """Events sent per kind (`valid`, `late`, `malformed`)."""
    ledger: Path | None = None

    def summary(self) -> str:
        """One line: sent (with how many late and malformed), acknowledged, failed, seconds, events/s."""
        p = self.produce
        return (
            f"sent {p.sent:,} (late {self.kinds['late']:,}, malformed {self.kinds['malformed']:,}), "
            f"acknowledged {p.acknowledged:,}, failed {len(p.failed):,} "
            f"in {p.seconds:.2f} s ({p.events_per_s:,.0f} events/s)"
        )


def publish_events(
    producer: Producer,
    topic: str,
    events: Iterable[GeneratedEvent],
    *,
    ledger: Path | None = None,
    rate: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    flush_timeout_s: float = 60.0,
    keep_delivered: bool = False,
    errors_only: bool = False,
) -> PublishReport:
    """Produce `events` (whose `seq` must count 0, 1, 2, ... in order) to `topic` with
    produce_all's guarantees (back-pressure, pacing at `rate`, every record reported), and write
    one ledger line per event sent to `ledger` (see pipelines.generators.ledger), also when the run
    is interrupted. Only the events in flight are held in memory, unless `keep_delivered`.

    `errors_only` (no ledger): the producer reports only failures (`delivery.report.only.error`),
    and acknowledgements are counted at the end (produce_all)."""
    in_flight: dict[int, GeneratedEvent] = {}
    kinds: Counter[str] = Counter()

    writer = LedgerWriter(ledger) if ledger is not None else None

    def records() -> Iterator[tuple[bytes | None, bytes]]:
        for position, event in enumerate(events):
            if event.seq != position:
                raise ValueError(f"event seq {event.seq} at position {position}: seq must count from 0")
            if writer is not None:  # only the ledger needs the event back when its report arrives
                in_flight[position] = event
            kinds[event.kind] += 1
            yield event.key, event.value

    def entry(
        event: GeneratedEvent,
        partition: int | None = None,
        offset: int | None = None,
        error: str | None = None,
    ) -> LedgerEntry:
        return LedgerEntry(
            seq=event.seq,
            key=event.key,
            value=event.value,
            kind=event.kind,
            partition=partition,
            offset=offset,
            reason=event.reason,
            late_by_ms=event.late_by_ms,
            error=error,
        )

    def on_delivered(seq: int, delivered: Delivered) -> None:
        event = in_flight.pop(seq)
        if writer is not None:
            writer.add(entry(event, partition=delivered.partition, offset=delivered.offset))

    def on_failed(seq: int, _key: bytes | None, error: str) -> None:
        event = in_flight.pop(seq)
        if writer is not None:
            writer.add(entry(event, error=error))

    try:
        report = produce_all(
            producer,
            topic,
            records(),
            flush_timeout_s=flush_timeout_s,
            on_progress=on_progress,
            rate=rate,
            on_delivered=on_delivered if writer is not None else None,
            on_failed=on_failed if writer is not None else None,
            keep_delivered=keep_delivered,
            errors_only=errors_only,
        )
    finally:
        if writer is not None:
            writer.close()
    return PublishReport(report, kinds, ledger)
