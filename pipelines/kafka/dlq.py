"""Dead letters: a record that cannot be processed goes to `<topic>.dlq`, untouched, with why and where from.

The contract (`pipelines.contracts.dead_letters`): the dead letter's key is the original key and
its value the original bytes, unchanged; five headers say why and where from. Any headers the
original record carried come first, in their order, except ones that reuse those five names.

The writer produces with the project's producer (`partitioner=murmur2_random`, idempotent,
`acks=all`), so a dead letter lands on the partition its key would on any Java client, and `send`
returns only once the broker has acknowledged it: a caller may commit the source offset afterwards
without losing the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from pipelines.contracts import DEAD_LETTER_HEADERS, dead_letter_topic
from pipelines.errors import PipelinesError
from pipelines.kafka.producer import Delivered, make_producer

Headers = list[tuple[str, str | bytes | None]]
"""Kafka headers as confluent-kafka takes them; the dead-letter writer always uses bytes values."""


class DeadLetterError(PipelinesError):
    """A dead letter could not be written (no such topic, not acknowledged in time)."""


@dataclass(frozen=True)
class DeadLetter:
    """One record that failed, with the reason and its origin: what the dead-letter topic receives."""

    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_headers: tuple[tuple[str, bytes | None], ...] = ()

    @classmethod
    def from_message(cls, msg: Message, reason: str, detail: str) -> DeadLetter:
        """The dead letter of a consumed record: its key, value bytes and headers, unchanged."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("only a consumed record (with topic, partition and offset) can be dead-lettered")
        return cls(
            key=msg.key(),
            value=msg.value(),
            reason=reason,
            detail=detail,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            original_headers=tuple(_header_list(msg.headers())),
        )

    @property
    def topic(self) -> str:
        return dead_letter_topic(self.source_topic)

    def headers(self) -> Headers:
        """The original headers (minus the five reserved names), then the five dead-letter headers."""
        kept = [(name, value) for name, value in self.original_headers if name not in DEAD_LETTER_HEADERS]
        # In DEAD_LETTER_HEADERS order: reason, detail, source topic, partition, offset.
        values = (
            self.reason,
            self.detail,
            self.source_topic,
            str(self.source_partition),
            str(self.source_offset),
        )
        return [
            *kept,
            *((name, value.encode()) for name, value in zip(DEAD_LETTER_HEADERS, values, strict=True)),
        ]


def _header_list(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in items]


class DeadLetterWriter:
    """Writes dead letters to `<source topic>.dlq` and waits for each acknowledgement.

    The dead-letter topic must exist (the project's brokers do not create topics on first use, so
    a typo cannot create one): the first letter for a topic checks it and raises DeadLetterError
    with the command that creates it. Not thread-safe; use one writer per consumer.
    """

    def __init__(self, producer: Producer, *, timeout_s: float = 30.0) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._known_topics: set[str] = set()

    @classmethod
    def connect(
        cls,
        bootstrap_servers: str,
        overrides: Mapping[str, str | int | bool] | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> DeadLetterWriter:
        """A writer with its own producer from `make_producer` (murmur2_random, idempotent, acks=all)."""
        return cls(make_producer(bootstrap_servers, overrides), timeout_s=timeout_s)

    def send(self, letter: DeadLetter) -> Delivered:
        """Produce `letter` to its dead-letter topic and return once the broker acknowledged it.

        Raises DeadLetterError when the topic does not exist or the write is not acknowledged
        within the writer's timeout; the caller must then not commit the source record's offset.
        """
        topic = letter.topic
        self._check_topic(topic)
        outcome: list[tuple[KafkaError | None, Message]] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            outcome.append((err, msg))

        while True:
            try:
                self._producer.produce(
                    topic,
                    key=letter.key,
                    value=letter.value,
                    headers=letter.headers(),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # back-pressure: let earlier deliveries drain the queue
        self._producer.flush(self._timeout_s)
        if not outcome:
            raise DeadLetterError(
                f"dead letter for {letter.source_topic} [{letter.source_partition}] @{letter.source_offset} "
                f"not acknowledged by {topic!r} within {self._timeout_s} s"
            )
        err, msg = outcome[0]
        partition, offset = msg.partition(), msg.offset()
        if err is not None or partition is None or offset is None:
            raise DeadLetterError(f"cannot write a dead letter to {topic!r}: {err}")
        return Delivered(letter.key, letter.value or b"", partition, offset)

    def send_message(self, msg: Message, reason: str, detail: str) -> Delivered:
        """Dead-letter a consumed record: `send(DeadLetter.from_message(msg, reason, detail))`."""
        return self.send(DeadLetter.from_message(msg, reason, detail))

    def close(self) -> None:
        """Wait for anything still in flight (normally nothing: `send` waits for each letter)."""
        self._producer.flush(self._timeout_s)

    def _check_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        metadata = self._producer.list_topics(topic=topic, timeout=self._timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise DeadLetterError(
                f"dead-letter topic {topic!r} does not exist; create it first, e.g. "
                f"`pipelines topics create {topic} --partitions 1`"
            )
        self._known_topics.add(topic)
