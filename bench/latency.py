"""End-to-end latency of order -> shipment at a fixed input rate.

Topics have one partition (Spark's real-time mode needs a task slot per source partition and
query: 2 of the bench session's `local[2]`) and `message.timestamp.type=LogAppendTime`, so every
record carries the broker's clock. `pipelines generate orders --rate R` sends for the configured
seconds; a tail consumer in the bench (`read_committed`, fetch wait 10 ms) receives the shipments.

Latency of one order = the wall-clock time the tail consumer received its shipment - the broker's
append time of the order: the time until the shipment is readable downstream (for exactly-once:
after its transaction committed). Broker and bench share one clock. Every order must get its
shipment (counts equal, matched by key), or the run is marked incorrect.

Before each measurement a warm-up of 200 orders must come through, so start-up is not measured.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench import env
from bench.stats import latency_summary, summarize

CONFIGS = (
    "spark_microbatch",
    "spark_microbatch_at_least_once",
    "spark_realtime",
    "python_at_least_once",
    "python_exactly_once",
)
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}


class Tail:
    """Receives a topic from offset 0 in a thread, keeping (key -> receive ms, append ms)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.received: dict[bytes, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": env.unique("tail"),
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, 0)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                if msg.error() is None:
                    now = time.time() * 1000
                    self.received.setdefault(msg.key(), (now, msg.timestamp()[1]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _orders_appended(bootstrap: str, topic: str, count: int) -> dict[bytes, int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": env.unique("orders"), "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is None:
                    out[msg.key()] = msg.timestamp()[1]
    finally:
        consumer.close()
    return out


def _generate(bootstrap: str, topic: str, count: int, rate: float, seed: int) -> None:
    cmd = [env.PIPELINES, "generate", "orders", "--count", str(count), "--rate", str(rate)]
    cmd += ["--seed", str(seed), "--topic", topic, "--bootstrap-servers", bootstrap]
    with env.child(cmd) as proc:
        _o, err = proc.communicate(timeout=count / rate + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"pipelines generate orders failed: {err[-1500:]}")


class _Pipeline:
    """Starts and stops one implementation between a source and a sink topic."""

    def __init__(
        self,
        config: str,
        spark_factory: Callable[[], Any],
        bootstrap: str,
        source: str,
        sink: str,
        workdir: Path,
    ) -> None:
        self.config, self.bootstrap, self.source, self.sink = config, bootstrap, source, sink
        self.spark_factory, self.workdir = spark_factory, workdir
        self._queries: Any = None
        self._proc: Any = None
        self._ctx: Any = None

    def start(self) -> None:
        if self.config.startswith("spark"):
            from pipelines.jobs.orders_to_shipments import start_orders_to_shipments

            trigger = "real-time" if self.config == "spark_realtime" else "processing-time=0 seconds"
            at_least_once = self.config in ("spark_realtime", "spark_microbatch_at_least_once")
            self._queries = start_orders_to_shipments(
                self.spark_factory(),
                bootstrap_servers=self.bootstrap,
                source_topic=self.source,
                sink_topic=self.sink,
                checkpoint=self.workdir / env.unique("ck"),
                trigger=trigger,
                guarantee="at-least-once" if at_least_once else "exactly-once",
            )
        else:
            guarantee = "exactly-once" if self.config == "python_exactly_once" else "at-least-once"
            cmd = [env.PIPELINES, "process", "orders-to-shipments", "--guarantee", guarantee]
            cmd += ["--source-topic", self.source, "--sink-topic", self.sink, "--group", env.unique("proc")]
            cmd += ["--bootstrap-servers", self.bootstrap]
            self._ctx = env.child(
                cmd,
                stdout=open(self.workdir / "processor.out", "a"),  # noqa: SIM115
                stderr=open(self.workdir / "processor.err", "a"),  # noqa: SIM115
            )
            self._proc = self._ctx.__enter__()

    def stop(self) -> None:
        if self._queries:
            self._queries.stop()
            self._queries = None
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


def measure(
    config: str,
    rate: float,
    seconds: float,
    spark_factory: Callable[[], Any],
    bootstrap: str,
    workdir: Path,
    seed: int,
) -> dict[str, Any]:
    source = env.new_topic(bootstrap, "bench-orders", 1, **LOG_APPEND)
    env.new_topic_named(bootstrap, f"{source}.dlq", 1)
    sink = env.new_topic(bootstrap, "bench-shipments", 1, **LOG_APPEND)
    tail = Tail(bootstrap, sink)
    pipeline = _Pipeline(config, spark_factory, bootstrap, source, sink, workdir)
    try:
        pipeline.start()
        _generate(bootstrap, source, 200, 1000, seed=seed * 1000)  # warm-up: distinct keys
        env.wait_for(lambda: len(tail.received) >= 200, 180, f"{config}: the warm-up's shipments")
        count = int(rate * seconds)
        _generate(bootstrap, source, count, rate, seed=seed)
        prefix = f"order-{seed}-".encode()
        done = lambda: sum(1 for k in list(tail.received) if k.startswith(prefix)) >= count  # noqa: E731
        with contextlib.suppress(TimeoutError):  # reported as incorrect below
            env.wait_for(done, 60, f"{config}: every shipment")
    finally:
        pipeline.stop()
        tail.close()
    appended = {
        k: v for k, v in _orders_appended(bootstrap, source, count + 200).items() if k.startswith(prefix)
    }
    received = {k: v for k, v in tail.received.items() if k.startswith(prefix)}
    visible = [received[k][0] - appended[k] for k in appended if k in received]
    at_append = [received[k][1] - appended[k] for k in appended if k in received]
    ok = len(appended) == count and len(received) == count and set(received) == set(appended)
    return {
        "visible_ms": latency_summary(visible) if visible else None,
        "append_ms": latency_summary(at_append) if at_append else None,
        "check": {"ok": ok, "orders": len(appended), "shipments": len(received), "requested": count},
    }


def run(
    spark_factory: Callable[[], Any],
    bootstrap: str,
    *,
    rates: tuple[int, ...],
    seconds: float,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
    configs: tuple[str, ...] = CONFIGS,
) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    seed = 500
    for config in configs:
        for rate in rates:
            runs = []
            for i in range(repeats):
                seed += 1
                r = measure(config, rate, seconds, spark_factory, bootstrap, workdir, seed)
                v = r["visible_ms"] or {}
                log(
                    f"latency {config} @{rate}/s #{i + 1}: p50 {v.get('p50', float('nan')):.0f} ms, "
                    f"p99 {v.get('p99', float('nan')):.0f} ms, correct={r['check']['ok']}"
                )
                runs.append(r)
            ok_runs = [r for r in runs if r["visible_ms"]]
            results[f"{config}@{rate}"] = {
                "config": config,
                "rate": rate,
                "correct": all(r["check"]["ok"] for r in runs),
                **{p: summarize([r["visible_ms"][p] for r in ok_runs]) for p in ("p50", "p95", "p99")},
                "runs": runs,
            }
    return {"seconds_per_run": seconds, "rates": list(rates), "results": results}
