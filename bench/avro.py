"""Avro next to JSON, in the same run: the generator and the revenue job on each format.

- `generate_json`, `generate_avro`: `pipelines generate sales --count N --seed S` as a user runs it
  (a child process), `--format json` and `--format avro` (AvroSerializer, the Confluent wire
  format), to fresh 3-partition topics; the rate is the command's own (its summary line), checked
  against what the broker acknowledged and what the topic holds.
- `revenue_json`, `revenue_avro`: the revenue job (available-now, Delta append, its dead-letter
  query) on a preloaded topic of the same N sales (same seed, same event times) in each format,
  timed from starting the queries to their end, on the bench's SparkSession. Both results are
  compared with the totals computed from the JSON bytes of the seed (bench.expected): the valid
  events of a seed are the same whatever the format, so one ground truth checks both.

A local schema registry (Apicurio, `pipelines.registry.local`) is started for the workload in its
work folder and stopped at the end. Measurements alternate the order of the formats per repeat, so
a drifting machine load favours neither.

Not wired into `bench/cli.py` (the workload list): `run(...)` has the signature the other workloads
have, plus the SparkSession, and returns the same shape of results (`implementations` with a
`rate` summary, `correct` and the `runs`).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from bench import env
from bench.expected import ExpectedTotals, compare, normalise
from bench.stats import summarize
from pipelines.contracts import dead_letter_topic
from pipelines.generators.events import AvroWriters, generate_events
from pipelines.registry.avro import WireEncoder, avro_record
from pipelines.registry.local import LocalRegistry
from pipelines.registry.schemas import SchemaStore, contract_schema

PARTITIONS = 3
FORMATS = ("json", "avro")
_SUMMARY = re.compile(
    r"sent ([\d,]+) \(late [\d,]+, malformed [\d,]+\), acknowledged ([\d,]+), failed ([\d,]+) in ([\d.]+) s"
)


def run_generate(
    bootstrap: str, registry_url: str, value_format: str, count: int, seed: int
) -> dict[str, Any]:
    """`pipelines generate sales --format FORMAT` to a fresh topic, as a child process."""
    topic = env.new_topic(bootstrap, f"bench-gen-{value_format}", PARTITIONS)
    cmd = [env.PIPELINES, "generate", "sales", "--count", str(count), "--seed", str(seed), "--topic", topic]
    cmd += ["--format", value_format, "--registry-url", registry_url, "--bootstrap-servers", bootstrap]
    started = time.monotonic()
    with env.child(cmd) as proc:
        _out, err = proc.communicate(timeout=900)
    wall = time.monotonic() - started
    m = _SUMMARY.search(err)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(
            f"pipelines generate --format {value_format} failed ({proc.returncode}): {err[-1500:]}"
        )
    sent, acked, failed = (int(env.number(m.group(i))) for i in (1, 2, 3))
    seconds = float(m.group(4))
    on_topic = env.topic_size(bootstrap, topic)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "wall_s": wall,
        "check": {
            "ok": sent == count and acked == count and failed == 0 and on_topic == count,
            "acknowledged": acked,
            "on_topic": on_topic,
        },
    }


def preload(
    bootstrap: str, store: SchemaStore, count: int, seed: int, log: Callable[[str], None]
) -> tuple[dict[str, str], ExpectedTotals]:
    """One topic per format with the same `count` clean sales (not timed), and the totals of the
    seed's JSON bytes, the ground truth of both."""
    span = timedelta(milliseconds=count * 100 + 3_600_000)
    start = (datetime.now(UTC) - span).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    expected = ExpectedTotals()
    for event in generate_events("sales", count, seed=seed, start=start):
        expected.add(event.value)
    topics: dict[str, str] = {}
    for value_format in FORMATS:
        topic = env.new_topic(bootstrap, f"bench-sales-{value_format}", PARTITIONS)
        env.new_topic_named(bootstrap, dead_letter_topic(topic), 1)
        avro = None
        if value_format == "avro":
            encoder = WireEncoder(store, topic, contract_schema("sales"))
            avro = AvroWriters(lambda d, e=encoder: e.encode(avro_record(d)), lambda d: b"")
        producer = env.preload_producer(bootstrap)
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Any, failures: list[str] = failures) -> None:
            if err is not None:
                failures.append(err.str())

        events = generate_events("sales", count, seed=seed, start=start, avro=avro)
        env.produce_preload(producer, topic, events, on_delivery, f"{value_format} sales", count, log)
        size = env.topic_size(bootstrap, topic)
        if failures or size != count:
            raise RuntimeError(f"{value_format} preload incomplete: {size:,} of {count:,} on the topic")
        topics[value_format] = topic
        log(f"preload: {count:,} {value_format} sales on {topic}")
    return topics, expected


