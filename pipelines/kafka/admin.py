"""Topic administration through the AdminClient, waiting on results rather than sleeping.

Every failure a user can cause (a topic that exists or does not, a replication factor above the
broker count, an illegal name, fewer partitions than the topic has) becomes a PipelinesError with
one line that says what happened and what to do.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from pipelines.errors import PipelinesError
from pipelines.security import authorization_error, client_conf, is_authorization_error

_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
NOTABLE_CONFIGS = (
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "min.insync.replicas",
    "segment.bytes",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
)
"""Shown by `describe` whatever their source: the ones that decide retention and durability."""


_LIBRDKAFKA_LOG = logging.getLogger("pipelines.kafka.librdkafka")


class _Admin(AdminClient):
    """An AdminClient whose metadata answers turn a refused topic into a clear AuthorizationError
    (instead of looking like a topic that does not exist)."""

    def __init__(self, bootstrap_servers: str, conf: dict[str, Any]) -> None:
        super().__init__(conf, logger=_LIBRDKAFKA_LOG)
        self.bootstrap_servers = bootstrap_servers

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        md = super().list_topics(*args, **kwargs)
        topic = kwargs.get("topic", args[0] if args else None)
        found = md.topics.get(topic) if topic else None
        if found is not None and is_authorization_error(found.error):
            raise authorization_error(
                found.error, bootstrap_servers=self.bootstrap_servers, operation="Describe", name=str(topic)
            )
        return md


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An AdminClient for `bootstrap_servers`, with the security registered for them."""
    # librdkafka's own log lines go to Python logging; the entry point decides what is shown.
    return _Admin(bootstrap_servers, client_conf(bootstrap_servers))


def validate_topic_name(name: str) -> None:
    """Kafka's own rules, checked before asking the broker so the error can say exactly why."""
    if name in (".", ".."):
        raise PipelinesError(f"topic name {name!r} is not allowed")
    if not _LEGAL_NAME.match(name):
        raise PipelinesError(
            f"illegal topic name {name!r}: use 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"
        )


def _broker_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0]
    assert isinstance(err, KafkaError)
    return err


def create_topic(
    bootstrap_servers: str,
    name: str,
    *,
    partitions: int,
    replication_factor: int | None = None,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
    timeout_s: float = 30.0,
) -> bool:
    """Create `name` and wait until every partition has a leader; False if it already existed
    (with `exist_ok`). Raises PipelinesError with the broker's reason otherwise.

    Without `replication_factor` the cluster's `default.replication.factor` applies: 1 on the
    embedded broker, 3 on the local cluster (KIP-464; the broker fills it in)."""
    validate_topic_name(name)
    if partitions < 1 or (replication_factor is not None and replication_factor < 1):
        raise PipelinesError("--partitions and --replication-factor must be at least 1")
    admin = admin_client(bootstrap_servers)
    factor = -1 if replication_factor is None else replication_factor  # -1: the broker's default
    new = NewTopic(name, partitions, factor, config=dict(config or {}))
    future = admin.create_topics([new], operation_timeout=timeout_s)[name]
    created = True
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        err = _broker_error(exc)
        if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            if not exist_ok:
                raise PipelinesError(
                    f"topic {name!r} already exists (pass --exist-ok to accept that)"
                ) from None
            created = False
        elif err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
            brokers = len(admin.list_topics(timeout=timeout_s).brokers)
            asked = factor if factor > 0 else "the cluster's default.replication.factor"
            raise PipelinesError(
                f"cannot create topic {name!r} with replication factor {asked}: the cluster "
                f"has {brokers} broker(s). Use --replication-factor {brokers} or fewer, or start more "
                "brokers (pipelines broker start --brokers 3)."
            ) from None
        else:
            raise PipelinesError(f"cannot create topic {name!r}: {err.str()}") from None
    wait_for_leaders(admin, name, partitions, timeout_s)
    return created


