"""Consumer groups: who owns which partition and how far behind it is, and group members in processes.

Two halves:

- **Looking at a group** through the AdminClient (`list_groups`, `describe_group`): per partition
  the committed offset, the log-end offset, the lag between them and the owning member, like
  Kafka's `kafka-consumer-groups --describe`.
- **Running members** (`MemberPool`): each member a separate process running a `RecordConsumer`
  (cooperative-sticky, commit-after-process), reporting every assignment, revocation and processed
  record to the parent, which can wait for conditions on the group with deadlines. The tests and
  `pipelines groups demo` use it to watch partitions move when members join and leave.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from typing import Any, Literal, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription, OffsetSpec

from pipelines.errors import PipelinesError
from pipelines.kafka.admin import admin_client
from pipelines.kafka.consumer import CommitStrategy, RebalanceEvent, RecordConsumer

T = TypeVar("T")

# -- looking at groups ------------------------------------------------------------------------------
_STATE_NAMES = {
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "UNKNOWN": "Unknown",
}
"""confluent-kafka's state enum names -> the names Kafka's own tools print."""

_COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


class UnknownGroupError(PipelinesError):
    """The group has no members and no committed offsets: the broker does not know it."""


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    state: str
    type: str
    """`classic` (JoinGroup/SyncGroup, what librdkafka's cooperative-sticky uses) or `consumer` (KIP-848)."""


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a group: where the group is, where the log ends, and who reads it."""

    topic: str
    partition: int
    committed: int | None
    """The group's committed offset (the next record it will read); None if it never committed."""
    log_end: int | None
    """The partition's log-end offset (high watermark); None if the broker could not say."""
    owner: Member | None

    @property
    def lag(self) -> int | None:
        """Records between the committed offset and the log end; None when either is unknown."""
        if self.committed is None or self.log_end is None:
            return None
        return self.log_end - self.committed


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str
    type: str
    assignor: str
    coordinator: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        """The sum of the known lags (partitions without a committed offset count 0)."""
        return sum(p.lag or 0 for p in self.partitions)


def _state_name(state: Any) -> str:
    name = getattr(state, "name", str(state))
    return _STATE_NAMES.get(name, name.title().replace("_", ""))


def _type_name(kind: Any) -> str:
    return str(getattr(kind, "name", kind)).lower()


def _with_retries(call: Callable[[], T], what: str, deadline: float) -> T:
    """`call()`, retried while the group coordinator is not ready (a broker that just started, or a
    coordinator that moved) until `deadline`; other broker errors become a PipelinesError."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if (err.code() in _COORDINATOR_NOT_READY or err.retriable()) and time.monotonic() < deadline:
                time.sleep(0.2)  # back off: the coordinator is loading; asking at once only fails again
                continue
            raise PipelinesError(f"cannot {what}: {err.str()}") from None


def list_groups(bootstrap_servers: str, *, timeout_s: float = 30.0) -> list[GroupListing]:
    """Every consumer group the cluster knows, sorted by id."""
    admin = admin_client(bootstrap_servers)
    deadline = time.monotonic() + timeout_s
    result = _with_retries(
        lambda: admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s),
        "list consumer groups",
        deadline,
    )
    if result.errors:
        raise PipelinesError(f"cannot list consumer groups: {result.errors[0]}")
    return sorted(
        (
            GroupListing(
                g.group_id, _state_name(getattr(g, "state", None)), _type_name(getattr(g, "type", ""))
            )
            for g in result.valid or []
        ),
        key=lambda g: g.group_id,
    )


def describe_group(bootstrap_servers: str, group_id: str, *, timeout_s: float = 30.0) -> GroupDescription:
    """The group's state, members and, per partition, committed offset, log-end offset, lag and owner.

    The partitions are every partition of every topic the group has committed offsets for or is
    assigned, so a partition nobody reads shows up with no committed offset and no owner. Raises
    UnknownGroupError when the broker has neither members nor committed offsets for `group_id`.
    """
    admin = admin_client(bootstrap_servers)
    deadline = time.monotonic() + timeout_s
    desc: ConsumerGroupDescription = _with_retries(
        lambda: admin.describe_consumer_groups([group_id], request_timeout=timeout_s)[group_id].result(
            timeout=timeout_s
        ),
        f"describe consumer group {group_id!r}",
        deadline,
    )
    # Offsets only after the describe succeeded: librdkafka (2.16) crashes the whole process when an
    # admin OffsetFetch gets NOT_COORDINATOR back (librdkafka#5040), which is what a coordinator
    # still loading answers; a successful describe proves the coordinator is ready.
    offsets = _with_retries(
        lambda: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group_id)], request_timeout=timeout_s
        )[group_id].result(timeout=timeout_s),
        f"read the committed offsets of {group_id!r}",
        deadline,
    )
    committed = {
        (tp.topic, tp.partition): tp.offset
        for tp in offsets.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }
    members = tuple(
        Member(
            m.member_id,
            m.client_id,
            m.host,
            tuple(sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)),
        )
        for m in desc.members
    )
    if _state_name(desc.state) == "Dead" and not members and not committed:
        raise UnknownGroupError(
            f"consumer group {group_id!r} does not exist (no members, no committed offsets); "
            "`pipelines groups list` shows the groups"
        )
    owners = {tp: m for m in members for tp in m.partitions}
    keys = _all_partitions(admin, {t for t, _ in committed} | {t for t, _ in owners}, timeout_s)
    keys |= set(committed) | set(owners)
    log_end = _log_end_offsets(admin, keys, timeout_s)
    rows = tuple(
        PartitionLag(t, p, committed.get((t, p)), log_end.get((t, p)), owners.get((t, p)))
        for t, p in sorted(keys)
    )
    coordinator = desc.coordinator
    return GroupDescription(
        group_id=group_id,
        state=_state_name(desc.state),
        type=_type_name(getattr(desc, "type", "")),
        assignor=desc.partition_assignor or "",
        coordinator=f"{coordinator.host}:{coordinator.port} (id {coordinator.id})" if coordinator else "",
        members=members,
        partitions=rows,
    )


def _all_partitions(admin: AdminClient, topics: Iterable[str], timeout_s: float) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    for topic in sorted(topics):
        found = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
        if found is not None and found.error is None:
            keys.update((topic, p) for p in found.partitions)
    return keys


def _log_end_offsets(
    admin: AdminClient, keys: Collection[tuple[str, int]], timeout_s: float
) -> dict[tuple[str, int], int]:
    if not keys:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(t, p): OffsetSpec.latest() for t, p in keys}, request_timeout=timeout_s
    )
    ends: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        # A deleted topic, say: the row then shows the log end as unknown.
        with contextlib.suppress(KafkaException):
            ends[(tp.topic, tp.partition)] = future.result(timeout=timeout_s).offset
    return ends


# -- group members in separate processes ---------------------------------------------------------------
EventKind = Literal["joined", "assigned", "revoked", "lost", "processed", "closing", "closed", "failed"]


@dataclass(frozen=True)
class MemberEvent:
    """What a member process reports. `at` is `time.monotonic()` in the member, which on Linux is
    one clock for every process of the machine, so events of different members can be ordered."""

    member: str
    kind: EventKind
    partitions: tuple[int, ...] = ()
    records: tuple[tuple[int, int], ...] = ()
    """For `processed`: the (partition, offset) of each record handled since the last report."""
    committed: tuple[tuple[int, int], ...] = ()
    """For `revoked`: the (partition, offset) commits made in `on_revoke` before giving them up."""
    member_id: str = ""
    detail: str = ""
    at: float = field(default_factory=time.monotonic)
    pid: int = field(default_factory=os.getpid)
    """The reporting member's process id."""


def _member_main(
    bootstrap_servers: str,
    group_id: str,
    topic: str,
    name: str,
    events: multiprocessing.queues.Queue[MemberEvent],
    close: EventType,
    commit_every: int,
    config: Mapping[str, Any],
) -> None:
    """A member process: consume `topic` in `group_id` until `close` is set, then `close()`."""
    logging.basicConfig(level=logging.ERROR, format=f"{name} %(levelname)s %(name)s: %(message)s")
    handled: list[tuple[int, int]] = []

    def on_rebalance(event: RebalanceEvent) -> None:
        events.put(
            MemberEvent(
                name,
                event.kind,
                partitions=tuple(p for _, p in event.partitions),
                committed=tuple((p, o) for _, p, o in event.committed),
            )
        )

    def handler(msg: Message) -> None:
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        handled.append((partition, offset))

    def report() -> None:
        if handled:
            events.put(MemberEvent(name, "processed", records=tuple(handled)))
            handled.clear()

    try:
        consumer = RecordConsumer(
            bootstrap_servers,
            group_id,
            [topic],
            handler,
            strategy=CommitStrategy.AT_LEAST_ONCE,
            commit_every=commit_every,
            on_rebalance=on_rebalance,
            config={"client.id": name, **config},
        )
        announced = False
        while not close.is_set():
            consumer.poll_once(0.1)
            report()
            if not announced and consumer.member_id():
                events.put(MemberEvent(name, "joined", member_id=consumer.member_id()))
                announced = True
        events.put(MemberEvent(name, "closing"))
        consumer.close()
        report()
        events.put(MemberEvent(name, "closed"))
    except Exception as exc:
        events.put(MemberEvent(name, "failed", detail=f"{type(exc).__name__}: {exc}"))
        raise


@dataclass
class _Process:
    process: multiprocessing.process.BaseProcess
    close: EventType


class MemberPool:
    """Group members, one process each, and the parent's view of who owns which partition.

    `owned` is rebuilt from the members' own reports (their `on_assign`/`on_revoke` callbacks);
    `events` keeps every report in arrival order. Wait for conditions with `wait_until` or
    `wait_balanced`; both take a deadline and never sleep.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topic: str,
        *,
        commit_every: int = 100,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topic = topic
        self._commit_every = commit_every
        # A heartbeat every 500 ms (default 3 s) tells members of a rebalance sooner; the session
        # timeout stays Kafka's 45 s, so a member that leaves is noticed through LeaveGroup, not it.
        self._config = {"heartbeat.interval.ms": 500, **(config or {})}
        # spawn, not fork: librdkafka's threads do not survive a fork.
        self._ctx = multiprocessing.get_context("spawn")
        self._events: multiprocessing.queues.Queue[MemberEvent] = self._ctx.Queue()
        self._processes: dict[str, _Process] = {}
        self.owned: dict[str, set[int]] = {}
        self.member_ids: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.closing: set[str] = set()
        self.closed: set[str] = set()
        self.events: list[MemberEvent] = []

    # -- control ----------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        """Start a member process called `name` (also its `client.id`)."""
        if name in self._processes:
            raise ValueError(f"member {name!r} already started")
        close = self._ctx.Event()
        process = self._ctx.Process(
            target=_member_main,
            args=(
                self.bootstrap_servers,
                self.group_id,
                self.topic,
                name,
                self._events,
                close,
                self._commit_every,
                dict(self._config),
            ),
            name=f"member-{name}",
            daemon=True,
        )
        process.start()
        self._processes[name] = _Process(process, close)
        self.owned[name] = set()

    def close(self, name: str) -> float:
        """Ask member `name` to `close()` (leave the group); returns when it was asked (monotonic)."""
        self._processes[name].close.set()
        return time.monotonic()

    def live(self) -> list[str]:
        """Members started and not asked to close, in start order."""
        return [n for n, p in self._processes.items() if not p.close.is_set()]

    def stop(self, timeout_s: float = 30.0) -> None:
        """Close every member and wait for the processes; kill any that hang."""
        for p in self._processes.values():
            p.close.set()
        deadline = time.monotonic() + timeout_s
        for p in self._processes.values():
            p.process.join(max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                p.process.kill()
                p.process.join(5)
        self._drain()

    def __enter__(self) -> MemberPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the parent's view ------------------------------------------------------------------------
    def _apply(self, event: MemberEvent) -> None:
        self.events.append(event)
        owned = self.owned.setdefault(event.member, set())
        if event.kind == "assigned":
            owned.update(event.partitions)
        elif event.kind in ("revoked", "lost"):
            owned.difference_update(event.partitions)
        elif event.kind == "joined":
            self.member_ids[event.member] = event.member_id
            self.pids[event.member] = event.pid
        elif event.kind == "closing":
            self.closing.add(event.member)
        elif event.kind == "closed":
            self.closed.add(event.member)
            owned.clear()
        elif event.kind == "failed":
            raise PipelinesError(f"member {event.member} failed: {event.detail}")

    def _drain(self) -> None:
        while True:
            try:
                self._apply(self._events.get_nowait())
            except queue.Empty:
                return

    def wait_until(
        self, condition: Callable[[MemberPool], bool], what: str, timeout_s: float = 30.0
    ) -> float:
        """Apply reports as they arrive until `condition(self)` holds; return the seconds it took.

        Raises TimeoutError naming `what` and the current ownership when the deadline passes.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        self._drain()
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} after {timeout_s} s; owned: {self.ownership()}")
            try:
                self._apply(self._events.get(timeout=remaining))
            except queue.Empty:
                continue
        return time.monotonic() - started

    def ownership(self) -> dict[str, list[int]]:
        return {name: sorted(parts) for name, parts in self.owned.items()}

    def is_balanced(self, members: Collection[str], partitions: int) -> bool:
        """Every partition owned by exactly one of `members`, each owning ⌊P/n⌋ or ⌈P/n⌉, and no one
        else owning anything."""
        counts = [len(self.owned.get(m, ())) for m in members]
        everyone = [p for parts in self.owned.values() for p in parts]
        low, high = partitions // len(members), -(-partitions // len(members))
        return (
            sorted(everyone) == list(range(partitions))
            and all(low <= c <= high for c in counts)
            and all(m in self.member_ids for m in members)
        )

    def wait_balanced(self, members: Collection[str], partitions: int, timeout_s: float = 30.0) -> float:
        """Wait until `members` (and only they) own the `partitions` partitions, balanced."""
        return self.wait_until(
            lambda pool: pool.is_balanced(members, partitions),
            f"balanced assignment of {partitions} partitions over {sorted(members)}",
            timeout_s,
        )

    def processed(self) -> list[tuple[str, int, int]]:
        """Every (member, partition, offset) reported as processed, in report order."""
        return [(e.member, p, o) for e in self.events if e.kind == "processed" for p, o in e.records]
