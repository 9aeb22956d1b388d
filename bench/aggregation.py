"""Aggregation throughput: revenue per category per minute over one preloaded `sales` topic.

- `spark`: the project's revenue job as it ships (`pipelines.flows.start_revenue_per_minute`:
  available-now, append mode into Delta, with its dead-letter query), on the bench's SparkSession
  (`local[2]`, the profile's shuffle partitions and maxOffsetsPerTrigger). Timed from starting the
  queries to their end; the session's own start-up is the `startup` workload.
- `naive`: bench/naive.py (poll loop, json.loads, dict of windows), a child process.
- `quix`: bench/quix.py (Quix Streams tumbling window), a child process.
- `spark_batch`: the Spark batch ceiling: the same parse (`parse_sales`) and the same window
  aggregation (`to_revenue_stream`) as one Spark *batch* query over the whole topic, on the same
  session; what the streaming job would reach with no per-batch cost and one read per record.
- `spark_read`: Spark's kafka source reading every record's value as a batch query, nothing else:
  the ceiling of anything Spark does with the topic here.
- `consumer_performance`: Kafka's ConsumerPerformance reading the topic: the ceiling.

Every result is compared with totals computed from the bytes sent (bench.expected): all windows
equal, revenue exact to the cent. Spark's job legitimately leaves the last windows open (the
watermark has not passed them in an available-now run): they may be missing only at the end, and
their events must be exactly the ones the job reports as `still_open`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from bench import env
from bench.expected import ExpectedTotals, Totals, compare, normalise
from bench.stats import summarize
from pipelines.contracts import dead_letter_topic
from pipelines.generators.events import generate_events

PARTITIONS = 3
IMPLEMENTATIONS = ("spark", "spark_batch", "spark_read", "naive", "quix", "consumer_performance")
SPARK_CEILINGS = ("spark_batch", "spark_read")
"""Batch queries on the bench's SparkSession that bound what the streaming job can reach."""


def preload(bootstrap: str, count: int, seed: int, log: Callable[[str], None]) -> tuple[str, ExpectedTotals]:
    """A fresh topic with `count` clean sales (not timed), and the expected totals of what the
    broker acknowledged."""
    topic = env.new_topic(bootstrap, "bench-sales", PARTITIONS)
    env.new_topic_named(bootstrap, f"{topic}.dlq", 1)
    producer = env.preload_producer(bootstrap)
    # Event time ends before now: a backlog of history. Quix Streams writes event time as the
    # timestamp of its repartition and changelog records, and Kafka 4 refuses records more than an
    # hour in the future (log.message.timestamp.after.max.ms), which 2M events 100 ms apart from
    # a fixed start would be.
    span = timedelta(milliseconds=count * 100 + 3_600_000)
    start = (datetime.now(UTC) - span).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    expected = ExpectedTotals()
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            failures.append(err.str())
        else:
            expected.add(msg.value())

    started = time.monotonic()
    env.produce_preload(
        producer,
        topic,
        generate_events("sales", count, seed=seed, start=start),
        on_delivery,
        "sales",
        count,
        log,
    )
    size = env.topic_size(bootstrap, topic)
    if failures or expected.events != count or size != count:
        raise RuntimeError(f"preload incomplete: {expected.events:,} acknowledged, {size:,} on the topic")
    log(f"preload: {count:,} sales on {topic} in {time.monotonic() - started:.0f} s")
    return topic, expected


@contextlib.contextmanager
def _parser(per_field: bool, fast_path: bool = True) -> Iterator[None]:
    """Queries started inside use an earlier parser: with `fast_path=False` every record goes
    through the VARIANT parse (the parser before its canonical fast path); with `per_field` also
    through the field-by-field checks (the parser before that, kept as `_error_reason_per_field`)."""
    from pipelines.transforms import parsing, sales

    checks, parse = parsing._error_reason, sales.parse_events
    if per_field:
        parsing._error_reason = parsing._error_reason_per_field
    if not fast_path:
        sales.parse_events = functools.partial(parsing.parse_events, fast_path=False)
    try:
        yield
    finally:
        parsing._error_reason, sales.parse_events = checks, parse