def wait_for_leaders(admin: AdminClient, name: str, partitions: int, timeout_s: float) -> None:
    """Wait until metadata shows at least `partitions` partitions of `name`, each with a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=max(0.1, deadline - time.monotonic()))
        topic = md.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) >= partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
    raise PipelinesError(f"topic {name!r} has no leader for every partition after {timeout_s} s")


def delete_topic(bootstrap_servers: str, name: str, timeout_s: float = 30.0) -> None:
    admin = admin_client(bootstrap_servers)
    try:
        admin.delete_topics([name], operation_timeout=timeout_s)[name].result(timeout=timeout_s)
    except KafkaException as exc:
        err = _broker_error(exc)
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise PipelinesError(f"topic {name!r} does not exist") from None
        raise PipelinesError(f"cannot delete topic {name!r}: {err.str()}") from None


def list_topics(bootstrap_servers: str, *, internal: bool = False, timeout_s: float = 15.0) -> dict[str, int]:
    """Topic name -> partition count (internal `__` topics only with `internal`)."""
    md = admin_client(bootstrap_servers).list_topics(timeout=timeout_s)
    return {
        name: len(t.partitions)
        for name, t in sorted(md.topics.items())
        if internal or not name.startswith("__")
    }


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: dict[str, str] = field(default_factory=dict)
    """Notable configs and every config set on the topic itself (not a broker default)."""
    overridden: frozenset[str] = frozenset()
    """The config names set on the topic itself."""

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


def describe_topic(bootstrap_servers: str, name: str, timeout_s: float = 15.0) -> TopicInfo:
    """Leader, replicas and in-sync replicas of each partition, and the topic's notable configs."""
    admin = admin_client(bootstrap_servers)
    try:
        desc = admin.describe_topics(TopicCollection([name]), request_timeout=timeout_s)[name].result()
        resource = ConfigResource(ResourceType.TOPIC, name)
        entries = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result()
    except KafkaException as exc:
        err = _broker_error(exc)
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise PipelinesError(f"topic {name!r} does not exist (see `pipelines topics list`)") from None
        raise PipelinesError(f"cannot describe topic {name!r}: {err.str()}") from None
    partitions = tuple(
        PartitionInfo(
            partition=p.id,
            leader=p.leader.id if p.leader is not None else None,
            replicas=tuple(r.id for r in p.replicas),
            isr=tuple(r.id for r in p.isr),
        )
        for p in sorted(desc.partitions, key=lambda p: p.id)
    )
    overridden = frozenset(
        k for k, e in entries.items() if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    )
    configs = {k: str(e.value) for k, e in sorted(entries.items()) if k in NOTABLE_CONFIGS or k in overridden}
    return TopicInfo(name=name, partitions=partitions, configs=configs, overridden=overridden)


def add_partitions(bootstrap_servers: str, name: str, total: int, timeout_s: float = 30.0) -> int:
    """Grow `name` to `total` partitions; returns the previous count.

    Kafka can add partitions but never remove them, so a smaller `total` is refused before the
    broker is asked. Adding partitions changes which partition a key maps to (murmur2 modulo the
    count): per-key ordering holds only for records produced after the change.
    """
    current = len(describe_topic(bootstrap_servers, name, timeout_s).partitions)
    if total < current:
        raise PipelinesError(
            f"topic {name!r} has {current} partitions and Kafka cannot remove partitions. To have "
            f"{total}, create a new topic with {total} partitions, copy the data over (or let producers "
            "switch to it and old consumers drain the old one), then delete the old topic."
        )
    if total == current:
        raise PipelinesError(f"topic {name!r} already has {current} partitions; nothing to do")
    admin = admin_client(bootstrap_servers)
    try:
        admin.create_partitions([NewPartitions(name, total)], operation_timeout=timeout_s)[name].result(
            timeout=timeout_s
        )
    except KafkaException as exc:
        raise PipelinesError(f"cannot add partitions to {name!r}: {_broker_error(exc).str()}") from None
    wait_for_leaders(admin, name, total, timeout_s)
    return current


