"""`python -m bench`: run the selected workloads on a fresh local broker and write bench/results/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import env
from bench.latency import CONFIGS as LATENCY_CONFIGS

app = typer.Typer(add_completion=False, help=__doc__)
WORKLOADS = ("producer", "aggregation", "orders", "scaling", "latency", "startup", "avro")
RESULTS = Path(__file__).resolve().parent / "results"


def _log(text: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@app.command()
def run(
    workloads: Annotated[
        str, typer.Option("--workloads", "-w", help=f"comma-separated: {','.join(WORKLOADS)}")
    ] = ",".join(WORKLOADS),
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="repeats of every measurement (>= 3 for the README)")
    ] = 3,
    events: Annotated[int, typer.Option("--events", help="preloaded sales for the aggregation")] = 2_000_000,
    orders: Annotated[
        int, typer.Option("--orders", help="preloaded orders for the orders workload")
    ] = 500_000,
    scaling_sizes: Annotated[
        str, typer.Option("--scaling-sizes", help="sales per run of the scaling workload")
    ] = "250000,1000000,4000000",
    producer_records: Annotated[
        int, typer.Option("--producer-records", help="records per producer run")
    ] = 300_000,
    avro_events: Annotated[
        int,
        typer.Option("--avro-events", help="sales per format in the avro workload (generator, revenue job)"),
    ] = 500_000,
    latency_seconds: Annotated[
        float, typer.Option("--latency-seconds", help="seconds of input per latency run")
    ] = 10.0,
    rates: Annotated[
        str, typer.Option("--rates", help="input rates of the latency runs, events/s")
    ] = "1000,10000",
    spark_variant: Annotated[
        list[str] | None,
        typer.Option(
            "--spark-variant",
            help="extra Spark aggregation run: NAME:maxOffsets:shufflePartitions (0 = unbounded)",
        ),
    ] = None,
    aggregation_impls: Annotated[
        str,
        typer.Option(
            "--aggregation-impls",
            help="comma-separated: spark,spark_batch,spark_read,naive,quix,consumer_performance",
        ),
    ] = "spark,spark_batch,spark_read,naive,quix,consumer_performance",
    latency_configs: Annotated[
        str,
        typer.Option("--latency-configs", help="comma-separated pipelines of the latency workload"),
    ] = ",".join(LATENCY_CONFIGS),
    quick: Annotated[
        bool, typer.Option("--quick", help="small sizes and 1 repeat: a smoke test in a couple of minutes")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="where results go")] = RESULTS,
    note: Annotated[str, typer.Option("--note", help="a label stored with the results (e.g. 'before')")] = "",
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="a commit whose generator runs side by side (generate_baseline), and a Spark run with every "
            "record through the VARIANT parse, no canonical fast path (spark_baseline): before -> after "
            "within one run",
        ),
    ] = None,
    before: Annotated[
        Path | None, typer.Option("--before", help="an earlier run's JSON: adds a before -> after section")
    ] = None,
) -> None:
    """Measure the project next to the alternatives on this machine, check every result, and write
    bench/results/<UTC timestamp>.json, .md (and latest.md) and PNG charts."""
    selected = tuple(w.strip() for w in workloads.split(",") if w.strip())
    unknown = set(selected) - set(WORKLOADS)
    if unknown:
        raise typer.BadParameter(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    if quick:
        repeats, events, orders, scaling_sizes, producer_records, latency_seconds = (
            1,
            min(events, 50_000),
            min(orders, 20_000),
            "20000,40000",
            min(producer_records, 20_000),
            min(latency_seconds, 3.0),
        )
        avro_events = min(avro_events, 20_000)
    os.environ["TZ"] = "UTC"
    time.tzset()
    settings = env.settings()
    options = {
        "workloads": list(selected),
        "repeats": repeats,
        "events": events,
        "orders": orders,
        "scaling_sizes": scaling_sizes,
        "producer_records": producer_records,
        "avro_events": avro_events,
        "latency_seconds": latency_seconds,
        "rates": rates,
        "quick": quick,
        "note": note,
        "spark_max_offsets_per_trigger": settings.spark.max_offsets_per_trigger,
        "spark_shuffle_partitions": settings.spark.shuffle_partitions,
    }
    results: dict[str, Any] = {"machine": env.machine(), "options": options}
    _log(f"machine: {results['machine']}")
    workdir = Path(tempfile.mkdtemp(prefix="pipelines-bench-"))
    spark_holder: list[Any] = []

    def spark_factory() -> Any:
        if not spark_holder:
            from pipelines.local.jvm import spark_jars
            from pipelines.spark import build_session

            _log("starting the bench's SparkSession (local[2])")
            spark_holder.append(
                build_session(
                    "pipelines-bench",
                    master="local[2]",
                    jars=spark_jars(env.jars_dir()),
                    shuffle_partitions=settings.spark.shuffle_partitions,
                    log4j_config=settings.resolve_path(Path("conf/log4j2.properties")),
                    log_dir=workdir / "spark-logs",
                )
            )
        return spark_holder[0]

    variants: dict[str, dict[str, Any]] = {}
    for text in spark_variant or []:
        name, max_offsets, shuffle = text.split(":")
        variants[name] = {
            "max_offsets_per_trigger": int(max_offsets) or None,
            "shuffle_partitions": int(shuffle),
        }
    baseline_tree: Path | None = None
    if baseline:
        commit = subprocess.run(
            ["git", "rev-parse", baseline], cwd=env.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        options["baseline_commit"] = commit
        baseline_tree = env.export_tree(commit, workdir / "baseline")
        variants["spark_baseline"] = {
            "max_offsets_per_trigger": settings.spark.max_offsets_per_trigger,
            "shuffle_partitions": settings.spark.shuffle_partitions,
            "fast_path": False,
        }
    started = time.monotonic()
    try:
        with env.bench_broker(workdir / "broker") as broker:
            bootstrap = broker.bootstrap_servers
            _log(f"fresh broker at {bootstrap} in {workdir / 'broker'}")
            if "producer" in selected:
                from bench import producer

                results["producer"] = producer.run(
                    bootstrap,
                    count=producer_records,
                    repeats=repeats,
                    workdir=workdir,
                    log=_log,
                    baseline=baseline_tree,
                )
            if "aggregation" in selected:
                from bench import aggregation

                results["aggregation"] = aggregation.run(
                    spark_factory,
                    bootstrap,
                    count=events,
                    repeats=repeats,
                    workdir=workdir,
                    log=_log,
                    max_offsets_per_trigger=settings.spark.max_offsets_per_trigger,
                    shuffle_partitions=settings.spark.shuffle_partitions,
                    spark_variants=variants,
                    implementations=tuple(i.strip() for i in aggregation_impls.split(",") if i.strip()),
                )
            if "orders" in selected:
                from bench import orders as orders_workload

                results["orders"] = orders_workload.run(
                    spark_factory, bootstrap, count=orders, repeats=repeats, workdir=workdir, log=_log
                )
            if "scaling" in selected:
                from bench import scaling

                results["scaling"] = scaling.run(
                    spark_factory,
                    bootstrap,
                    sizes=tuple(int(n) for n in scaling_sizes.split(",")),
                    workdir=workdir,
                    log=_log,
                    max_offsets_per_trigger=settings.spark.max_offsets_per_trigger,
                )
            if "latency" in selected:
                from bench import latency

                results["latency"] = latency.run(
                    spark_factory,
                    bootstrap,
                    rates=tuple(int(r) for r in rates.split(",")),
                    seconds=latency_seconds,
                    repeats=repeats,
                    workdir=workdir,
                    log=_log,
                    configs=tuple(c.strip() for c in latency_configs.split(",") if c.strip()),
                )
            if "avro" in selected:
                from bench import avro

                results["avro"] = avro.run(
                    bootstrap,
                    spark_factory(),
                    count=avro_events,
                    repeats=repeats,
                    workdir=workdir,
                    log=_log,
                    max_offsets_per_trigger=settings.spark.max_offsets_per_trigger,
                )
            if "startup" in selected:
                from bench import startup

                results["startup"] = startup.run(bootstrap, repeats=repeats, workdir=workdir, log=_log)
    except BaseException as exc:
        # Keep what was measured: a long run stopped late still leaves its numbers.
        results["interrupted"] = f"{type(exc).__name__}: {exc}"
        _log(f"stopped ({results['interrupted']}); writing the results measured so far")
        raise
    finally:
        for spark in spark_holder:
            spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(
            Path(tempfile.gettempdir()) / f"pipelines-bench-tool-logs-{os.getpid()}", ignore_errors=True
        )
        _write(results, started, before, out_dir)


def _write(results: dict[str, Any], started: float, before: Path | None, out_dir: Path) -> None:
    results["duration_s"] = round(time.monotonic() - started, 1)
    from bench import report

    if before is not None:
        earlier = json.loads(before.read_text())
        results["before_after"] = report.before_after(earlier, results)
        results["before_file"] = before.name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = report.write(results, out_dir, stamp)
    _log(f"done in {results['duration_s']:.0f} s: {paths['json']} and {paths['md']}")
    print(paths["md"].read_text())


def main() -> None:
    app()
