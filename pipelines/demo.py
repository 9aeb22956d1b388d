"""`make run`: the whole stack on one machine, end to end, then a look at what it wrote.

Starts the local Kafka broker (unless one already runs), creates the `sales` topic, produces a
batch of seeded sales, runs the spine job (Spark's kafka source -> parse -> Delta, available-now)
and prints the table. Stops what it started, also on Ctrl-C. Running it again produces a new batch
(the next seed) and the job reads only the new records: its checkpoint remembers the offsets.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from pipelines.config import Settings
from pipelines.generators.sales import encode_sale, generate_sales
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.local.broker import LocalBroker

console = Console(stderr=True)


def run_demo(settings: Settings, environ: Mapping[str, str], count: int = 5000) -> int:
    state_dir = settings.resolve_path(settings.paths.data_dir).parent
    data_dir = settings.resolve_path(settings.paths.data_dir)
    checkpoint_dir = settings.resolve_path(settings.paths.checkpoint_dir)
    runs_file = state_dir / "demo-runs"
    run_number = int(runs_file.read_text()) + 1 if runs_file.is_file() else 1
    topic = settings.topics["sales"]
    broker = LocalBroker(
        settings.resolve_path(settings.broker.dir),
        settings.resolve_path(settings.paths.jars_dir),
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
    )
    started_at = time.monotonic()
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"[bold cyan][{step}/5][/] {text}  [dim]({time.monotonic() - started_at:.0f} s)[/]")

    say(f"starting the local Kafka broker in {broker.directory}")
    state, started_here = broker.start()
    try:
        console.print(
            f"      broker at {state.bootstrap_servers}" + ("" if started_here else " (already running)")
        )
        say(f"creating topic {topic.name!r} ({topic.partitions} partitions)")
        create_topic(state.bootstrap_servers, topic.name, partitions=topic.partitions, exist_ok=True)

        seed = 1000 + run_number
        say(f"producing {count} seeded sales events (seed {seed}, murmur2 partitioning, acks=all)")
        report = produce_all(
            make_producer(state.bootstrap_servers, settings.kafka.producer),
            topic.name,
            (encode_sale(s) for s in generate_sales(count, seed=seed)),
        )
        console.print(
            f"      acknowledged {report.acknowledged} of {report.sent}, failed {len(report.failed)}"
        )

        say("starting Spark (local[*]) with the Kafka and Delta connectors")
        # Imported here: pyspark is slow to import and only this step needs it.
        from pipelines.flows import sales_to_delta
        from pipelines.spark import session_for_job

        spark = session_for_job("pipelines-demo", settings, environ)
        delta_path = data_dir / "sales"
        say("running the spine (jobs/sales_to_delta.py): sales topic -> parse -> Delta, available-now")
        summary = sales_to_delta(
            spark,
            bootstrap_servers=state.bootstrap_servers,
            topic=topic.name,
            delta_path=delta_path,
            checkpoint=checkpoint_dir / "sales_to_delta",
            trigger="available-now",
            max_offsets_per_trigger=settings.spark.max_offsets_per_trigger,
        ).as_dict()
        runs_file.parent.mkdir(parents=True, exist_ok=True)
        runs_file.write_text(str(run_number))
        _print_table(spark, str(delta_path), summary, seed)
        spark.stop()
    finally:
        if started_here:
            console.print("      stopping the broker this run started")
            broker.stop()
    console.print(f"[green]done[/] in {time.monotonic() - started_at:.0f} s")
    return 0


def _print_table(spark: object, delta_path: str, summary: Mapping[str, int], seed: int) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    assert isinstance(spark, SparkSession)
    table = spark.read.format("delta").load(delta_path)
    by_category = (
        table.filter(F.col("sale_id").startswith(f"sale-{seed}-"))
        .groupBy("category")
        .agg(
            F.count("*").alias("sales"),
            F.sum("amount").alias("revenue"),
            F.min("event_time").alias("first"),
            F.max("event_time").alias("last"),
        )
        .orderBy(F.desc("revenue"))
        .collect()
    )
    out = Console()
    t = Table(title=f"This run's sales in the Delta table {delta_path}")
    for col in ("category", "sales", "revenue (EUR)", "first event (UTC)", "last event (UTC)"):
        t.add_column(col, justify="right" if col in ("sales", "revenue (EUR)") else "left")
    for r in by_category:
        t.add_row(
            r["category"],
            str(r["sales"]),
            f"{r['revenue']:,.2f}",
            r["first"].strftime("%H:%M:%S.%f")[:-3],
            r["last"].strftime("%H:%M:%S.%f")[:-3],
        )
    out.print(t)
    out.print(
        f"records read {summary['read']}, rows written {summary['written']}, "
        f"rejected as malformed {summary['rejected']}; the table holds {table.count()} rows in all"
    )


def main(argv: list[str] | None = None) -> int:
    import os

    from pipelines.config import load_settings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=5000, help="sales events to produce (default 5000)")
    p.add_argument("--profile", default="local")
    a = p.parse_args(argv)
    return run_demo(load_settings(a.profile, os.environ), os.environ, a.count)
