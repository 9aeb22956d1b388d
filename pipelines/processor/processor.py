"""The consume-transform-produce processor on confluent-kafka: orders in, shipments out, three guarantees.

A Processor reads the source topic as a member of a consumer group, turns each order into a
shipment (pipelines.processor.shipments) keyed and headed like the order, writes the orders that are
not valid to `<source>.dlq` with the dead-letter contract's headers (pipelines.kafka.dlq), and
commits the source offsets. What survives a crash (SIGKILL, power loss) depends on when it commits:

| guarantee       | how                                             | after a crash                     |
|-----------------|-------------------------------------------------|-----------------------------------|
| `at-most-once`  | per batch: commit the offsets, then produce;    | no duplicates; what was committed |
|                 | the acks are awaited only before the next       | but not yet acknowledged (at most |
|                 | batch's commit                                  | one batch) is lost                |
| `at-least-once` | each record is produced as it arrives; every    | nothing lost; what was written    |
|                 | commit interval the offsets are committed up to | after the last commit is written  |
|                 | the first record whose output is not yet        | again                             |
|                 | acknowledged                                    |                                   |
| `exactly-once`  | each record is produced as it arrives, inside a | nothing lost, nothing duplicated  |
|                 | transaction that also carries the offsets       | for `read_committed` consumers    |
|                 | (`send_offsets_to_transaction`); the            |                                   |
|                 | transaction commits every commit interval       |                                   |

Latency: at-least-once output is readable one producer round trip (plus `linger.ms`, 1 ms in the
profiles' `processor.producer`) after its order arrives; exactly-once output when its transaction
commits, on average half a commit interval plus the commit later. `commit_interval_s` (profile
`processor.commit_interval_s`, option `--commit-interval`, default 100 ms) trades that latency
against transactions (or commits) per second; `batch_size` caps the records in one.

Units: the records between two commits (at most `batch_size`, collected for `commit_interval_s`
after the first) are one unit. Rebalance callbacks only run inside a poll, between records, and a
revocation ends the unit there: at-least-once waits for the outstanding acknowledgements and
commits; exactly-once commits the open transaction while the partitions are still this member's;
at-most-once drops the unfinished batch (nothing of it was written or committed). Lost partitions
(a session that expired) cannot be committed: exactly-once aborts the transaction and rewinds the
partitions it keeps, at-least-once forgets them (their outputs may be written twice).

Exactly-once, in detail:

- the producer has a stable `transactional.id` (by default derived from the group and the
  instance id), and `init_transactions` runs before the consumer joins the group: a restarted
  instance thereby fences its predecessor and aborts the transaction the predecessor left open, so
  the group's offsets are stable before it reads them;
- the input consumer reads with `isolation.level=read_committed` too (so an upstream
  transactional producer's aborted records are never processed) and commits nothing itself: the
  offsets are `consumer.position()` of the batch's partitions, sent with
  `consumer.consumer_group_metadata()`, so a zombie whose group generation is stale cannot commit;
- errors: `retriable()` → the same call again (within `timeout_s`); `txn_requires_abort()` (or
  any other non-fatal error) → `abort_transaction`, rewind the batch's partitions to the last
  committed offsets and process the batch again; fatal → drop the producer and create a new one
  (its `init_transactions` aborts what was open), rewind, go on; fenced (a newer instance with the
  same `transactional.id`, or a consumer with the same `group.instance.id`) → stop at once,
  committing nothing, and report `stopped="fenced"`. A fenced instance must not restart itself
  with the same id: it would fence the newer one in turn.

Consumers of the sink must read with `isolation.level=read_committed` to get exactly-once (Java
clients and Spark's kafka source default to `read_uncommitted` and see aborted records too).

Dead letters go through the processor's own producer, so they share the batch's guarantee (and,
exactly-once, its transaction). The sink and dead-letter topics must exist; `open()` checks them.

Group membership: cooperative-sticky, `incremental_assign`/`incremental_unassign` in the callbacks.
With an `instance_id` the member is static (`group.instance.id`): a restarted instance takes its
partitions back at once instead of waiting for the dead one's session to expire
(`session.timeout.ms`, 45 s by default); two live instances must then have different ids.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from pipelines.contracts import ORDERS_TOPIC, SHIPMENTS_TOPIC, dead_letter_topic
from pipelines.errors import PipelinesError
from pipelines.kafka.dlq import DeadLetter
from pipelines.kafka.job_topics import JobTopics, prepare_topics
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER, ConfValue, make_producer
from pipelines.processor.shipments import RejectedOrder, shipment_value
from pipelines.security import client_conf

log = logging.getLogger(__name__)

T = TypeVar("T")
StopReason = Literal["max_records", "idle", "stopped", "fenced"]
ProducerFactory = Callable[[Mapping[str, ConfValue]], Producer]
"""Builds the producer from the processor's settings (applied over the project's defaults)."""

FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,  # librdkafka: "producer fenced by newer instance"
        KafkaError.PRODUCER_FENCED,
        KafkaError.FENCED_INSTANCE_ID,  # a consumer with the same group.instance.id joined
    }
)
"""Errors that mean another instance has taken over this one's identity."""
MAX_PRODUCER_RESTARTS = 3
"""Fatal producer errors in a row (no transaction committed in between) before the processor gives up."""