def end_offsets(bootstrap_servers: str, topic: str, timeout_s: float = 15.0) -> dict[int, int]:
    """Partition -> log-end offset (the offset the next record will get) of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {**client_conf(bootstrap_servers), "group.id": "pipelines-offsets", "enable.auto.commit": 0},
        logger=_LIBRDKAFKA_LOG,
    )
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is not None and is_authorization_error(md.error):
            raise authorization_error(
                md.error, bootstrap_servers=bootstrap_servers, operation="Describe", name=topic
            )
        if md is None or md.error is not None:
            raise PipelinesError(f"topic {topic!r} does not exist")
        deadline = time.monotonic() + timeout_s
        return {
            p: _high_watermark(consumer, TopicPartition(topic, p), deadline) for p in sorted(md.partitions)
        }
    finally:
        consumer.close()


_LEADERSHIP_MOVING = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._WAIT_COORD,
    KafkaError._TRANSPORT,
)
"""Answers of a partition whose leader is still loading it (a broker just restarted) or moving
(a broker just died): asking again shortly gets the offsets."""


def _high_watermark(consumer: Any, partition: Any, deadline: float) -> int:
    while True:
        try:
            return int(
                consumer.get_watermark_offsets(partition, timeout=max(0.5, deadline - time.monotonic()))[1]
            )
        except KafkaException as exc:
            err = _broker_error(exc)
            if err.code() not in _LEADERSHIP_MOVING or time.monotonic() >= deadline:
                raise PipelinesError(
                    f"cannot read the end offset of {partition.topic} [{partition.partition}]: {err.str()}"
                ) from None
            time.sleep(0.2)  # pacing the retries until the deadline; the leader decides when


READER_GROUP = "pipelines-reader"
"""The group id of the project's one-off readers (assigned partitions, nothing committed)."""


def _reader(bootstrap_servers: str, extra: dict[str, Any] | None = None) -> Any:
    """A consumer for reading assigned partitions once: no commits, the project's client settings."""
    from confluent_kafka import Consumer

    conf = {**client_conf(bootstrap_servers), "group.id": READER_GROUP, "enable.auto.commit": False}
    return Consumer({**conf, **(extra or {})}, logger=_LIBRDKAFKA_LOG)


def read_range(
    bootstrap_servers: str, topic: str, start: dict[int, int], end: dict[int, int], timeout_s: float = 30.0
) -> list[Any]:
    """Every record of `topic` from `start` (inclusive) to `end` (exclusive) offsets per partition
    that a `read_committed` consumer reads (on a topic written in transactions, the commit markers
    take offsets but are no records, and aborted records are skipped)."""
    return list(_committed_records(bootstrap_servers, topic, start, end, timeout_s))


def count_committed(
    bootstrap_servers: str, topic: str, start: dict[int, int], end: dict[int, int], timeout_s: float = 30.0
) -> int:
    """How many records `read_range` reads: on a topic written in transactions, end minus start
    would also count each transaction's commit marker and aborted records."""
    return sum(1 for _ in _committed_records(bootstrap_servers, topic, start, end, timeout_s))


def _committed_records(
    bootstrap_servers: str, topic: str, start: dict[int, int], end: dict[int, int], timeout_s: float
) -> Iterator[Any]:
    """The records of `read_range`. Done when the consumer's position reaches `end` on every
    partition: it moves past commit markers, which are never handed out, so the last record's
    offset + 1 may stay below `end`."""
    from confluent_kafka import TopicPartition

    wanted = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not wanted:
        return
    group = READER_GROUP
    consumer = _reader(bootstrap_servers, {"isolation.level": "read_committed"})
    try:
        # Metadata first: a principal that may not read the topic learns it from the topic's name.
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is not None and is_authorization_error(md.error):
            raise authorization_error(
                md.error, bootstrap_servers=bootstrap_servers, operation="Read", name=topic
            )
        consumer.assign([TopicPartition(topic, p, s) for p, (s, _) in wanted.items()])
        deadline = time.monotonic() + timeout_s
        while True:
            for msg in consumer.consume(1000, 0.2):
                if is_authorization_error(msg.error()):
                    raise authorization_error(
                        msg.error(),
                        bootstrap_servers=bootstrap_servers,
                        operation="Read",
                        name=topic,
                        group=group,
                    )
                if msg.error() is not None:
                    raise PipelinesError(f"reading {topic!r} failed: {msg.error()}")
                p, o = msg.partition(), msg.offset()
                if p in wanted and o is not None and o < wanted[p][1]:
                    yield msg
            positions = consumer.position([TopicPartition(topic, p) for p in wanted])
            if all(tp.offset >= wanted[tp.partition][1] for tp in positions):
                return
            if time.monotonic() >= deadline:
                raise PipelinesError(
                    f"could not read {topic!r} to its end offsets within {timeout_s} s (a transaction "
                    "still open on it holds read_committed readers back until it commits, aborts or "
                    "times out)"
                )
    finally:
        consumer.close()
