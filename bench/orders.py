"""Throughput of the jobs that read `orders`, over one preloaded topic (3 partitions).

- `spark_shipments`: the orders -> shipments job as it ships (`start_orders_to_shipments`,
  available-now, exactly-once through Kafka transactions, dead letters from the same query) on the
  bench's warmed-up SparkSession, into a fresh sink topic; timed from starting the queries to
  their end. `spark_shipments_at_least_once`: the same with Spark's own kafka sink.
- `processor_at_least_once`, `processor_exactly_once`: the Python consume-transform-produce
  processor (`pipelines process orders-to-shipments --max-records N`), a child process timed from
  its start (Python start-up and the consumer group join included, as the naive loop is) to its
  exit, into a fresh sink topic, at its profile's commit interval (100 ms);
  `processor_exactly_once_10ms` and `processor_exactly_once_1000ms` at 10 ms and 1 s, for the
  latency/throughput trade-off table (transactions per second from its summary line).
- `spark_customer_counts`: the stateful per-customer count job (`start_customer_order_counts`,
  available-now, Delta MERGE sink, no dead-letter query) into a fresh table.

Checks, against the generator's output computed in plain Python: the sink topic holds exactly one
shipment per order, and their keys are exactly the orders' keys (no duplicate, none missing); the
customer table holds exactly each customer's count and amount (to the cent).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from bench import env
from bench.stats import summarize
from pipelines.generators.events import generate_events

PARTITIONS = 3
IMPLEMENTATIONS = (
    "spark_shipments",
    "spark_shipments_at_least_once",
    "processor_at_least_once",
    "processor_exactly_once",
    "processor_exactly_once_10ms",
    "processor_exactly_once_1000ms",
    "spark_customer_counts",
)
COMMIT_INTERVALS_S = {"processor_exactly_once_10ms": 0.01, "processor_exactly_once_1000ms": 1.0}


class Orders:
    """What was sent: the keys' digest (order-independent) and each customer's count and amount."""

    def __init__(self) -> None:
        self.count = 0
        self.keys = KeyDigest()
        self.customers: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal("0.00")])

    def add(self, key: bytes, value: bytes) -> None:
        self.count += 1
        self.keys.add(key)
        order = json.loads(value, parse_float=Decimal)
        per = self.customers[order["customer_id"]]
        per[0] += 1
        per[1] += order["amount"]


class KeyDigest:
    """A multiset of keys as a count and an XOR of their SHA-256 digests plus a sum mod 2**256:
    equal for equal multisets whatever the order, and a duplicate or a missing key changes it."""

    def __init__(self) -> None:
        self.n = 0
        self.xor = 0
        self.total = 0

    def add(self, key: bytes) -> None:
        h = int.from_bytes(hashlib.sha256(key).digest(), "big")
        self.n += 1
        self.xor ^= h
        self.total = (self.total + h) % (1 << 256)

    def value(self) -> tuple[int, int, int]:
        return self.n, self.xor, self.total


def preload(bootstrap: str, count: int, seed: int, log: Callable[[str], None]) -> tuple[str, Orders]:
    """A fresh topic with `count` valid orders (not timed) and what the broker acknowledged."""
    topic = env.new_topic(bootstrap, "bench-orders", PARTITIONS)
    env.new_topic_named(bootstrap, f"{topic}.dlq", 1)
    producer = env.preload_producer(bootstrap)
    sent = Orders()
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            failures.append(err.str())
        else:
            sent.add(msg.key(), msg.value())

    started = time.monotonic()
    env.produce_preload(
        producer, topic, generate_events("orders", count, seed=seed), on_delivery, "orders", count, log
    )
    size = env.topic_size(bootstrap, topic)
    if failures or sent.count != count or size != count:
        raise RuntimeError(f"preload incomplete: {sent.count:,} acknowledged, {size:,} on the topic")
    log(f"preload: {count:,} orders on {topic} in {time.monotonic() - started:.0f} s")
    return topic, sent


def sink_keys(bootstrap: str, topic: str) -> KeyDigest:
    """Every committed record's key on `topic` (read_committed, from offset 0 to the end, which the
    consumer reports per partition with a partition-EOF event, past any transaction marker)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": env.unique("check"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    digest, at_end = KeyDigest(), set()
    deadline = time.monotonic() + 300
    try:
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is None:
                    digest.add(msg.key())
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
    finally:
        consumer.close()
    if len(at_end) < len(parts):
        raise RuntimeError(f"could not read {topic} to its end within 300 s")
    return digest


def run_spark_shipments(
    spark: Any, bootstrap: str, topic: str, sent: Orders, workdir: Path, guarantee: str = "exactly-once"
) -> dict[str, Any]:
    from pipelines.jobs.orders_to_shipments import run_summary, start_orders_to_shipments

    sink = env.new_topic(bootstrap, "bench-shipments", PARTITIONS)
    checkpoint = workdir / env.unique("shipments")
    started = time.monotonic()
    group = start_orders_to_shipments(
        spark,
        bootstrap_servers=bootstrap,
        source_topic=topic,
        sink_topic=sink,
        checkpoint=checkpoint,
        trigger="available-now",
        max_offsets_per_trigger=env.settings().spark.max_offsets_per_trigger,
        guarantee=guarantee,
        spark_settings=env.settings().spark,
    )
    group.await_termination()
    seconds = time.monotonic() - started
    summary = run_summary(group)
    shutil.rmtree(checkpoint, ignore_errors=True)
    keys = sink_keys(bootstrap, sink)
    ok = keys.value() == sent.keys.value() and summary.read == sent.count and summary.shipped == sent.count
    return {
        "rate": sent.count / seconds,
        "seconds": seconds,
        "check": {"ok": ok, "shipments": keys.n, "summary": summary.as_dict()},
    }