def run_revenue(
    spark: Any,
    bootstrap: str,
    registry_url: str,
    value_format: str,
    topic: str,
    count: int,
    expected: ExpectedTotals,
    workdir: Path,
    max_offsets_per_trigger: int | None,
) -> dict[str, Any]:
    """The revenue job as it ships, in `value_format`, checked against the seed's totals."""
    from pipelines.jobs.revenue_per_minute import start_revenue_per_minute

    base = workdir / env.unique(f"revenue-{value_format}")
    started = time.monotonic()
    job = start_revenue_per_minute(
        spark,
        bootstrap_servers=bootstrap,
        topic=topic,
        checkpoint=base / "checkpoint",
        delta_path=base / "revenue",
        trigger="available-now",
        dlq_topic=dead_letter_topic(topic),
        max_offsets_per_trigger=max_offsets_per_trigger,
        value_format=value_format,
        registry_url=registry_url,
        spark_settings=env.settings().spark,
    )
    job.await_termination()
    seconds = time.monotonic() - started
    summary = job.summary()
    rows = spark.read.format("delta").load(str(base / "revenue")).collect()
    actual = normalise(
        (r["window_start"].strftime("%Y-%m-%dT%H:%M"), r["category"], r["revenue"], r["sales_count"])
        for r in rows
    )
    check = compare(actual, expected.totals(), allow_open_tail=True)
    ok = (
        check.ok
        and summary.read == count
        and summary.reconciles
        and summary.dead_lettered == 0
        and summary.still_open == check.missing_events
    )
    shutil.rmtree(base, ignore_errors=True)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "batches": len(job.progress(job.main_name)),
        "check": {**check.as_dict(), "ok": ok, "summary": summary.as_dict()},
    }


def run(
    bootstrap: str,
    spark: Any,
    *,
    count: int,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
    max_offsets_per_trigger: int | None = None,
    generate_count: int | None = None,
) -> dict[str, Any]:
    """Both formats, `repeats` times each: the generator (`generate_count` sales, default `count`)
    and the revenue job over `count` preloaded sales."""
    registry_dir = workdir / "registry"
    runs: dict[str, list[dict[str, Any]]] = {f"{w}_{f}": [] for w in ("generate", "revenue") for f in FORMATS}
    with LocalRegistry(registry_dir, env.jars_dir()) as registry:
        url = registry.ccompat_url
        topics, expected = preload(bootstrap, SchemaStore(url), count, seed=7, log=log)
        for i in range(repeats):
            order = FORMATS if i % 2 == 0 else tuple(reversed(FORMATS))
            for value_format in order:
                r = run_generate(bootstrap, url, value_format, generate_count or count, seed=100 + i)
                ok = r["check"]["ok"]
                log(f"avro: generate {value_format} #{i + 1}: {r['rate']:,.0f} events/s, correct={ok}")
                runs[f"generate_{value_format}"].append(r)
            for value_format in order:
                r = run_revenue(
                    spark, bootstrap, url, value_format, topics[value_format], count, expected, workdir,
                    max_offsets_per_trigger,
                )  # fmt: skip
                ok = r["check"]["ok"]
                log(f"avro: revenue {value_format} #{i + 1}: {r['rate']:,.0f} events/s, correct={ok}")
                runs[f"revenue_{value_format}"].append(r)
    implementations = {
        name: {
            "rate": summarize([r["rate"] for r in results]),
            "correct": all(r["check"]["ok"] for r in results),
            "runs": results,
        }
        for name, results in runs.items()
    }
    ratios = {
        workload: implementations[f"{workload}_avro"]["rate"]["median"]
        / implementations[f"{workload}_json"]["rate"]["median"]
        for workload in ("generate", "revenue")
        if implementations[f"{workload}_json"]["rate"].get("median")
    }
    return {
        "records": count,
        "partitions": PARTITIONS,
        "avro_over_json": ratios,
        "implementations": implementations,
    }