def run_spark(
    spark: Any,
    bootstrap: str,
    topic: str,
    count: int,
    expected: Totals,
    workdir: Path,
    *,
    max_offsets_per_trigger: int | None,
    shuffle_partitions: int | None = None,
    per_field_parser: bool = False,
    fast_path: bool = True,
) -> dict[str, Any]:
    from pipelines.jobs.revenue_per_minute import start_revenue_per_minute

    if shuffle_partitions is not None:
        spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    base = workdir / env.unique("spark")
    started = time.monotonic()
    with _parser(per_field_parser, fast_path):
        job = start_revenue_per_minute(
            spark,
            bootstrap_servers=bootstrap,
            topic=topic,
            checkpoint=base / "checkpoint",
            delta_path=base / "revenue",
            trigger="available-now",
            dlq_topic=dead_letter_topic(topic),
            max_offsets_per_trigger=max_offsets_per_trigger,
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
    check = compare(actual, expected, allow_open_tail=True)
    ok = (
        check.ok
        and summary.read == count
        and summary.reconciles
        and summary.late == 0
        and summary.dead_lettered == 0
        and summary.still_open == check.missing_events
    )
    progress = job.progress(job.main_name)
    batches = len(progress)
    state_rows_max = max(
        (sum(op.get("numRowsTotal", 0) for op in p.get("stateOperators") or []) for p in progress), default=0
    )
    profile = _duration_profile(job)
    shutil.rmtree(base, ignore_errors=True)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "batches": batches,
        "state_rows_max": state_rows_max,
        "profile_ms": profile,
        "check": {**check.as_dict(), "ok": ok, "summary": summary.as_dict()},
    }


def _kafka_batch(spark: Any, bootstrap: str, topic: str) -> Any:
    """The whole topic as a batch DataFrame of Spark's kafka source (earliest to latest)."""
    from pipelines.security import spark_kafka_options

    reader = spark.read.format("kafka").options(**spark_kafka_options(bootstrap))
    return reader.option("subscribe", topic).option("startingOffsets", "earliest").load()


def run_spark_batch(spark: Any, bootstrap: str, topic: str, count: int, expected: Totals) -> dict[str, Any]:
    """The streaming job's parse and aggregation as one batch query: every window is complete (a
    batch query has no watermark), so every window must equal the expected totals."""
    from pyspark.sql import functions as F

    from pipelines.transforms.revenue import to_revenue_stream
    from pipelines.transforms.sales import parse_sales

    started = time.monotonic()
    parsed = parse_sales(_kafka_batch(spark, bootstrap, topic))
    # The job's defaults; the watermark is a no-op on a batch DataFrame.
    revenue = to_revenue_stream(parsed, window="1 minute", watermark="30 seconds")
    minute = F.date_format("window_start", "yyyy-MM-dd'T'HH:mm").alias("minute")
    rows = revenue.select(minute, "category", "revenue", "sales_count").collect()
    seconds = time.monotonic() - started
    check = compare(normalise((r[0], r[1], r[2], r[3]) for r in rows), expected)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "check": {**check.as_dict(), "ok": check.ok and check.events_counted == count},
    }


def run_spark_read(spark: Any, bootstrap: str, topic: str, count: int, value_bytes: int) -> dict[str, Any]:
    """Spark reads every record of the topic and its value (their count and total length must be
    what the broker acknowledged), and does nothing else."""
    from pyspark.sql import functions as F

    started = time.monotonic()
    row = _kafka_batch(spark, bootstrap, topic).agg(F.count("*"), F.sum(F.length("value"))).first()
    seconds = time.monotonic() - started
    records, total = int(row[0]), int(row[1] or 0)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "check": {"ok": (records, total) == (count, value_bytes), "records": records, "value_bytes": total},
    }


def _run_ceiling(
    name: str, spark: Any, bootstrap: str, topic: str, count: int, totals: ExpectedTotals
) -> dict[str, Any]:
    if name == "spark_batch":
        return run_spark_batch(spark, bootstrap, topic, count, totals.totals())
    return run_spark_read(spark, bootstrap, topic, count, totals.value_bytes)


def _duration_profile(job: Any) -> dict[str, dict[str, int]]:
    """Milliseconds per phase (durationMs of every batch's progress), summed per query: where the
    Spark job spends its time."""
    out: dict[str, dict[str, int]] = {}
    for name in job:
        phases: dict[str, int] = defaultdict(int)
        progress = job.progress(name)
        for p in progress:
            for phase, ms in (p.get("durationMs") or {}).items():
                phases[phase] += int(ms)
        phases["batches"] = len(progress)
        out[name] = dict(phases)
    return out


