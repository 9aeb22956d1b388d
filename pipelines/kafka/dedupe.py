"""The remedy for the at-least-once kafka sink: read `shipments` with each shipment once.

Spark's kafka sink writes a micro-batch, then commits it in the checkpoint; after a crash in
between, the restarted job writes that batch again (in real-time mode: everything since the last
checkpoint). The duplicates are ordinary, committed records with the same key and value, so a
consumer has to recognise them itself. `ShipmentDeduplicator` does, by `shipment_id`:

- **`isolation.level=read_committed`.** Records of aborted transactions are never read, and open
  transactions are not read past. Spark's sink does not use transactions (its duplicates are
  committed records, which this setting does not hide), but any transactional producer writing to
  the same topic, such as the project's exactly-once processors, can abort: those records must not
  become shipments.
- **Each `shipment_id` once.** The first record of an id is yielded, later ones are counted as
  duplicates and skipped. The ids seen are kept in `SeenIds`, a bounded store that forgets the
  least recently seen id beyond `capacity` (default 1,000,000 ids, roughly 150 MB for ids like
  `ship-order-7-00000001`). A duplicate is caught if fewer than `capacity` other shipments arrived
  between it and its original. Spark's replays are one batch (at most `maxOffsetsPerTrigger`
  records, or one real-time interval), so a capacity of a few batches is plenty.
- **Partitions and groups.** A duplicate has its original's key, so Spark's sink (murmur2, like the
  project's producers) puts it on the same partition: consumers in one group can split the
  partitions, each with its own store.
- **Offsets.** A record's offset is stored only once the caller asks for the next shipment (it has
  processed the previous one) and committed every `auto.commit.interval.ms` and on `close()`.
  Across a restart of this consumer, or a rebalance, delivery is at-least-once: the store starts
  empty and the records after the last commit come again. Make the final write idempotent by
  `shipment_id` (an upsert, a compacted topic, a primary key) and the end result is exactly-once.

Records whose value is not a JSON object with a string `shipment_id` are not shipments: they are
counted in `stats.unreadable`, logged, and skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message

from pipelines.errors import PipelinesError
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER
from pipelines.security import client_conf

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1_000_000


class SeenIds:
    """The last `capacity` distinct ids seen, least recently seen forgotten first (LRU).

    Seeing an id again makes it the most recent: a shipment duplicated several times stays
    remembered as long as its copies keep coming.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.forgotten = 0
        """Ids dropped to stay within `capacity`."""
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> bool:
        """Remember `item`; True if it was new, False if it was already remembered."""
        if item in self._ids:
            self._ids.move_to_end(item)
            return False
        self._ids[item] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
            self.forgotten += 1
        return True

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class Shipment:
    """One shipment record as read, the first of its `shipment_id`."""

    shipment_id: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]
    partition: int
    offset: int

    def document(self) -> dict[str, Any]:
        """The value as JSON: shipment_id, order_id, customer_id, status, created_at."""
        doc: dict[str, Any] = json.loads(self.value)
        return doc


@dataclass
class DedupeStats:
    read: int = 0
    """Records read (every one counts: shipments, duplicates, unreadable)."""
    unique: int = 0
    """Shipments yielded, each `shipment_id` once."""
    duplicates: int = 0
    """Records skipped because their `shipment_id` was seen before."""
    unreadable: int = 0
    """Records skipped because they are not shipments (no JSON object with a string shipment_id)."""


def shipment_id_of(value: bytes | None) -> str | None:
    """The `shipment_id` of a shipment value, or None when the value is not one."""
    try:
        doc = json.loads(value) if value else None
    except ValueError:  # invalid JSON and invalid UTF-8 alike
        return None
    sid = doc.get("shipment_id") if isinstance(doc, dict) else None
    return sid if isinstance(sid, str) else None


def dedupe_consumer_config(
    bootstrap_servers: str, group_id: str, *, from_beginning: bool = True, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """librdkafka settings of the deduplicating consumer; `overrides` cannot change isolation or
    when offsets are stored, on which its guarantees rest."""
    conf: dict[str, Any] = {
        **client_conf(bootstrap_servers),
        "group.id": group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": True,
        **(overrides or {}),
    }
    conf["isolation.level"] = "read_committed"
    # Offsets are stored by hand once the caller is done with a shipment; auto-commit only sends
    # what was stored, so nothing handed over but unprocessed is ever committed.
    conf["enable.auto.offset.store"] = False
    return conf


def _headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    raw = msg.headers() or []
    # A consumer gets a list of pairs; the client's types also allow a dict and text values.
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


class ShipmentDeduplicator:
    """A group member reading shipment topics with `read_committed`, yielding each `shipment_id`
    once per run (see the module docstring for the guarantees and their limits).

        with ShipmentDeduplicator(bootstrap, "shipments", "shipping-service") as dedupe:
            for shipment in dedupe.shipments():
                book_courier(shipment.document())

    Not thread-safe: iterate and close from one thread.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        seen: SeenIds | None = None,
        from_beginning: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """`seen` lets a caller share or pre-fill the store (it wins over `capacity`)."""
        self.seen = seen if seen is not None else SeenIds(capacity)
        self.stats = DedupeStats()
        conf = dedupe_consumer_config(
            bootstrap_servers, group_id, from_beginning=from_beginning, overrides=config
        )
        self._consumer = Consumer(conf, logger=LIBRDKAFKA_LOGGER)
        self._consumer.subscribe([topic])
        self._closed = False

    def shipments(
        self,
        *,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        poll_timeout_s: float = 0.2,
    ) -> Iterator[Shipment]:
        """Yield each new shipment, until `max_records` records were read (duplicates included),
        none arrived for `idle_timeout_s` seconds (counted from the call: on the first call, allow
        for joining the group), or `should_stop()` is true; forever otherwise."""
        read_here = 0
        last_record = time.monotonic()
        while max_records is None or read_here < max_records:
            if should_stop is not None and should_stop():
                return
            msg = self._consumer.poll(poll_timeout_s)
            if msg is None:
                if idle_timeout_s is not None and time.monotonic() - last_record >= idle_timeout_s:
                    return
                continue
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise PipelinesError(f"consumer failed: {err.str()}")
                log.warning("consumer: %s", err.str())  # transient: librdkafka retries by itself
                continue
            last_record = time.monotonic()
            read_here += 1
            self.stats.read += 1
            shipment = self._first_of_its_id(msg)
            if shipment is not None:
                yield shipment
            # Reached when the caller asks for the next shipment: it is done with this one.
            self._store_offset(msg)

    def _first_of_its_id(self, msg: Message) -> Shipment | None:
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        sid = shipment_id_of(msg.value())
        if sid is None:
            self.stats.unreadable += 1
            log.warning("%s [%d] @%d is not a shipment; skipped", msg.topic(), partition, offset)
            return None
        if not self.seen.add(sid):
            self.stats.duplicates += 1
            return None
        self.stats.unique += 1
        return Shipment(
            shipment_id=sid,
            key=msg.key(),
            value=msg.value() or b"",
            headers=_headers(msg),
            partition=partition,
            offset=offset,
        )

    def _store_offset(self, msg: Message) -> None:
        try:
            self._consumer.store_offsets(message=msg)
        except KafkaException as exc:
            # The partition was revoked meanwhile: its next owner reads the record again.
            log.info("offset not stored: %s", exc.args[0].str())

    def close(self) -> None:
        """Commit the stored offsets and leave the group."""
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> ShipmentDeduplicator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
