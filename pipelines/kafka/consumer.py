"""Consumers: a record loop with the three commit strategies, dead letters, and readable records.

The three strategies are named for what they guarantee about a record across a crash of the
consumer (the moment between the broker handing it over and the consumer committing past it):

- `CommitStrategy.AUTO_COMMIT` ("auto-commit"): Kafka's default. librdkafka stores a record's
  offset as soon as `poll` hands it over and commits the stored offsets every
  `auto.commit.interval.ms` and on close. **No guarantee**: a crash before the next auto-commit
  re-delivers records already processed, and a record whose processing failed is committed anyway
  (the next commit, at the latest `close()`, moves past it), so it is lost.
- `CommitStrategy.AT_MOST_ONCE` ("commit-before-process"): the offset is committed, synchronously,
  before the handler sees the record. A record is never processed twice, but one being processed
  when the consumer crashes is never processed again. The handler gets one attempt: retrying it
  would process the record twice.
- `CommitStrategy.AT_LEAST_ONCE` ("commit-after-process"): the offset is committed only after the
  handler succeeded (or the record was dead-lettered). Nothing is lost; a crash after processing
  and before the commit re-delivers the record, so the handler must tolerate duplicates
  (idempotent writes, deterministic keys). `commit_every` trades the size of that window for
  fewer commit round trips; revoked partitions and `close()` always commit what was processed.

Poison records: a handler that raises `RecordRejected(reason, detail)` says the record can never
succeed, so it is dead-lettered at once; any other exception is retried up to `max_attempts` times
in place (no re-poll, so the attempt count is per consumer process), then the record is
dead-lettered with reason `processing_failed:<ExceptionType>`. Dead letters go to `<topic>.dlq`
(`pipelines.kafka.dlq`) and are acknowledged before the source offset is committed. Without a
dead-letter writer the consumer raises `RecordFailedError` and stops, leaving the record
uncommitted under commit-after-process.

Group membership is cooperative-sticky, so a rebalance moves only the partitions that must move:
the rebalance callbacks use `incremental_assign`/`incremental_unassign` only (an eager
`assign`/`unassign` would break the incremental protocol), `on_revoke` commits just the revoked
partitions (tolerating `_NO_OFFSET`, which only means there was nothing to commit), `on_lost` never
commits (another member may already own the partition), and `close()` leaves the group at once
instead of waiting for `session.timeout.ms`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from pipelines.errors import PipelinesError
from pipelines.kafka.dlq import DeadLetterWriter
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER
from pipelines.security import authorization_error, client_conf, is_authorization_error

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]
"""Processes one record; returns normally on success, raises on failure."""
TP = tuple[str, int]
"""(topic, partition)."""


class CommitStrategy(StrEnum):
    """When a record's offset is committed relative to processing it, named for the guarantee."""

    AUTO_COMMIT = "auto-commit"
    """Offsets stored when polled and committed on a timer: neither at-most- nor at-least-once."""
    AT_MOST_ONCE = "commit-before-process"
    """Commit, then process: never processed twice, possibly never processed after a crash."""
    AT_LEAST_ONCE = "commit-after-process"
    """Process, then commit: never lost, possibly processed again after a crash."""


class RecordRejected(Exception):
    """Raised by a handler for a record that can never be processed (bad data, not a bad moment).

    The record is dead-lettered at once with `reason` (a short code such as `invalid_json`) and
    `detail` (a sentence), without further attempts.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RecordFailedError(PipelinesError):
    """A record failed every attempt and there was no dead-letter writer to take it.

    The consumer stops at this record: under commit-after-process its offset is not committed, so
    the record is delivered again after a restart.
    """

    def __init__(self, topic: str, partition: int, offset: int, reason: str, detail: str) -> None:
        super().__init__(f"record {topic} [{partition}] @{offset} failed: {reason}: {detail}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one record: processed by the handler, or written to the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    status: Literal["processed", "dead_lettered"]
    attempts: int
    reason: str | None = None


@dataclass(frozen=True)
class RebalanceEvent:
    """A change of this member's partitions: `assigned`, `revoked` (after committing them) or `lost`."""

    kind: Literal["assigned", "revoked", "lost"]
    partitions: tuple[TP, ...]
    committed: tuple[tuple[str, int, int], ...] = ()
    """For `revoked`: the (topic, partition, offset) commits made for the revoked partitions."""


