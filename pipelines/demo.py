"""`make run`: the whole stack on one machine, end to end, then what it computed.

1. starts the local Kafka broker (unless one already runs) and creates `sales` and `sales.dlq`;
2. produces seeded sales with a few late and malformed events, and a closing heartbeat;
3. runs the revenue job (Spark's kafka source -> parse -> watermarked 1-minute windows -> Delta,
   bad records -> `sales.dlq`) until every window of the run is final;
4. prints revenue per category per minute, the reconciliation (read = aggregated + late +
   dead-lettered + heartbeats) and the dead-letter reasons with their counts.

It stops what it started, also on Ctrl-C, and is safe to run again: each run continues the event
time where the previous one ended (kept in `.pipelines/demo-state.json`), so the job's checkpoint
and table simply grow.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.config import Settings
from pipelines.generators.common import DEFAULT_START
from pipelines.generators.events import generate_events
from pipelines.generators.heartbeat import send_heartbeats
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.kafka.admin import create_topic, end_offsets, read_range
from pipelines.kafka.producer import make_producer
from pipelines.local.broker import LocalBroker

console = Console(stderr=True, soft_wrap=True)
STEPS = 6


def _parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def run_demo(settings: Settings, environ: Mapping[str, str], count: int = 5000) -> int:
    data_dir = settings.resolve_path(settings.paths.data_dir)
    checkpoint_dir = settings.resolve_path(settings.paths.checkpoint_dir)
    state_file = data_dir.parent / "demo-state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
    run = int(state.get("run", 0)) + 1
    start = _parse_ts(state["next_start"]) if "next_start" in state else DEFAULT_START
    topic = settings.topics["sales"]
    dlq = f"{topic.name}.dlq"
    broker = LocalBroker(
        settings.resolve_path(settings.broker.dir),
        settings.resolve_path(settings.paths.jars_dir),
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
    )
    began = time.monotonic()
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"[bold cyan][{step}/{STEPS}][/] {text}  [dim]({time.monotonic() - began:.0f} s)[/]")

    say(f"starting the local Kafka broker in {broker.directory}")
    broker_state, started_here = broker.start()
    servers = broker_state.bootstrap_servers
    try:
        console.print(f"      broker at {servers}" + ("" if started_here else " (already running)"))
        say(f"creating topics {topic.name!r} ({topic.partitions} partitions) and {dlq!r}")
        create_topic(servers, topic.name, partitions=topic.partitions, exist_ok=True)
        create_topic(servers, dlq, partitions=1, exist_ok=True)
        dlq_start = end_offsets(servers, dlq)

        seed = 1000 + run
        ledger = data_dir.parent / f"demo-run-{run}.jsonl"
        ledger.parent.mkdir(parents=True, exist_ok=True)
        say(f"producing {count:,} sales from {start:%H:%M:%S} UTC (seed {seed}; 2% late, 2% malformed)")
        producer = make_producer(servers, settings.kafka.producer)
        events = generate_events(
            "sales", count, seed=seed, late_fraction=0.02, malformed_fraction=0.02, late_by_s=300, start=start
        )
        report = publish_events(producer, topic.name, events, ledger=ledger)
        entries = read_ledger(ledger)
        latest = max(_parse_ts(json.loads(e.value)["timestamp"]) for e in entries if e.kind == "valid")
        send_heartbeats(producer, topic.name, latest + timedelta(minutes=2))
        console.print(f"      {report.summary()}; then a heartbeat per partition")

        say("starting Spark (local[*]) with the Kafka and Delta connectors")
        # Imported here: pyspark is slow to import and only this part needs it.
        from pipelines.flows import start_revenue_per_minute
        from pipelines.monitor.progress import ProgressRecorder
        from pipelines.spark import session_for_job

        spark = session_for_job("pipelines-demo", settings, environ)
        # Every batch's progress, where `pipelines status` finds it.
        spark.streams.addListener(ProgressRecorder(checkpoint_dir / "revenue_per_minute.progress.jsonl"))
        table_path = data_dir / "revenue_per_minute"
        say("running jobs/revenue_per_minute.py until every window of this run is final")
        job = start_revenue_per_minute(
            spark, bootstrap_servers=servers, topic=topic.name,
            checkpoint=checkpoint_dir / "revenue_per_minute", delta_path=table_path, dlq_topic=dlq,
            trigger="processing-time=0 seconds",
            max_offsets_per_trigger=500,  # several batches, so the watermark has something to drop
        )  # fmt: skip
        last_window = latest.replace(second=0, microsecond=0)
        try:
            job.process_all_available()
            _wait_for_window(spark, table_path, last_window, job.main)
        finally:
            job.stop()
        summary = job.summary()
        state_file.write_text(json.dumps({"run": run, "next_start": (latest + timedelta(minutes=5)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")}))  # fmt: skip
        _print_revenue(spark, table_path, start)
        spark.stop()
        letters = read_range(servers, dlq, dlq_start, end_offsets(servers, dlq))
        _print_accounting(summary.as_dict(), letters, Counter(e.kind for e in entries))
    finally:
        if started_here:
            console.print("      stopping the broker this run started")
            broker.stop()
    console.print(f"[green]done[/] in {time.monotonic() - began:.0f} s")
    return 0


def _wait_for_window(
    spark: Any, table_path: Path, window_start: datetime, query: Any, timeout_s: float = 180
) -> None:
    """Wait until the run's last window is in the table (the heartbeat's watermark closes it)."""
    from pyspark.sql import functions as F

    deadline = time.monotonic() + timeout_s
    naive = window_start.replace(tzinfo=None)
    while time.monotonic() < deadline:
        if (table_path / "_delta_log").is_dir():
            newest = spark.read.format("delta").load(str(table_path)).agg(F.max("window_start")).first()[0]
            if newest is not None and newest >= naive:
                return
        if query.awaitTermination(0.5):
            return
    raise TimeoutError(f"the window of {window_start:%H:%M} did not reach the table within {timeout_s} s")


def _out() -> Console:
    """stdout; as wide as the terminal, or wide enough for the tables when piped to a file."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def _print_revenue(spark: Any, table_path: Path, since: datetime) -> None:
    from pyspark.sql import functions as F

    rows = (
        spark.read.format("delta").load(str(table_path))
        .filter(F.col("window_start") >= F.lit(since.replace(tzinfo=None, second=0, microsecond=0)))
        .orderBy("window_start", "category").collect()
    )  # fmt: skip
    categories = sorted({r["category"] for r in rows})
    by_minute: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        by_minute.setdefault(r["window_start"], {})[r["category"]] = r["revenue"]
    table = Table(title="Revenue per category per minute (EUR), from the Delta table revenue_per_minute")
    table.add_column("minute (UTC)")
    for c in categories:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right", style="bold")
    for minute, revenue in sorted(by_minute.items()):
        cells = [f"{revenue[c]:,.2f}" if c in revenue else "" for c in categories]
        table.add_row(f"{minute:%H:%M}", *cells, f"{sum(revenue.values()):,.2f}")
    _out().print(table)


def _print_accounting(summary: Mapping[str, Any], letters: list[Any], kinds: Counter[str]) -> None:
    out = _out()
    ok = "[green]reconciles[/]" if summary["reconciles"] else "[red]does NOT reconcile[/]"
    out.print(
        f"read {summary['read']:,} = aggregated {summary['aggregated']:,} + late {summary['late']:,} "
        f"+ dead-lettered {summary['dead_lettered']:,} + heartbeats {summary['heartbeats']:,} "
        f"+ still open {summary['still_open']:,}: {ok}"
    )
    out.print(
        f"the generator's ledger: {kinds['valid']:,} valid, {kinds['late']:,} late, "
        f"{kinds['malformed']:,} malformed"
    )
    reasons = Counter(dict(m.headers() or [])["error.reason"].decode() for m in letters)
    table = Table(title=f"Dead letters in sales.dlq this run ({sum(reasons.values())})")
    table.add_column("error.reason")
    table.add_column("count", justify="right")
    for reason, n in reasons.most_common():
        table.add_row(reason, str(n))
    out.print(table)