class Guarantee(StrEnum):
    """What the processor promises about each record across a crash, named for it."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


ErrorAction = Literal["fenced", "fatal", "abort", "retry"]


def classify(err: KafkaError) -> ErrorAction:
    """What the processor does about a transactional error: stop (`fenced`), restart the producer
    (`fatal`), abort and redo the batch (`abort`), or call again (`retry`)."""
    if err.code() in FENCED_CODES or (err.fatal() and err.code() == KafkaError.INVALID_PRODUCER_EPOCH):
        return "fenced"
    if err.fatal() or err.code() == KafkaError._FATAL:
        return "fatal"
    if err.txn_requires_abort():
        return "abort"
    if err.retriable():
        return "retry"
    return "abort"  # neither retriable nor abortable by librdkafka's word: aborting is still safe


def default_transactional_id(group_id: str, instance_id: str | None = None) -> str:
    """`<group>-shipper[-<instance>]`: stable across restarts, so a restarted instance fences the old one."""
    return f"{group_id}-shipper" + (f"-{instance_id}" if instance_id else "")


@dataclass(frozen=True)
class ProcessorConfig:
    """Settings of one processor instance; the constructor raises PipelinesError for nonsense."""

    bootstrap_servers: str
    guarantee: Guarantee
    source_topic: str = ORDERS_TOPIC
    sink_topic: str = SHIPMENTS_TOPIC
    group_id: str = "orders-to-shipments"
    instance_id: str | None = None
    """Static group membership (`group.instance.id`) and part of the default transactional.id."""
    transactional_id: str | None = None
    """Exactly-once only; default `default_transactional_id(group_id, instance_id)`."""
    batch_size: int = 5000
    """Records per commit or transaction, at most."""
    commit_interval_s: float = 0.1
    """At-least-once: how often acknowledged offsets are committed; exactly-once: how long a
    transaction stays open after its first record; at-most-once: how long a batch collects."""
    producer_config: Mapping[str, ConfValue] = field(default_factory=dict)
    """librdkafka producer settings over the project's defaults (the profile's `kafka.producer`)."""
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    """librdkafka consumer settings; they cannot change the commit or isolation settings."""
    timeout_s: float = 30.0
    replication_factor: int | None = None
    """Copies of each partition of a dead-letter topic the processor creates on demand (unset: the
    cluster's default), as the Spark jobs do (`pipelines.kafka.job_topics`)."""
    on_topic_created: Callable[[str], None] | None = None
    """Told once, in words, about each topic the processor created."""
    transform: Callable[[bytes | None], bytes] | None = None
    """An order's value -> its shipment's value, raising RejectedOrder (default: the JSON contract's
    `shipment_value`; `pipelines.processor.avro.AvroShipments` for `--format avro`)."""
    """For each broker round trip the processor waits on (commits, transactions, flushes)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise PipelinesError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.commit_interval_s <= 0:
            raise PipelinesError(f"--commit-interval must be positive, not {self.commit_interval_s:g}")
        if self.source_topic == self.sink_topic:
            raise PipelinesError(f"the source and the sink are both {self.source_topic!r}; use two topics")
        if self.transactional_id is not None and self.guarantee is not Guarantee.EXACTLY_ONCE:
            raise PipelinesError("--transactional-id is only for --guarantee exactly-once")
        if self.transactional_id == "":
            raise PipelinesError("--transactional-id must not be empty")

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.source_topic)

    @property
    def effective_transactional_id(self) -> str | None:
        if self.guarantee is not Guarantee.EXACTLY_ONCE:
            return None
        return self.transactional_id or default_transactional_id(self.group_id, self.instance_id)


@dataclass
class ProcessorStats:
    """What a run did, counted from acknowledgements and committed transactions (never from sends)."""

    consumed: int = 0
    """Source records completed: at-least-once, their output acknowledged; exactly-once, in a
    committed transaction; at-most-once, their offsets committed."""
    shipped: int = 0
    """Shipments acknowledged (exactly-once: in a committed transaction)."""
    dead_lettered: int = 0
    """Dead letters acknowledged (exactly-once: in a committed transaction)."""
    lost: int = 0
    """At-most-once: records committed whose output the broker never acknowledged."""
    offset_commits: int = 0
    """Offset commits of the consumer (at-most-once and at-least-once)."""
    transactions_committed: int = 0
    transactions_aborted: int = 0
    """Including the transactions a producer restart aborted."""
    producer_restarts: int = 0
    retries: int = 0
    """Calls repeated after a retriable error."""


@dataclass(frozen=True)
class ProcessorResult:
    guarantee: Guarantee
    stats: ProcessorStats
    stopped: StopReason
    """`max_records`, `idle` (no record for `idle_timeout_s`), `stopped` (asked to), `fenced`."""
    detail: str = ""
    """For `fenced`: the error that fenced this instance."""

    def summary(self) -> str:
        """One line: what was consumed and written, commits or transactions, why it stopped."""
        s = self.stats
        line = f"consumed {s.consumed:,}: {s.shipped:,} shipments, {s.dead_lettered:,} dead letters" + (
            f", {s.lost:,} lost" if s.lost else ""
        )
        if self.guarantee is Guarantee.EXACTLY_ONCE:
            line += (
                f"; transactions committed {s.transactions_committed:,}, aborted {s.transactions_aborted:,}"
                + (f", producer restarts {s.producer_restarts}" if s.producer_restarts else "")
            )
        else:
            line += f"; offset commits {s.offset_commits:,}"
        return line + f"; stopped: {self.stopped}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class _Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None
    is_dead_letter: bool


class _Acknowledgements:
    """At-most-once: delivery callbacks for the outputs of one batch, counted into `stats` as the
    broker acknowledges them; a refused one is lost (its offset is committed already)."""

    def __init__(self, stats: ProcessorStats) -> None:
        self._stats = stats

    def callback(self, out: _Output) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._stats.lost += 1
                log.warning("at-most-once: a record was not acknowledged and is lost: %s", err.str())
            elif out.is_dead_letter:
                self._stats.dead_lettered += 1
            else:
                self._stats.shipped += 1

        return on_delivery


class _Unacknowledged:
    """At-least-once: per source partition, the offsets whose output the broker has not yet
    acknowledged, so that a commit never passes one of them (outputs go to other partitions than
    their inputs, so their acknowledgements can come back in any order)."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, int], deque[int]] = {}
        self._acked: dict[tuple[str, int], set[int]] = {}
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def add(self, tp: tuple[str, int], offset: int) -> None:
        self._waiting.setdefault(tp, deque()).append(offset)
        self._acked.setdefault(tp, set())
        self._next[tp] = offset + 1

    def acknowledged(self, tp: tuple[str, int], offset: int) -> None:
        acked = self._acked.get(tp)
        if acked is not None:  # None: the partition was forgotten (revoked or lost) meanwhile
            acked.add(offset)

    def committable(self) -> list[TopicPartition]:
        """Per partition, the first offset not yet acknowledged (or the next one to read), where
        that moved since the last `committed()`."""
        out = []
        for tp, waiting in self._waiting.items():
            acked = self._acked[tp]
            while waiting and waiting[0] in acked:
                acked.discard(waiting.popleft())
            offset = waiting[0] if waiting else self._next[tp]
            if self._committed.get(tp) != offset:
                out.append(TopicPartition(tp[0], tp[1], offset))
        return out

    def committed(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def uncommitted(self, partitions: list[TopicPartition]) -> None:
        """A commit of these failed: offer them again at the next commit, moved or not."""
        for tp in partitions:
            self._committed.pop((tp.topic, tp.partition), None)

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            for table in (self._waiting, self._acked, self._next, self._committed):
                table.pop(key, None)  # type: ignore[attr-defined]


class _Fenced(Exception):
    """Another instance took over this one's transactional.id or group.instance.id."""


class Processor:
    """One processor instance: `run()` it (it opens itself), or `open()` first to join early.

    Not thread-safe, except `request_stop()`, which may be called from a signal handler or another
    thread: the current batch is completed, then `run()` returns.
    """

    def __init__(self, config: ProcessorConfig, *, producer_factory: ProducerFactory | None = None) -> None:
        self.config = config
        self.stats = ProcessorStats()
        self._producer_factory = producer_factory or (
            lambda conf: make_producer(config.bootstrap_servers, conf)
        )
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._batch: list[Message] = []
        self._stop_requested = False
        self._ever_assigned = False
        self._last_activity = time.monotonic()
        self._restarts_in_a_row = 0
        self._in_transaction = False
        self._unacked = _Unacknowledged()
        """At-least-once: what may be committed."""
        self._delivery_failures: list[str] = []
        """At-least-once: outputs the broker refused (the run stops at the next commit)."""
        self._commit_error: KafkaError | None = None
        """At-least-once: the last asynchronous commit's error, if it failed."""
        self._unit_dead_letters = 0
        """Exactly-once: dead letters in the open transaction."""
        self._owned: set[tuple[str, int]] = set()
        """Partitions assigned to this member now: a record fetched in the same consume() call as a
        revocation of its partition is not this member's to process any more."""
        self._unit_first: dict[tuple[str, int], int] = {}
        """Exactly-once: the first offset fetched in the open unit per partition, emitted or not (a
        rewind must reach every record the consumer has handed over since the last commit)."""
        self._rewound: set[tuple[str, int]] = set()
        """Partitions sought back during the current consume() call: its other records of them are
        stale (they will be read again)."""
        self._taken = 0
        """At-least-once: records handed to the producer (`consumed` counts their acknowledgements)."""

    # -- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        """Check the topics, create the producer (exactly-once: `init_transactions`, fencing any
        older instance with the same transactional.id), then join the group. Idempotent."""
        if self._consumer is not None:
            return
        # Topics first: an instance that cannot run must not fence the one that does.
        self._check_topics()
        producer = self._create_producer()
        self._init_transactions(producer)
        self._producer = producer
        conf: dict[str, Any] = {
            **client_conf(self.config.bootstrap_servers),
            "group.id": self.config.group_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": "earliest",
            **self.config.consumer_config,
            # The guarantee owns these: auto-commit would commit records the processor never wrote,
            # and read_uncommitted would process an upstream producer's aborted records.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "on_commit": self._on_commit,
        }
        if self.config.instance_id:
            conf["group.instance.id"] = self.config.instance_id
        self._consumer = Consumer(conf, logger=LIBRDKAFKA_LOGGER)
        self._consumer.subscribe(
            [self.config.source_topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        self._last_activity = time.monotonic()

    def request_stop(self) -> None:
        """Finish the current batch and return from `run()`."""
        self._stop_requested = True

    def run(
        self,
        *,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ProcessorResult:
        """Process until `max_records` records were completed, none arrived for `idle_timeout_s`
        (counted from the last record or partition assignment), `should_stop()` or `request_stop()`,
        or this instance is fenced; then close and return what happened.

        Raises PipelinesError when it cannot go on (a topic missing, deliveries failing under
        at-least-once, a commit refused, fatal errors that a new producer does not cure); what was
        committed before stays committed, and the guarantee holds for a restart.
        """
        if max_records is not None and max_records < 1:
            raise PipelinesError(f"--max-records must be at least 1, not {max_records}")
        stopped: StopReason = "stopped"
        detail = ""
        fenced = False
        try:
            self.open()
            while True:
                if self._stop_requested or (should_stop is not None and should_stop()):
                    stopped = "stopped"
                    break
                # at-least-once counts `consumed` as acknowledgements arrive, after the records are taken
                at_least_once = self.config.guarantee is Guarantee.AT_LEAST_ONCE
                done = self._taken if at_least_once else self.stats.consumed
                left = None if max_records is None else max_records - done
                if left is not None and left <= 0:
                    stopped = "max_records"
                    break
                try:
                    batch = self._collect(
                        self.config.batch_size if left is None else min(left, self.config.batch_size)
                    )
                except KafkaException as exc:
                    if not self._in_transaction:
                        raise
                    # begin_transaction or a produce failed mid-unit: abort (or restart) and redo it
                    self._recover(exc.args[0], self._batch)
                    continue
                if batch:
                    self._complete(batch)
                    self._last_activity = time.monotonic()
                elif idle_timeout_s is not None and self._idle_for(idle_timeout_s):
                    stopped = "idle"
                    detail = f"no record for {idle_timeout_s:g} s"
                    if not self._ever_assigned:
                        detail = (
                            f"no partition assigned within {max(idle_timeout_s, self.config.timeout_s):g} s"
                        )
                    break
        except _Fenced as exc:
            fenced = True
            stopped, detail = "fenced", str(exc)
            log.warning("processor stops: %s", exc)
        finally:
            self.close(fenced=fenced)
        return ProcessorResult(self.config.guarantee, self.stats, stopped, detail)

    def _idle_for(self, idle_timeout_s: float) -> bool:
        # Joining the group can take longer than a short idle timeout (a fresh group coordinator, a
        # rebalance): until the first assignment the processor waits up to `timeout_s`.
        limit = idle_timeout_s if self._ever_assigned else max(idle_timeout_s, self.config.timeout_s)
        return time.monotonic() - self._last_activity >= limit

    def close(self, *, fenced: bool = False) -> None:
        """Wait for outstanding deliveries (at-most-once: unacknowledged ones count as lost;
        at-least-once: then commit what was acknowledged) and leave the group (a static member
        stays until its session times out). Exactly-once commits nothing here."""
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        try:
            if producer is None:
                pass
            elif self.config.guarantee is Guarantee.AT_MOST_ONCE:
                # Committed already: deliver what can be delivered; what is still queued afterwards
                # was never acknowledged, and its callbacks will not run any more.
                producer.flush(self.config.timeout_s)
                self.stats.lost += len(producer)
            elif self.config.guarantee is Guarantee.AT_LEAST_ONCE:
                producer.flush(self.config.timeout_s)
                if consumer is not None and not fenced:
                    try:
                        self._commit_acknowledged(consumer, producer, asynchronous=False, closing=True)
                    except (PipelinesError, _Fenced) as exc:
                        log.warning(
                            "at-least-once: the last commit failed (%s); a restart writes "
                            "what came after the previous one again",
                            exc,
                        )
            elif self._in_transaction and not fenced:
                # Stopped by an error mid-transaction: abort now rather than leave read_committed
                # consumers waiting for transaction.timeout.ms.
                self._in_transaction = False
                try:
                    producer.abort_transaction(self.config.timeout_s)
                except KafkaException as exc:
                    log.warning("could not abort the open transaction: %s", exc.args[0].str())
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the consumer: %s", exc)

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collecting a batch -----------------------------------------------------------------------
    def _collect(self, limit: int) -> list[Message]:
        """One unit of up to `limit` records: wait at most ~0.2 s for the first (so `run` can
        check its stop conditions), then until the unit is full or `commit_interval_s` after the
        first. At-least-once and exactly-once produce each record's output as it arrives."""
        assert self._consumer is not None
        self._batch = []
        if not self._in_transaction:
            self._unit_first.clear()
        first_at: float | None = None
        streaming = self.config.guarantee is not Guarantee.AT_MOST_ONCE
        taken = 0  # counted here: a revocation may empty self._batch after its records were written
        while taken < limit and not self._stop_requested:
            if first_at is None:
                wait = 0.2
            else:
                wait = first_at + self.config.commit_interval_s - time.monotonic()
                if wait <= 0:
                    break
            # What is already fetched, without waiting; else wait for the next record, not for a
            # full batch (consume(n, timeout) returns only when it has n records or timed out).
            self._rewound.clear()
            messages = self._consumer.consume(num_messages=limit - taken, timeout=0)
            if not messages:
                messages = self._consumer.consume(num_messages=1, timeout=min(wait, 0.2))
            for msg in messages:
                err = msg.error()
                if err is None:
                    tp = (msg.topic(), msg.partition())
                    if tp not in self._owned or tp in self._rewound:
                        continue  # revoked, lost or sought back by a callback inside this consume()
                    self._unit_first.setdefault(tp, msg.offset())  # type: ignore[arg-type]
                    self._batch.append(msg)
                    taken += 1
                    if streaming:
                        self._emit(msg)
                elif err.code() in FENCED_CODES:
                    raise _Fenced(f"consumer fenced: {err.str()}")
                elif err.fatal():
                    raise PipelinesError(f"consumer failed: {err.str()}")
                else:
                    # Transient (a broker restarting, a leader moving): librdkafka retries itself.
                    log.warning("consumer: %s", err.str())
            if streaming:
                self._producer_or_fail().poll(0)  # delivery reports, as they come
            if self._batch and first_at is None:
                first_at = time.monotonic()
            elif not self._batch:
                break
        return self._batch

    def _emit(self, msg: Message) -> None:
        """Produce one record's output now: at-least-once with a delivery report that lets its
        offset be committed, exactly-once inside the open transaction (begun by the unit's first)."""
        out = self._output(msg)
        if self.config.guarantee is Guarantee.EXACTLY_ONCE:
            if not self._in_transaction:
                self._in_transaction = True  # set first: a failed begin is recovered like a failed unit
                self._unit_dead_letters = 0
                self._producer_or_fail().begin_transaction()
            self._produce(out, None)
            self._unit_dead_letters += out.is_dead_letter
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        tp = (topic, partition)
        self._unacked.add(tp, offset)
        self._taken += 1
        stats, unacked, failures = self.stats, self._unacked, self._delivery_failures
        dead_letter = out.is_dead_letter

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())
                return
            unacked.acknowledged(tp, offset)
            stats.consumed += 1
            if dead_letter:
                stats.dead_lettered += 1
            else:
                stats.shipped += 1

        self._produce(out, on_delivery)

    # -- completing a batch -----------------------------------------------------------------------
    def _complete(self, batch: list[Message]) -> None:
        if self.config.guarantee is Guarantee.AT_MOST_ONCE:
            outputs = [self._output(msg) for msg in batch]
            offsets = self._positions(batch)
            # The previous batch's acknowledgements first: without this wait the commits would race
            # ahead of the deliveries, and a crash would lose everything still queued, not one batch.
            self._producer_or_fail().flush(self.config.timeout_s)
            self._commit(offsets)  # before any output exists: a crash from here on loses, never repeats
            # Not waiting for the acknowledgements: they are counted as they arrive (`lost` if refused).
            self._produce_all(outputs, _Acknowledgements(self.stats))
            self.stats.consumed += len(batch)
        elif self.config.guarantee is Guarantee.AT_LEAST_ONCE:
            # Written already, record by record; commit up to the first one not yet acknowledged.
            self._commit_acknowledged(self._consumer_or_fail(), self._producer_or_fail(), asynchronous=True)
        else:
            self._commit_transaction(batch)

    def _output(self, msg: Message) -> _Output:
        try:
            value = (self.config.transform or shipment_value)(msg.value())
        except RejectedOrder as exc:
            letter = DeadLetter.from_message(msg, exc.reason, exc.detail)
            return _Output(letter.topic, letter.key, letter.value, letter.headers(), is_dead_letter=True)
        return _Output(self.config.sink_topic, msg.key(), value, msg.headers(), is_dead_letter=False)

    @staticmethod
    def _positions(batch: list[Message]) -> list[TopicPartition]:
        """The offsets to commit for `batch`: its last record + 1 on each of its partitions (not the
        consumer's position, which may already be past records fetched but not in the batch)."""
        last: dict[tuple[str, int], int] = {}
        for msg in batch:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
        return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]

    def _produce_all(self, outputs: list[_Output], acks: _Acknowledgements) -> None:
        for out in outputs:
            self._produce(out, acks.callback(out))
            self._producer_or_fail().poll(0)

    def _produce(
        self, out: _Output, on_delivery: Callable[[KafkaError | None, Message], None] | None
    ) -> None:
        producer = self._producer_or_fail()
        while True:
            try:
                producer.produce(
                    out.topic,
                    key=out.key,
                    value=out.value,
                    headers=out.headers or None,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                producer.poll(0.1)  # back-pressure: serving delivery reports drains the queue

    def _commit_acknowledged(
        self, consumer: Consumer, producer: Producer, *, asynchronous: bool, closing: bool = False
    ) -> None:
        """At-least-once: commit each partition up to its first record whose output is not yet
        acknowledged; raise if the broker refused an output (nothing past it is committed, so a
        restart writes it again) or the last asynchronous commit was fenced."""
        producer.poll(0)
        if self._commit_error is not None:
            err, self._commit_error = self._commit_error, None
            if err.code() in FENCED_CODES:
                raise _Fenced(f"consumer fenced: {err.str()}")
            log.warning("an offset commit failed (%s); the next one covers its offsets", err.str())
        offsets = self._unacked.committable()
        if offsets:
            if asynchronous:
                try:
                    consumer.commit(offsets=offsets, asynchronous=True)
                except KafkaException as exc:
                    self._raise_commit_error(exc)
                self.stats.offset_commits += 1
            else:
                self._commit(offsets, consumer)
            self._unacked.committed(offsets)
        if self._delivery_failures:
            failures = self._delivery_failures
            message = (
                f"{len(failures)} outputs were not written ({failures[0]}); offsets are committed only "
                "up to the records before them, so a restart writes them again"
            )
            if not closing:
                raise PipelinesError(message)
            log.warning("at-least-once: %s", message)  # closing: a warning, whether or not it was raised

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's commit callback (asynchronous commits report here, inside a poll): the
        partitions whose commit failed are committed again next time."""
        failed = [tp for tp in partitions or [] if tp.error is not None]
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            self._commit_error = err
            failed = list(partitions or [])
        elif failed:
            self._commit_error = failed[0].error
        self._unacked.uncommitted(failed)

    def _commit(self, offsets: list[TopicPartition], consumer: Consumer | None = None) -> None:
        consumer = consumer or self._consumer_or_fail()
        if not offsets:
            return
        try:
            results = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._raise_commit_error(exc)
            return
        failed = [tp for tp in results or [] if tp.error is not None]
        if failed:
            raise PipelinesError(
                f"offset commit failed for {failed[0].topic} [{failed[0].partition}]: {failed[0].error}"
            )
        self.stats.offset_commits += 1

    @staticmethod
    def _raise_commit_error(exc: KafkaException) -> None:
        err = exc.args[0]
        if err.code() == KafkaError._NO_OFFSET:
            return
        if err.code() in FENCED_CODES:
            raise _Fenced(f"consumer fenced: {err.str()}") from None
        raise PipelinesError(f"offset commit failed: {err.str()}") from None

    # -- exactly-once -----------------------------------------------------------------------------
    def _commit_transaction(self, batch: list[Message]) -> None:
        """Commit the open transaction (the unit's outputs and dead letters, produced as they came)
        with the unit's offsets. On error the unit is rewound (to be read and written again), after
        an abort or with a new producer; fenced -> _Fenced."""
        if not self._in_transaction:
            return
        consumer = self._consumer_or_fail()
        producer = self._producer_or_fail()
        timeout = self.config.timeout_s
        try:
            offsets = self._positions(batch)
            group = consumer.consumer_group_metadata()
            self._retrying(lambda: producer.send_offsets_to_transaction(offsets, group, timeout))
            self._retrying(lambda: producer.commit_transaction(timeout))
            self._in_transaction = False
        except KafkaException as exc:
            self._recover(exc.args[0], batch)
            return
        self._unit_first.clear()
        self._restarts_in_a_row = 0
        self.stats.transactions_committed += 1
        self.stats.consumed += len(batch)
        dead = self._unit_dead_letters
        self.stats.dead_lettered += dead
        self.stats.shipped += len(batch) - dead

    def _retrying(self, call: Callable[[], T]) -> T:
        """`call()`, again while it fails with a retriable error, until `timeout_s` has passed."""
        deadline = time.monotonic() + self.config.timeout_s
        attempt = 0
        while True:
            try:
                return call()
            except KafkaException as exc:
                err = exc.args[0]
                if classify(err) != "retry" or time.monotonic() >= deadline:
                    raise
                attempt += 1
                self.stats.retries += 1
                log.info("retrying after a retriable error: %s", err.str())
                # Back off, so an error that comes back at once (no coordinator yet) is not a busy loop.
                time.sleep(min(0.05 * 2**attempt, 1.0))

    def _recover(self, err: KafkaError, batch: list[Message]) -> None:
        action = classify(err)
        log.warning("transaction failed (%s): %s", action, err.str())
        if action == "fatal" and err.code() == KafkaError._FATAL:
            # produce() only says "a fatal error was raised earlier"; the transactional API returns
            # the error itself, and it matters which: a fenced producer must not come back.
            err = self._abort_error() or err
            action = classify(err)
        if action == "fenced":
            raise _Fenced(f"producer fenced: {err.str()}")
        if action == "fatal":
            self._restart_producer(err)
            self._in_transaction = False
            self.stats.transactions_aborted += 1
            self._rewind(batch)
        else:
            self._abandon(batch)

    def _abandon(self, batch: list[Message]) -> None:
        """Abort the open transaction (a new producer if the abort fails) and rewind `batch`."""
        abort_err = self._abort_error()
        if abort_err is not None:
            if classify(abort_err) == "fenced":
                raise _Fenced(f"producer fenced: {abort_err.str()}")
            # The abort itself failed: a new producer's init_transactions aborts the transaction.
            self._restart_producer(abort_err)
        self._in_transaction = False
        self.stats.transactions_aborted += 1
        self._rewind(batch)

    def _abort_error(self) -> KafkaError | None:
        """Abort the open transaction; None when that worked, else the error."""
        producer = self._producer_or_fail()
        try:
            self._retrying(lambda: producer.abort_transaction(self.config.timeout_s))
        except KafkaException as exc:
            return exc.args[0]  # type: ignore[no-any-return]
        return None

    def _restart_producer(self, cause: KafkaError) -> None:
        self._restarts_in_a_row += 1
        if self._restarts_in_a_row > MAX_PRODUCER_RESTARTS:
            raise PipelinesError(
                f"the transactional producer failed {MAX_PRODUCER_RESTARTS} times in a row; "
                f"last error: {cause.str()}"
            )
        # A producer in a fatal state cannot even abort; dropping it and initialising a new one with
        # the same transactional.id aborts whatever it left open.
        self._producer = None
        self._producer = self._new_producer()
        self.stats.producer_restarts += 1

    def _rewind(self, batch: list[Message]) -> None:
        """Seek every partition the unit fetched from (still this member's) back to the group's
        committed offset (the first offset fetched where nothing was ever committed): whatever the
        consumer handed over since the last commit, in the batch or not yet emitted, is read again."""
        consumer = self._consumer_or_fail()
        first = dict(self._unit_first)
        for msg in batch:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            first[(topic, partition)] = min(offset, first.get((topic, partition), offset))
        self._unit_first.clear()
        wanted = [TopicPartition(t, p) for (t, p) in first if (t, p) in self._owned]
        if not wanted:
            return
        try:
            committed = consumer.committed(wanted, timeout=self.config.timeout_s)
            for tp in committed:
                offset = tp.offset if tp.offset >= 0 else first[(tp.topic, tp.partition)]
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                self._rewound.add((tp.topic, tp.partition))
        except KafkaException as exc:
            # Going on would skip the batch; stopping leaves it uncommitted for the next start.
            raise PipelinesError(
                f"cannot rewind to the committed offsets after an aborted transaction: {exc.args[0].str()}; "
                "stopping (nothing of the batch was committed, a restart processes it)"
            ) from None

    # -- clients ----------------------------------------------------------------------------------
    def _new_producer(self) -> Producer:
        producer = self._create_producer()
        self._init_transactions(producer)
        return producer

    def _create_producer(self) -> Producer:
        overrides: dict[str, ConfValue] = dict(self.config.producer_config)
        txn_id = self.config.effective_transactional_id
        if txn_id is not None:
            overrides["transactional.id"] = txn_id
        return self._producer_factory(overrides)

    def _init_transactions(self, producer: Producer) -> None:
        """Exactly-once: register the transactional.id, fencing any older producer with it and
        aborting the transaction that one left open."""
        txn_id = self.config.effective_transactional_id
        if txn_id is None:
            return
        try:
            self._retrying(lambda: producer.init_transactions(self.config.timeout_s))
        except KafkaException as exc:
            raise PipelinesError(
                f"cannot initialise transactions for transactional.id {txn_id!r}: {exc.args[0].str()}"
            ) from None

    def _consumer_or_fail(self) -> Consumer:
        if self._consumer is None:
            raise PipelinesError("the processor is closed")
        return self._consumer

    def _producer_or_fail(self) -> Producer:
        if self._producer is None:
            raise PipelinesError("the processor is closed")
        return self._producer

    def _check_topics(self) -> None:
        """The same rules as the Spark jobs': the source and the sink must exist, the dead-letter
        topic is created on demand with the source's partition count."""
        c = self.config
        prepare_topics(
            c.bootstrap_servers,
            JobTopics(
                sources=[c.source_topic],
                sinks=[c.sink_topic],
                dead_letters=[(c.dead_letter_topic, c.source_topic)],
            ),
            replication_factor=c.replication_factor,
            say=c.on_topic_created or (lambda _m: None),
        )

    # -- rebalance callbacks (inside consume() and close()) --------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        self._owned.update((tp.topic, tp.partition) for tp in partitions)
        self._ever_assigned = True
        self._last_activity = time.monotonic()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # While the partitions are still this member's, finish the unit: at-least-once waits for
        # the outstanding acknowledgements and commits them, exactly-once commits the open
        # transaction (as Kafka Streams does), at-most-once drops the unfinished batch (nothing of
        # it was written or committed; the next owner reads it from the committed offset).
        if self._producer is not None:
            if self.config.guarantee is Guarantee.AT_LEAST_ONCE:
                self._producer.flush(self.config.timeout_s)
                self._commit_acknowledged(consumer, self._producer, asynchronous=False)
                self._unacked.forget(partitions)
            elif self.config.guarantee is Guarantee.EXACTLY_ONCE and self._in_transaction:
                log.info("partitions revoked mid-transaction (%d records): committing it", len(self._batch))
                self._commit_transaction(self._batch)
                self._batch.clear()
        self._disown(partitions)
        consumer.incremental_unassign(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (the session expired): another member may own them already, so nothing of them can
        # be committed. Exactly-once aborts the open transaction and rewinds the partitions it
        # keeps; at-least-once forgets their offsets (their outputs may be written twice).
        self._disown(partitions)  # first: the rewind below must not seek them
        if self.config.guarantee is Guarantee.EXACTLY_ONCE and self._in_transaction and self._producer:
            self._abandon(self._batch)
            self._batch.clear()
        self._unacked.forget(partitions)
        consumer.incremental_unassign(partitions)

    def _disown(self, partitions: list[TopicPartition]) -> None:
        """No longer this member's: their records in the unfinished batch are dropped (and those
        fetched in the same consume() call skipped)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._owned -= gone
        for tp in gone:
            self._unit_first.pop(tp, None)
        self._batch[:] = [m for m in self._batch if (m.topic(), m.partition()) not in gone]