def run_processor(
    guarantee: str,
    bootstrap: str,
    topic: str,
    sent: Orders,
    workdir: Path,
    commit_interval_s: float | None = None,
) -> dict[str, Any]:
    sink = env.new_topic(bootstrap, "bench-shipments", PARTITIONS)
    cmd = [env.PIPELINES, "process", "orders-to-shipments", "--guarantee", guarantee]
    if commit_interval_s is not None:
        cmd += ["--commit-interval", str(commit_interval_s)]
    cmd += ["--source-topic", topic, "--sink-topic", sink, "--group", env.unique("proc")]
    cmd += ["--max-records", str(sent.count), "--bootstrap-servers", bootstrap]
    started = time.monotonic()
    with env.child(cmd) as proc:
        _o, err = proc.communicate(timeout=1800)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the processor failed ({proc.returncode}): {err[-1500:]}")
    keys = sink_keys(bootstrap, sink)
    ok = keys.value() == sent.keys.value()
    summary = err.strip().splitlines()[-1:]
    found = re.search(r"(transactions committed|offset commits) ([\d,]+)", summary[0] if summary else "")
    commits = int(found.group(2).replace(",", "")) if found else None
    return {
        "rate": sent.count / seconds,
        "seconds": seconds,
        "commits": commits,
        "commits_per_s": commits / seconds if commits is not None else None,
        "check": {"ok": ok, "shipments": keys.n, "summary": summary},
    }


def run_spark_customer_counts(
    spark: Any, bootstrap: str, topic: str, sent: Orders, workdir: Path
) -> dict[str, Any]:
    from pipelines.jobs.customer_order_counts import start_customer_order_counts

    base = workdir / env.unique("counts")
    started = time.monotonic()
    group = start_customer_order_counts(
        spark,
        bootstrap_servers=bootstrap,
        source_topic=topic,
        checkpoint=base / "checkpoint",
        sink="delta",
        delta_path=base / "table",
        trigger="available-now",
        max_offsets_per_trigger=env.settings().spark.max_offsets_per_trigger,
        dead_letters=False,
        spark_settings=env.settings().spark,
    )
    group.await_termination()
    seconds = time.monotonic() - started
    rows = spark.read.format("delta").load(str(base / "table")).collect()
    shutil.rmtree(base, ignore_errors=True)
    actual = {r["customer_id"]: (r["order_count"], r["total_amount"]) for r in rows}
    expected = {c: (n, amount) for c, (n, amount) in sent.customers.items()}
    wrong = sorted(c for c in expected.keys() | actual.keys() if actual.get(c) != expected.get(c))
    return {
        "rate": sent.count / seconds,
        "seconds": seconds,
        "check": {
            "ok": not wrong,
            "customers": len(actual),
            "orders_counted": sum(n for n, _ in actual.values()),
            "wrong_customers": wrong[:5],
        },
    }


def _run_one(
    name: str, spark: Any, bootstrap: str, topic: str, sent: Orders, workdir: Path
) -> dict[str, Any]:
    if name == "spark_shipments":
        return run_spark_shipments(spark, bootstrap, topic, sent, workdir)
    if name == "spark_shipments_at_least_once":
        return run_spark_shipments(spark, bootstrap, topic, sent, workdir, guarantee="at-least-once")
    if name == "spark_customer_counts":
        return run_spark_customer_counts(spark, bootstrap, topic, sent, workdir)
    guarantee = "exactly-once" if "exactly_once" in name else "at-least-once"
    return run_processor(guarantee, bootstrap, topic, sent, workdir, COMMIT_INTERVALS_S.get(name))


def run(
    spark_factory: Callable[[], Any],
    bootstrap: str,
    *,
    count: int,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
    implementations: tuple[str, ...] = IMPLEMENTATIONS,
) -> dict[str, Any]:
    topic, sent = preload(bootstrap, count, seed=4242, log=log)
    spark = spark_factory() if any(n.startswith("spark") for n in implementations) else None
    if spark is not None:
        warm_topic, warm = preload(bootstrap, 20_000, seed=7, log=log)
        for name in (n for n in implementations if n.startswith("spark")):
            r = _run_one(name, spark, bootstrap, warm_topic, warm, workdir)
            log(f"orders {name}: warm-up run, correct={r['check']['ok']}")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in implementations}
    for i in range(repeats):
        for name in implementations if i % 2 == 0 else tuple(reversed(implementations)):
            r = _run_one(name, spark, bootstrap, topic, sent, workdir)
            log(
                f"orders {name} #{i + 1}: {r['rate']:,.0f} orders/s in {r['seconds']:.1f} s, "
                f"correct={r['check']['ok']}"
            )
            runs[name].append(r)
    return {
        "events": count,
        "partitions": PARTITIONS,
        "customers": len(sent.customers),
        "implementations": {
            n: {
                "rate": summarize([r["rate"] for r in rs]),
                "correct": all(r["check"]["ok"] for r in rs),
                "runs": rs,
            }
            for n, rs in runs.items()
        },
    }
