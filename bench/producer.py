"""Producer throughput: `pipelines generate sales` against Kafka's ProducerPerformance.

Both write to a fresh 3-partition topic of the same broker with the project's producer settings
(acks=all, idempotence, linger.ms=20, batch.size=262144, lz4). ProducerPerformance sends the same
payloads: a file of real `sales` values from the generator (`--payload-file`), so record sizes and
compressibility are the same; it sends them without keys. Correct when the count the tool reports
and the topic's end offsets both equal the records requested.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from bench import env
from bench.stats import summarize
from pipelines.generators.events import generate_events

PARTITIONS = 3
PRODUCER_PROPS = {
    "acks": "all",
    "enable.idempotence": "true",
    "linger.ms": "20",
    "batch.size": "262144",
    "compression.type": "lz4",
}
_SUMMARY = re.compile(
    r"sent ([\d,]+) .*acknowledged ([\d,]+), failed ([\d,]+) in ([\d.]+) s \(([\d,]+) events/s\)"
)
_PERF = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)", re.M)


def payload_file(path: Path, count: int = 20_000) -> tuple[Path, float]:
    """Real sales values, one a line (they contain no newline), and their mean size in bytes."""
    values = [e.value for e in generate_events("sales", count, seed=7)]
    path.write_bytes(b"\n".join(values) + b"\n")
    return path, sum(len(v) for v in values) / len(values)


def run_generate(bootstrap: str, count: int, seed: int, tree: Path | None = None) -> dict[str, Any]:
    """`pipelines generate sales`; with `tree`, the `pipelines` package found there (an earlier commit)."""
    topic = env.new_topic(bootstrap, "bench-gen", PARTITIONS)
    program = (
        [env.PIPELINES] if tree is None else [env.PYTHON, "-c", "from pipelines.cli import main; main()"]
    )
    cmd = [*program, "generate", "sales", "--count", str(count), "--seed", str(seed), "--topic", topic]
    cmd += ["--bootstrap-servers", bootstrap]
    extra_env = {} if tree is None else {"env": {**os.environ, "PYTHONPATH": str(tree)}, "cwd": tree}
    started = time.monotonic()
    with env.child(cmd, **extra_env) as proc:
        _out, err = proc.communicate(timeout=900)
    wall = time.monotonic() - started
    m = _SUMMARY.search(err)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"pipelines generate failed ({proc.returncode}): {err[-1500:]}")
    sent, acked, failed = (int(env.number(m.group(i))) for i in (1, 2, 3))
    seconds = float(m.group(4))
    on_topic = env.topic_size(bootstrap, topic)
    ok = sent == count and acked == count and failed == 0 and on_topic == count
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "wall_s": wall,
        "check": {
            "ok": ok,
            "requested": count,
            "acknowledged": acked,
            "failed": failed,
            "on_topic": on_topic,
        },
    }


def run_producer_performance(bootstrap: str, count: int, payloads: Path) -> dict[str, Any]:
    topic = env.new_topic(bootstrap, "bench-perf", PARTITIONS)
    props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    args = ["--topic", topic, "--num-records", str(count), "--throughput", "-1"]
    args += ["--payload-file", str(payloads), "--producer-props", *props]
    out = env.kafka_tool("org.apache.kafka.tools.ProducerPerformance", args).stdout
    totals = list(_PERF.finditer(out))
    m = totals[-1] if totals else None  # the last line is the total
    if m is None:
        raise RuntimeError(f"cannot read ProducerPerformance's output: {out[-1500:]}")
    reported = int(m.group(1))
    on_topic = env.topic_size(bootstrap, topic)
    return {
        "rate": float(m.group(2)),
        "mb_per_s": float(m.group(3)),
        "check": {"ok": reported == count and on_topic == count, "requested": count, "on_topic": on_topic},
    }


def run(
    bootstrap: str, *, count: int, repeats: int, workdir: Path, log: Any, baseline: Path | None = None
) -> dict[str, Any]:
    """`baseline`: a tree of an earlier commit whose generator runs too, as `generate_baseline`."""
    payloads, mean_size = payload_file(workdir / "sales-payloads.txt")
    names = ["generate", "producer_performance", *(["generate_baseline"] if baseline else [])]
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(repeats):
        # Alternate the order so a drifting machine load favours none.
        for name in names if i % 2 == 0 else list(reversed(names)):
            if name == "producer_performance":
                r = run_producer_performance(bootstrap, count, payloads)
            else:
                r = run_generate(
                    bootstrap, count, seed=100 + i, tree=baseline if name != "generate" else None
                )
            log(f"producer {name} #{i + 1}: {r['rate']:,.0f} records/s, correct={r['check']['ok']}")
            results[name].append(r)
    return {
        "records": count,
        "partitions": PARTITIONS,
        "mean_record_bytes": round(mean_size, 1),
        "producer_props": PRODUCER_PROPS,
        "implementations": {
            name: {
                "rate": summarize([r["rate"] for r in runs]),
                "correct": all(r["check"]["ok"] for r in runs),
                "runs": runs,
            }
            for name, runs in results.items()
        },
    }