@dataclass
class ConsumerStats:
    processed: int = 0
    """Records the handler processed."""
    dead_lettered: int = 0
    """Records written to the dead-letter topic instead."""
    failed_attempts: int = 0
    """Handler calls that raised (each retry counts)."""
    commits: int = 0
    """Commits this library made (auto-commit's own commits are not counted)."""
    outcomes: list[RecordOutcome] = field(default_factory=list)
    """Every outcome, in order, when the consumer keeps them (`keep_outcomes=True`)."""

    @property
    def handled(self) -> int:
        return self.processed + self.dead_lettered


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    strategy: CommitStrategy,
    *,
    from_beginning: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka settings for `strategy`; `overrides` win except where they would break it.

    `from_beginning` sets `auto.offset.reset`, which only applies to partitions the group has no
    committed offset for.
    """
    auto = strategy is CommitStrategy.AUTO_COMMIT
    conf: dict[str, Any] = {
        **client_conf(bootstrap_servers),
        "group.id": group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        **(overrides or {}),
    }
    # The strategy owns these two: an override flipping them would silently change the guarantee.
    conf["enable.auto.commit"] = auto
    conf["enable.auto.offset.store"] = auto
    return conf


class RecordConsumer:
    """A group member that hands each record to `handler` and commits per `strategy`.

    - `max_attempts`: handler attempts per record before it is dead-lettered (default 3; exactly
      1 under commit-before-process);
    - `retry_backoff_s`: pause between two attempts at the same record;
    - `dead_letters`: where records that keep failing go; without it such a record stops the
      consumer with RecordFailedError;
    - `commit_every`: commit-after-process commits after this many records, and always for
      revoked partitions and on `close()`;
    - `from_beginning`: `auto.offset.reset` for partitions the group never committed;
    - `on_rebalance`: told of every assignment change (revocations after their commit);
    - `config`: extra librdkafka settings (they cannot change the strategy's commit settings);
    - `keep_outcomes`: keep every RecordOutcome in `stats.outcomes` (for tests: it grows forever).

    Use it as a context manager, or call `close()`; `abort()` leaves like a crash would (nothing
    pending is committed). Not thread-safe: poll, close and abort from one thread.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Iterable[str],
        handler: Handler,
        *,
        strategy: CommitStrategy,
        max_attempts: int | None = None,
        retry_backoff_s: float = 0.0,
        dead_letters: DeadLetterWriter | None = None,
        commit_every: int = 1,
        from_beginning: bool = True,
        on_rebalance: Callable[[RebalanceEvent], None] | None = None,
        config: Mapping[str, Any] | None = None,
        keep_outcomes: bool = False,
    ) -> None:
        if max_attempts is None:
            max_attempts = 1 if strategy is CommitStrategy.AT_MOST_ONCE else 3
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if strategy is CommitStrategy.AT_MOST_ONCE and max_attempts != 1:
            raise ValueError("commit-before-process allows one attempt: a retry would process a record twice")
        if commit_every < 1:
            raise ValueError("commit_every must be at least 1")
        self.strategy = strategy
        self._bootstrap_servers = bootstrap_servers
        self._group_id = group_id
        self._handler = handler
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._dead_letters = dead_letters
        self._commit_every = commit_every
        self._on_rebalance = on_rebalance
        self._keep_outcomes = keep_outcomes
        self._pending: dict[TP, int] = {}
        """Next offset per partition processed but not yet committed (commit-after-process)."""
        self._since_commit = 0
        self._aborting = False
        self._closed = False
        self.stats = ConsumerStats()
        conf = consumer_config(
            bootstrap_servers, group_id, strategy, from_beginning=from_beginning, overrides=config
        )
        self._consumer = Consumer(conf, logger=LIBRDKAFKA_LOGGER)
        self._consumer.subscribe(
            list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # -- the loop ---------------------------------------------------------------------------------
    def poll_once(self, timeout_s: float = 0.5) -> RecordOutcome | None:
        """Poll once and process the record that arrived, if any; rebalances happen in here too."""
        msg = self._consumer.poll(timeout_s)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if is_authorization_error(err):
                # Never passes by itself: waiting would only hide that an ACL is missing.
                raise authorization_error(
                    err,
                    bootstrap_servers=self._bootstrap_servers,
                    operation="Read",
                    name=msg.topic() or "?",
                    group=self._group_id,
                )
            if err.fatal():
                raise PipelinesError(f"consumer failed: {err.str()}")
            # Transient (a broker restarting, a topic not yet visible): librdkafka retries itself.
            log.warning("consumer: %s", err.str())
            return None
        outcome = self._process(msg)
        if self._keep_outcomes:
            self.stats.outcomes.append(outcome)
        if outcome.status == "processed":
            self.stats.processed += 1
        else:
            self.stats.dead_lettered += 1
        return outcome

    def run(
        self,
        *,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        poll_timeout_s: float = 0.2,
    ) -> ConsumerStats:
        """Process records until `max_records` were handled, none arrived for `idle_timeout_s`, or
        `should_stop()` is true; return the statistics. Does not close the consumer."""
        handled = 0
        last_record = time.monotonic()
        while max_records is None or handled < max_records:
            if should_stop is not None and should_stop():
                break
            if self.poll_once(poll_timeout_s) is not None:
                handled += 1
                last_record = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last_record >= idle_timeout_s:
                break
        return self.stats

    def _process(self, msg: Message) -> RecordOutcome:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        if self.strategy is CommitStrategy.AT_MOST_ONCE:
            self._commit([TopicPartition(topic, partition, offset + 1)])
        attempts = 0
        while True:
            attempts += 1
            try:
                self._handler(msg)
            except RecordRejected as exc:
                outcome = self._dead_letter(msg, exc.reason, exc.detail, attempts, exc)
                break
            except Exception as exc:
                self.stats.failed_attempts += 1
                if attempts >= self._max_attempts:
                    reason = f"processing_failed:{type(exc).__name__}"
                    detail = f"failed {attempts} of {self._max_attempts} attempts; last error: {exc}"
                    outcome = self._dead_letter(msg, reason, detail, attempts, exc)
                    break
                log.info("record %s [%d] @%d failed attempt %d: %s", topic, partition, offset, attempts, exc)
                if self._retry_backoff_s > 0:
                    time.sleep(self._retry_backoff_s)  # give a transient cause time to pass
            else:
                outcome = RecordOutcome(topic, partition, offset, "processed", attempts)
                break
        if self.strategy is CommitStrategy.AT_LEAST_ONCE:
            self._pending[(topic, partition)] = offset + 1
            self._since_commit += 1
            if self._since_commit >= self._commit_every:
                self.commit()
        return outcome

    def _dead_letter(
        self, msg: Message, reason: str, detail: str, attempts: int, cause: BaseException
    ) -> RecordOutcome:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        if self._dead_letters is None:
            raise RecordFailedError(topic, partition, offset, reason, detail) from cause
        # Raises (and so stops before any commit) if the letter is not acknowledged.
        self._dead_letters.send_message(msg, reason, detail)
        return RecordOutcome(topic, partition, offset, "dead_lettered", attempts, reason)

    # -- commits ----------------------------------------------------------------------------------
    def commit(self) -> None:
        """Commit what was processed and not yet committed (commit-after-process; else a no-op)."""
        if self._pending:
            self._commit([TopicPartition(t, p, o) for (t, p), o in self._pending.items()])
            self._pending.clear()
        self._since_commit = 0

    def _commit(self, offsets: list[TopicPartition]) -> list[tuple[str, int, int]]:
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return []  # nothing to commit: not an error
            raise PipelinesError(f"commit failed: {exc.args[0].str()}") from None
        failed = [tp for tp in results if tp.error is not None]
        if failed:
            raise PipelinesError(
                f"commit failed for {failed[0].topic} [{failed[0].partition}]: {failed[0].error}"
            )
        self.stats.commits += 1
        return [(tp.topic, tp.partition, tp.offset) for tp in results]

    # -- rebalance callbacks (called inside poll and close) ------------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        self._notify("assigned", partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items() if (t, p) in revoked]
        committed: list[tuple[str, int, int]] = []
        if offsets and not self._aborting:
            try:
                # Only the revoked partitions: the ones this member keeps go on being processed and
                # are committed on the normal schedule.
                committed = self._commit(offsets)
            except PipelinesError as exc:
                # The next owner then starts from the last commit: records are re-delivered, not lost.
                log.warning("could not commit revoked partitions: %s", exc)
        for key in revoked:
            self._pending.pop(key, None)
        consumer.incremental_unassign(partitions)
        self._notify("revoked", partitions, tuple(committed))

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: the group has moved on and another member may own these already, so a
        # commit here could overwrite its progress. Drop what was pending; it will be re-delivered.
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)
        consumer.incremental_unassign(partitions)
        self._notify("lost", partitions)

    def _notify(
        self,
        kind: Literal["assigned", "revoked", "lost"],
        partitions: list[TopicPartition],
        committed: tuple[tuple[str, int, int], ...] = (),
    ) -> None:
        if self._on_rebalance is not None:
            tps = tuple(sorted((tp.topic, tp.partition) for tp in partitions))
            self._on_rebalance(RebalanceEvent(kind, tps, committed))

    # -- membership -------------------------------------------------------------------------------
    def assignment(self) -> set[TP]:
        """The partitions this member owns now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def member_id(self) -> str:
        """The group member id the coordinator gave this consumer ("" before it joined)."""
        return self._consumer.memberid() or ""

    def committed(self, partitions: Iterable[TP], timeout_s: float = 10.0) -> dict[TP, int | None]:
        """The group's committed offsets for `partitions` (None where nothing is committed)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        result = self._consumer.committed(tps, timeout=timeout_s)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in result}

    def close(self) -> None:
        """Commit what was processed (commit-after-process; auto-commit commits its stored offsets)
        and leave the group at once, so the others take over the partitions without waiting for
        `session.timeout.ms`."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._aborting:
                self.commit()
        finally:
            # Leaves even if that commit failed: close() revokes every partition through `_revoked`
            # (which tries the commit once more) and sends LeaveGroup.
            self._consumer.close()

    def abort(self) -> None:
        """Leave the group without committing anything pending: what a crash leaves behind.

        Under commit-after-process every record processed since the last commit is delivered again
        to the next owner. (Auto-commit cannot be aborted this way: librdkafka commits its stored
        offsets on close.)
        """
        self._aborting = True
        self.close()

    def __enter__(self) -> RecordConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading a topic outside any group ---------------------------------------------------------------
def assign_all(
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool,
    timeout_s: float = 15.0,
    overrides: Mapping[str, Any] | None = None,
) -> Consumer:
    """A consumer reading every partition of `topic` from the start or the end, outside any group.

    It never subscribes and never commits, so no group appears on the broker: librdkafka still
    wants a `group.id`, and gets a throwaway one. Raises PipelinesError if `topic` does not exist.
    """
    conf: dict[str, Any] = {
        **client_conf(bootstrap_servers),
        "group.id": f"pipelines-reader-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        **(overrides or {}),
    }
    consumer = Consumer(conf, logger=LIBRDKAFKA_LOGGER)
    metadata = consumer.list_topics(topic=topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is not None and is_authorization_error(found.error):
        consumer.close()
        raise authorization_error(
            found.error, bootstrap_servers=bootstrap_servers, operation="Read", name=topic
        )
    if found is None or found.error is not None:
        consumer.close()
        raise PipelinesError(f"topic {topic!r} does not exist (`pipelines topics list` shows the topics)")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in sorted(found.partitions)])
    return consumer


# -- printing records -------------------------------------------------------------------------------
_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    127: "\\x7f",
}


def readable_bytes(data: bytes | None) -> str:
    """Bytes as one line of text: UTF-8 shown as text (control characters escaped), anything else
    as an escaped `b'...'` literal, and a missing value as `null`."""
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)
    return text.translate(_CONTROL)


def format_timestamp(timestamp: tuple[int, int]) -> str:
    """`(type, ms)` -> `2026-11-27T10:00:00.123Z (create)`; `-` when the record has none."""
    kind, ms = timestamp
    if kind == TIMESTAMP_NOT_AVAILABLE or ms < 0:
        return "-"
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    label = {TIMESTAMP_CREATE_TIME: "create", TIMESTAMP_LOG_APPEND_TIME: "log-append"}.get(kind, "?")
    return f"{text} ({label})"


def format_record(msg: Message) -> str:
    """One consumed record on one line: partition, offset, timestamp, key, value, headers."""
    headers = msg.headers() or []
    items = headers.items() if isinstance(headers, Mapping) else headers
    shown = ", ".join(
        f"{name}={readable_bytes(value.encode() if isinstance(value, str) else value)}"
        for name, value in items
    )
    return (
        f"partition={msg.partition()} offset={msg.offset()} timestamp={format_timestamp(msg.timestamp())} "
        f"key={readable_bytes(msg.key())} value={readable_bytes(msg.value())}"
        + (f" headers=[{shown}]" if shown else "")
    )
