"""How many partitions a topic should have, with the reasoning printed, not hidden.

The rules of thumb, each a line of the advisor's output:

* throughput: partitions >= target throughput / what one partition sustains (the slower of
  producing to it and consuming from it), after the expected growth;
* parallelism: a consumer group uses at most one consumer per partition, so plan for 2-3x the
  consumers you expect, which leaves room to scale out without touching the topic;
* partitions can be added but never removed, and adding them moves keys to other partitions
  (murmur2 modulo the count), so choose for the future once rather than grow often;
* too many costs too: more open files and memory on brokers, longer leader elections, more
  end-to-end latency per batch, and smaller batches per partition for producers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.errors import PipelinesError

PARALLELISM_FACTOR = 3
"""Partitions per expected consumer: room to scale consumers out without adding partitions."""
MANY_PARTITIONS = 200
"""Above this per topic, the costs of many partitions deserve a second look on a small cluster."""


@dataclass(frozen=True)
class PartitionPlan:
    recommended: int
    for_throughput: int
    for_parallelism: int
    reasons: tuple[str, ...]


def plan_partitions(
    *,
    target_mb_s: float,
    per_partition_mb_s: float,
    consumers: int,
    growth: float = 1.0,
    brokers: int = 1,
) -> PartitionPlan:
    """Recommend a partition count; every input is a plain number, so the advice is testable."""
    if target_mb_s <= 0 or per_partition_mb_s <= 0:
        raise PipelinesError("target and per-partition throughput must be positive (MB/s)")
    if consumers < 1 or growth < 1 or brokers < 1:
        raise PipelinesError("consumers and brokers must be at least 1, growth at least 1.0")
    future_mb_s = target_mb_s * growth
    for_throughput = math.ceil(future_mb_s / per_partition_mb_s)
    for_parallelism = consumers * PARALLELISM_FACTOR
    recommended = max(for_throughput, for_parallelism)
    # Even leadership: a multiple of the broker count spreads partition leaders evenly.
    recommended = math.ceil(recommended / brokers) * brokers
    reasons = [
        f"throughput: {target_mb_s:g} MB/s x growth {growth:g} = {future_mb_s:g} MB/s; one partition "
        f"sustains {per_partition_mb_s:.1f} MB/s -> at least {for_throughput} partition(s)",
        f"parallelism: {consumers} consumer(s) x {PARALLELISM_FACTOR} -> {for_parallelism} partitions, so "
        "the group can grow to that many consumers (one partition feeds at most one consumer of a group)",
    ]
    if brokers > 1:
        reasons.append(f"rounded up to a multiple of the {brokers} brokers so leaders spread evenly")
    reasons.append(
        f"recommendation: {recommended} partitions. Partitions can be added later but never removed, "
        "and adding them remaps keys to partitions (per-key order holds only after the change)"
    )
    if recommended > MANY_PARTITIONS:
        reasons.append(
            f"{recommended} is many for one topic: each partition costs broker memory and file handles, "
            "lengthens leader elections and shrinks producer batches; check the per-partition figure"
        )
    return PartitionPlan(recommended, for_throughput, for_parallelism, tuple(reasons))


@dataclass(frozen=True)
class Measurement:
    records: int
    megabytes: float
    produce_mb_s: float
    consume_mb_s: float

    @property
    def per_partition_mb_s(self) -> float:
        """What one partition sustains end to end: the slower side."""
        return min(self.produce_mb_s, self.consume_mb_s)


def measure_partition_throughput(
    bootstrap_servers: str, *, records: int = 50_000, record_bytes: int = 1024, timeout_s: float = 120.0
) -> Measurement:
    """Produce `records` records of `record_bytes` to a fresh one-partition topic (acks=all,
    idempotent, lz4) and read them back; the topic is deleted afterwards. A rough figure for this
    broker and this machine, which is what the advisor needs."""
    import os
    import time
    import uuid

    from confluent_kafka import Consumer

    from pipelines.kafka.admin import create_topic, delete_topic
    from pipelines.kafka.producer import make_producer, produce_all
    from pipelines.security import client_conf

    topic = f"pipelines-plan-probe-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap_servers, topic, partitions=1)
    try:
        # Random bytes do not compress: the figure is not flattered by lz4.
        payload = os.urandom(record_bytes)
        started = time.monotonic()
        report = produce_all(
            make_producer(bootstrap_servers), topic, ((None, payload) for _ in range(records))
        )
        produce_s = time.monotonic() - started
        if report.failed:
            raise PipelinesError(f"measuring failed: {len(report.failed)} records not acknowledged")
        consumer = Consumer(
            {
                **client_conf(bootstrap_servers),
                "group.id": f"{topic}-reader",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        seen, started = 0, time.monotonic()
        deadline = started + timeout_s
        try:
            while seen < records and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                    if msg.error() is None:
                        seen += 1
        finally:
            consumer.close()
        consume_s = time.monotonic() - started
        if seen < records:
            raise PipelinesError(f"measuring failed: read back {seen} of {records} records in {timeout_s} s")
    finally:
        delete_topic(bootstrap_servers, topic)
    mb = records * record_bytes / 1_000_000
    return Measurement(records, mb, mb / produce_s, mb / consume_s)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), as an unsigned 32-bit int.

    The Java client's default partitioner, Spark's kafka sink and librdkafka's `murmur2_random`
    all place a keyed record on `partition_for(key, n)`; tests prove the three agree.
    """
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length - length % 4
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on with a murmur2 partitioner (Java's default)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