def run_python(
    module: str, bootstrap: str, topic: str, count: int, expected: Totals, workdir: Path
) -> dict[str, Any]:
    out = workdir / f"{env.unique(module)}.json"
    args = [env.PYTHON, "-m", f"bench.{module}", bootstrap, topic, str(count), str(out)]
    if module == "quix":  # a script with no project imports, in Quix Streams' own virtualenv
        args = [env.QUIX_PYTHON, str(env.ROOT / "bench" / "quix.py"), *args[3:]]
        args.append(str(workdir / env.unique("quix-state")))
    with env.child(args) as proc:
        _o, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.{module} failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    actual = normalise((m, c.strip('"'), rev, n) for m, c, rev, n in result["windows"])
    check = compare(actual, expected)
    ok = check.ok and result["records"] == count and check.events_counted == count
    return {
        "rate": count / result["seconds"],
        "seconds": result["seconds"],
        "check": {**check.as_dict(), "ok": ok},
    }


_CSV = re.compile(r"^\s*\d{4}-\d\d-\d\d .*$", re.M)


def run_consumer_performance(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    args = ["--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(count)]
    args += ["--group", env.unique("perf"), "--timeout", "120000"]
    out = env.kafka_tool("org.apache.kafka.tools.ConsumerPerformance", args).stdout
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    lines = _CSV.findall(out)
    if not lines:
        raise RuntimeError(f"cannot read ConsumerPerformance's output: {out[-1500:]}")
    fields = [f.strip() for f in lines[-1].split(",")]
    consumed = int(float(fields[4]))
    return {
        "rate": float(fields[5]),
        "fetch_rate": float(fields[9]),
        "mb_per_s": float(fields[3]),
        "check": {"ok": consumed == count, "consumed": consumed, "requested": count},
    }


def run(
    spark_factory: Callable[[], Any],
    bootstrap: str,
    *,
    count: int,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
    max_offsets_per_trigger: int | None,
    shuffle_partitions: int,
    implementations: tuple[str, ...] = IMPLEMENTATIONS,
    spark_variants: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    topic, totals = preload(bootstrap, count, seed=2026, log=log)
    expected = totals.totals()
    default = {"max_offsets_per_trigger": max_offsets_per_trigger, "shuffle_partitions": shuffle_partitions}
    variants = {"spark": default, **(spark_variants or {})}
    names = [n for n in implementations if n != "spark"] + [n for n in variants if "spark" in implementations]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    needs_spark = any(n == "spark" or n in SPARK_CEILINGS for n in implementations)
    spark = spark_factory() if needs_spark else None
    if spark is not None:
        # The first queries of a session pay for class loading and JIT (3-4x slower here): one
        # untimed run of every Spark variant and ceiling on a small topic first.
        warm_topic, warm = preload(bootstrap, 20_000, seed=1, log=log)
        for name, variant in variants.items() if "spark" in implementations else ():
            r = run_spark(spark, bootstrap, warm_topic, 20_000, warm.totals(), workdir, **variant)
            log(f"aggregation {name}: warm-up run, correct={r['check']['ok']}")
        for name in [n for n in implementations if n in SPARK_CEILINGS]:
            r = _run_ceiling(name, spark, bootstrap, warm_topic, 20_000, warm)
            log(f"aggregation {name}: warm-up run, correct={r['check']['ok']}")
    for i in range(repeats):
        for name in names if i % 2 == 0 else list(reversed(names)):
            if name in variants:
                r = run_spark(spark, bootstrap, topic, count, expected, workdir, **variants[name])
            elif name in SPARK_CEILINGS:
                r = _run_ceiling(name, spark, bootstrap, topic, count, totals)
            elif name == "consumer_performance":
                r = run_consumer_performance(bootstrap, topic, count)
            else:
                r = run_python(name, bootstrap, topic, count, expected, workdir)
            log(
                f"aggregation {name} #{i + 1}: {r['rate']:,.0f} events/s in {r.get('seconds', 0):.1f} s, "
                f"correct={r['check']['ok']}"
            )
            runs[name].append(r)
    return {
        "events": count,
        "partitions": PARTITIONS,
        "windows": len(expected),
        "spark_variants": variants,
        "implementations": {
            n: {
                "rate": summarize([r["rate"] for r in rs]),
                "correct": all(r["check"]["ok"] for r in rs),
                "runs": rs,
            }
            for n, rs in runs.items()
        },
    }
