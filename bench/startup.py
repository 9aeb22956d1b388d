"""Start-up: from launching a job (a new process) to its first committed batch.

- `spark_revenue_job`: `python jobs/revenue_per_minute.py --trigger available-now` (JVM, session,
  query planning, first micro-batch) until `checkpoint/delta/commits/0` exists;
- `python_processor_*`: `pipelines process orders-to-shipments` until its consumer group has a
  committed offset (at-least-once: an offset commit; exactly-once: a committed transaction).

Each over a small topic of 1,000 events, so the time is start-up, not processing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench import env
from bench.stats import summarize
from pipelines.generators.events import generate_events
from pipelines.generators.publish import publish_events
from pipelines.kafka.producer import make_producer

CONFIGS = ("spark_revenue_job", "python_processor_at_least_once", "python_processor_exactly_once")


def _committed(bootstrap: str, group: str, topic: str) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, 0)], timeout=5)
        return any(tp.offset is not None and tp.offset > 0 for tp in offsets)
    finally:
        consumer.close()


def measure(config: str, bootstrap: str, sales: str, orders: str, workdir: Path) -> dict[str, Any]:
    base = workdir / env.unique("startup")
    if config == "spark_revenue_job":
        cmd = [env.PYTHON, "jobs/revenue_per_minute.py", "--bootstrap-servers", bootstrap, "--topic", sales]
        cmd += ["--delta-path", str(base / "revenue"), "--checkpoint", str(base / "checkpoint")]
        cmd += ["--progress-file", str(base / "progress.jsonl")]
        done: Callable[[], bool] = lambda: (base / "checkpoint" / "delta" / "commits" / "0").exists()  # noqa: E731
        timeout = 240.0
    else:
        group = env.unique("startup")
        sink = env.new_topic(bootstrap, "bench-startup-ship", 1)
        guarantee = "exactly-once" if config.endswith("exactly_once") else "at-least-once"
        cmd = [
            env.PIPELINES,
            "process",
            "orders-to-shipments",
            "--guarantee",
            guarantee,
            "--source-topic",
            orders,
        ]
        cmd += ["--sink-topic", sink, "--group", group, "--bootstrap-servers", bootstrap]
        done = lambda: _committed(bootstrap, group, orders)  # noqa: E731
        timeout = 120.0
    base.mkdir(parents=True)
    started = time.monotonic()
    with env.child(cmd, stdout=open(base / "out.log", "w"), stderr=open(base / "err.log", "w")) as proc:
        env.wait_for(
            lambda: done() or proc.poll() not in (None, 0), timeout, f"{config}'s first commit", 0.05
        )
        seconds = time.monotonic() - started
        ok = done()
    return {"seconds": seconds, "check": {"ok": ok}}


def run(bootstrap: str, *, repeats: int, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    sales = env.new_topic(bootstrap, "bench-startup-sales", 1)
    orders = env.new_topic(bootstrap, "bench-startup-orders", 1)
    env.new_topic_named(bootstrap, f"{sales}.dlq", 1)
    env.new_topic_named(bootstrap, f"{orders}.dlq", 1)
    producer = make_producer(bootstrap)
    publish_events(producer, sales, generate_events("sales", 1000, seed=3))
    publish_events(producer, orders, generate_events("orders", 1000, seed=3))
    results: dict[str, Any] = {}
    for config in CONFIGS:
        runs = []
        for i in range(repeats):
            r = measure(config, bootstrap, sales, orders, workdir)
            log(f"startup {config} #{i + 1}: {r['seconds']:.1f} s, correct={r['check']['ok']}")
            runs.append(r)
        results[config] = {
            "seconds": summarize([r["seconds"] for r in runs]),
            "correct": all(r["check"]["ok"] for r in runs),
            "runs": runs,
        }
    return {"events": 1000, "results": results}
