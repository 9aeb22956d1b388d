"""End-to-end latency of order -> shipment at a fixed input rate.

Topics have one partition (Spark's real-time mode holds a task slot per source partition for the
whole run, on the bench session's `local[2]`) and `message.timestamp.type=LogAppendTime`, so every
record carries the broker's clock. `pipelines generate orders --rate R` sends for the configured
seconds; a tail consumer in the bench (`read_committed`, fetch wait 10 ms) receives the shipments.

Latency of one order = the wall-clock time the tail consumer received its shipment - the broker's
append time of the order: the time until the shipment is readable downstream (for exactly-once:
after its transaction committed). Broker and bench share one clock. Every order must get its
shipment (counts equal, matched by key), or the run is marked incorrect.

Before each measurement a warm-up of 200 orders must come through, so start-up is not measured.

Where the time goes, per run (`stages` in the JSON): `order_to_sink_append_ms` (the order's append
to its shipment's append: fetch, transform, produce; the pipeline's own work) and
`sink_append_to_visible_ms` (the shipment's append to its receipt: for exactly-once the wait for
the transaction's commit, then the reader's fetch); Spark runs add the mean milliseconds per
micro-batch of each phase Spark reports in its progress (`durationMs`: latestOffset, queryPlanning,
walCommit, addBatch, commitOffsets, triggerExecution), the processor its summary line (commits or
transactions). `cdf_ms` keeps every 0.5th percentile of each run, for the CDF chart.

The Python processor runs at its profile's commit interval (100 ms) and, for the trade-off table,
exactly-once at 10 ms and 1 s too (`python_exactly_once_10ms`, `python_exactly_once_1000ms`).
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
from bench.stats import latency_summary, percentile, summarize

CONFIGS = (
    "spark_microbatch",
    "spark_microbatch_at_least_once",
    "spark_realtime",
    "python_at_least_once",
    "python_exactly_once",
    "python_exactly_once_10ms",
    "python_exactly_once_1000ms",
)
COMMIT_INTERVALS_S = {"python_exactly_once_10ms": 0.01, "python_exactly_once_1000ms": 1.0}
SPARK_PHASES = ("latestOffset", "queryPlanning", "walCommit", "addBatch", "commitOffsets", "triggerExecution")
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}


class Tail:
    """Receives a topic from offset 0 in a thread, keeping (key -> receive ms, append ms), and
    counting the keys that start with `prefix` as they arrive (the measured orders: a scan of
    100,000 keys every 50 ms from another thread would hold the GIL the receiving thread needs,
    and show up as latency)."""

    def __init__(self, bootstrap: str, topic: str, prefix: bytes = b"") -> None:
        self.received: dict[bytes, tuple[float, int]] = {}
        self.prefix = prefix
        self.with_prefix = 0
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
            # What has arrived, without waiting; else wait for the next record. (consume(n, t) waits
            # for n records or t seconds: at 1,000/s consume(1000, 0.05) would hold each record up to
            # 50 ms before the receive time is taken.)
            messages = self._consumer.consume(1000, 0)
            if not messages:
                msg = self._consumer.poll(0.05)
                messages = [msg] if msg is not None else []
            now = time.time() * 1000
            received, prefix = self.received, self.prefix
            for msg in messages:
                if msg.error() is None and (key := msg.key()) not in received:
                    received[key] = (now, msg.timestamp()[1])
                    if key is not None and key.startswith(prefix):
                        self.with_prefix += 1

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
                spark_settings=env.settings().spark,
            )
        else:
            guarantee = "exactly-once" if "exactly_once" in self.config else "at-least-once"
            cmd = [env.PIPELINES, "process", "orders-to-shipments", "--guarantee", guarantee]
            if self.config in COMMIT_INTERVALS_S:
                cmd += ["--commit-interval", str(COMMIT_INTERVALS_S[self.config])]
            cmd += ["--source-topic", self.source, "--sink-topic", self.sink, "--group", env.unique("proc")]
            cmd += ["--bootstrap-servers", self.bootstrap]
            self._ctx = env.child(
                cmd,
                stdout=open(self.workdir / "processor.out", "a"),  # noqa: SIM115
                stderr=open(self.workdir / "processor.err", "a"),  # noqa: SIM115
            )
            self._proc = self._ctx.__enter__()

    def stop(self) -> dict[str, Any]:
        """Stop it; what it says about itself: Spark's mean phase times per micro-batch, or the
        processor's summary line."""
        said: dict[str, Any] = {}
        if self._queries:
            said["spark_phase_ms"] = _spark_phases(self._queries)
            self._queries.stop()
            self._queries = None
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
            lines = (self.workdir / "processor.err").read_text().strip().splitlines()
            said["processor_summary"] = lines[-1] if lines else ""
        return said


def _spark_phases(queries: Any) -> dict[str, Any]:
    """Mean `durationMs` per phase over the micro-batches that read records (real-time mode reports
    its long-running batches, not per-record phases)."""
    out: dict[str, Any] = {}
    group = getattr(queries, "queries", None)
    for query in group.values() if isinstance(group, dict) else [queries]:
        progress = [p for p in (query.recentProgress or []) if p.get("numInputRows", 0) > 0]
        if not progress:
            continue
        out[query.name or "query"] = {
            "batches": len(progress),
            **{
                phase: sum(p.get("durationMs", {}).get(phase, 0) for p in progress) / len(progress)
                for phase in SPARK_PHASES
            },
        }
    return out


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
    prefix = f"order-{seed}-".encode()
    tail = Tail(bootstrap, sink, prefix)
    pipeline = _Pipeline(config, spark_factory, bootstrap, source, sink, workdir)
    said: dict[str, Any] = {}
    try:
        pipeline.start()
        _generate(bootstrap, source, 200, 1000, seed=seed * 1000)  # warm-up: distinct keys
        env.wait_for(lambda: len(tail.received) >= 200, 180, f"{config}: the warm-up's shipments")
        count = int(rate * seconds)
        _generate(bootstrap, source, count, rate, seed=seed)
        done = lambda: tail.with_prefix >= count  # noqa: E731
        with contextlib.suppress(TimeoutError):  # reported as incorrect below
            env.wait_for(done, 60, f"{config}: every shipment")
    finally:
        said = pipeline.stop()
        tail.close()
    appended = {
        k: v for k, v in _orders_appended(bootstrap, source, count + 200).items() if k.startswith(prefix)
    }
    received = {k: v for k, v in tail.received.items() if k.startswith(prefix)}
    visible = [received[k][0] - appended[k] for k in appended if k in received]
    at_append = [received[k][1] - appended[k] for k in appended if k in received]
    to_visible = [received[k][0] - received[k][1] for k in appended if k in received]
    ok = len(appended) == count and len(received) == count and set(received) == set(appended)
    return {
        "visible_ms": latency_summary(visible) if visible else None,
        "append_ms": latency_summary(at_append) if at_append else None,
        "stages": {
            "order_to_sink_append_ms": latency_summary(at_append) if at_append else None,
            "sink_append_to_visible_ms": latency_summary(to_visible) if to_visible else None,
            **said,
        },
        "cdf_ms": [percentile(visible, q / 2) for q in range(201)] if visible else [],
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
                "stages": {
                    stage: {
                        p: summarize([r["stages"][stage][p] for r in ok_runs if r["stages"].get(stage)])
                        for p in ("p50", "p99")
                    }
                    for stage in ("order_to_sink_append_ms", "sink_append_to_visible_ms")
                },
                "runs": runs,
            }
    return {"seconds_per_run": seconds, "rates": list(rates), "results": results}
