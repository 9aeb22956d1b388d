"""`make run`: the whole stack on one machine, end to end, then what it computed.

1. starts the local Kafka broker (unless one already runs) and creates the topics; in Avro
   (`--format avro`, `make run FORMAT=avro`) also the local schema registry, with the contract's
   schemas registered under `<topic>-value`;
2. produces seeded sales (a few late and malformed, then a closing heartbeat) and orders, in JSON or
   in Avro (the Confluent wire format, with the Avro malformed classes);
3. runs three Spark jobs concurrently in one session: revenue per category per minute (into
   Delta, bad records to `sales.dlq`), orders -> shipments (bad orders to `orders.dlq`) and the
   per-customer order counts (a compacted topic and a Delta table), until every window is final;
4. prints revenue per category per minute, the reconciliation per topic (read = written + late +
   dead-lettered), the dead-letter reasons with their counts, shipments and top customers;
5. writes a chart (PNG) and a markdown report to `.pipelines/report/`.

It stops what it started (the broker, the registry), also on Ctrl-C, and is safe to run again:
each run continues the event time where the previous one ended (kept in
`.pipelines/demo-state.json`), so the job's checkpoint and table simply grow. A run in the other
format than the previous one's continues the same topics, checkpoints and tables; it is refused
while the previous run was interrupted, as its jobs would read the events it left in one format
with the other's parser.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from rich.console import Console
from rich.table import Table

from pipelines.config import Settings, TopicSettings
from pipelines.contracts import (
    CUSTOMER_COUNTS_TOPIC,
    HEADER_REASON,
    ORDERS_TOPIC,
    REVENUE_TOPIC,
    SALES_TOPIC,
    SHIPMENTS_TOPIC,
    dead_letter_topic,
)
from pipelines.errors import PipelinesError
from pipelines.generators.common import DEFAULT_START, format_timestamp
from pipelines.generators.events import generate_events
from pipelines.generators.heartbeat import send_heartbeats
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.kafka.admin import count_committed, create_topic, end_offsets, read_range
from pipelines.kafka.producer import make_producer
from pipelines.local.broker import LocalBroker
from pipelines.registry.local import LocalRegistry, local_registry
from pipelines.spark_interrupt import StopQueriesOnInterrupt

if TYPE_CHECKING:
    from pipelines.generators.avro import EventWriters
    from pipelines.queries import QueryGroup

console = Console(stderr=True, soft_wrap=True)
STEPS = 6
"""Steps of a run in JSON; in Avro one more: the schema registry."""
FORMATS = ("json", "avro")
RUNNING = "processing-time=0 seconds"
"""The demo's jobs run micro-batches back to back until every window of the run is final."""


DEMO_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m")
"""The demo's Spark driver compiles with the JIT's first tier only. A run of `make run` lasts under
a minute, too short for the optimising compiler (C2) to pay back the CPU it spends compiling on
two cores: measured, 72 s -> 59 s for the whole run. C1 alone reserves only 48 MB for compiled
code, which the driver of three jobs fills ("CodeCache is full. Compiler has been disabled.": the
rest of the run interpreted, 80 s), hence the tiered default's 240 MB. Long-running jobs keep the
JVM's default."""


def demo_batch_size(count: int, heartbeats: int) -> int:
    """Records per micro-batch of the demo's revenue job: the run's sales and its `heartbeats` (one
    per partition, sent last) in three batches of at least 500, so later batches bring late events
    the watermark drops, and the last one carries the heartbeats (no batch of its own for them).
    Every micro-batch of the concurrently running queries costs seconds on two cores: 500 per batch
    made `make run` spend ~75 s in Spark for 5,000 sales, three batches ~45 s."""
    return max(500, -(-(count + heartbeats) // 3))


ORDERS_DLQ = dead_letter_topic(ORDERS_TOPIC)


def _parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _demo_setup(
    settings: Settings, value_format: str = "json"
) -> tuple[Path, Path, int, datetime, TopicSettings, str, LocalBroker]:
    """What `run_demo` and `run_live_demo` start from: the data folder, the state file (runs so far,
    where event time continues), this run's number and first event time from it, the sales topic's
    settings and its dead-letter topic, and the local broker (not started).

    PipelinesError when the previous run wrote its events in the other format and was interrupted:
    its events not read yet would be read with this run's parser and dead-lettered."""
    if value_format not in FORMATS:
        raise PipelinesError(f"--format must be json or avro, not {value_format!r} (also $PIPELINES_FORMAT)")
    data_dir = settings.resolve_path(settings.paths.data_dir)
    state_file = data_dir.parent / "demo-state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
    previous = state.get("format", "json")
    if previous != value_format and state.get("finished") is False:
        raise PipelinesError(
            f"the previous run (run {state.get('run')}) wrote its events in {previous} and was interrupted: "
            f"its jobs may not have read them all, and this run would read them as {value_format} and "
            f"dead-letter them. Finish it first with `pipelines demo --format {previous}`, or start afresh "
            "with `make clean`"
        )
    run = int(state.get("run", 0)) + 1
    start = _parse_ts(state["next_start"]) if "next_start" in state else DEFAULT_START
    topic = settings.topics[SALES_TOPIC]
    broker = LocalBroker(
        settings.resolve_path(settings.broker.dir),
        settings.resolve_path(settings.paths.jars_dir),
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
    )
    return data_dir, state_file, run, start, topic, dead_letter_topic(topic.name), broker


def run_demo(
    settings: Settings,
    environ: Mapping[str, str],
    count: int = 5000,
    *,
    verbose: bool = False,
    value_format: str = "json",
) -> int:
    """`make run`; `verbose` also shows Spark's INFO log on the terminal (it always goes to the log
    file). `value_format="avro"`: the events in Avro, with the local schema registry (started here
    unless it runs already, and then stopped at the end) and the contract's schemas registered."""
    data_dir, state_file, run, start, topic, dlq, broker = _demo_setup(settings, value_format)
    avro = value_format == "avro"
    steps = STEPS + (1 if avro else 0)
    began = time.monotonic()
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"[bold cyan][{step}/{steps}][/] {text}  [dim]({time.monotonic() - began:.0f} s)[/]")

    say(f"starting the local Kafka broker in {broker.directory}")
    was_running = broker.running() is not None
    try:
        broker_state, started_here = broker.start()
    except KeyboardInterrupt:
        if not was_running:  # interrupted while the broker it launched was starting
            broker.stop()
        console.print("[yellow]interrupted[/] while the broker was starting; nothing else ran")
        raise
    servers = broker_state.bootstrap_servers
    registry: LocalRegistry | None = None
    registry_started = False
    try:
        console.print(f"      broker at {servers}" + ("" if started_here else " (already running)"))
        registry_url: str | None = None
        writers: dict[str, EventWriters] = {}
        if avro:
            registry = local_registry(settings, environ)
            say(f"starting the local schema registry in {registry.directory} and registering the schemas")
            registry_was_running = registry.running() is not None
            try:
                registry_state, registry_started = registry.start()
            except KeyboardInterrupt:
                if not registry_was_running:  # interrupted while the registry it launched was starting
                    registry.stop()
                raise
            registry_url = registry_state.ccompat_url
            console.print(
                f"      registry at {registry_url}" + ("" if registry_started else " (already running)"),
                highlight=False,
            )
            writers = _register_schemas(registry_url, topic.name)
        names = (topic.name, ORDERS_TOPIC, SHIPMENTS_TOPIC, CUSTOMER_COUNTS_TOPIC)
        say(f"creating topics {', '.join(names)} and the dead-letter topics")
        create_topic(servers, topic.name, partitions=topic.partitions, exist_ok=True)
        for name, partitions, conf in [
            (dlq, 1, {}),
            (ORDERS_TOPIC, 3, {}),
            (ORDERS_DLQ, 1, {}),
            (SHIPMENTS_TOPIC, 3, {}),
            (CUSTOMER_COUNTS_TOPIC, 3, {"cleanup.policy": "compact"}),
        ]:
            create_topic(servers, name, partitions=partitions, config=conf, exist_ok=True)
        dlq_start = {t: end_offsets(servers, t) for t in (dlq, ORDERS_DLQ)}
        shipments_start = end_offsets(servers, SHIPMENTS_TOPIC)

        seed = 1000 + run
        ledger = data_dir.parent / f"demo-run-{run}.jsonl"
        ledger.parent.mkdir(parents=True, exist_ok=True)
        in_avro = f" in Avro (schema id {writers['sales'].schema_id})" if avro else ""
        faults = "2% late, 2% malformed"
        say(f"producing {count:,} sales{in_avro} from {start:%H:%M:%S} UTC (seed {seed}; {faults})")
        producer = make_producer(servers, settings.kafka.producer)
        events = list(
            generate_events(
                "sales",
                count,
                seed=seed,
                late_fraction=0.02,
                malformed_fraction=0.02,
                late_by_s=300,
                start=start,
                avro=writers["sales"].writers if avro else None,
            )
        )
        latest = max(e.event_time for e in events if e.kind == "valid" and e.event_time is not None)
        # Claimed before the first event is sent: a run after this one, also after Ctrl-C, continues
        # event time after these events instead of producing the same events again.
        next_start = latest + timedelta(minutes=5)
        _save_state(state_file, run, next_start, value_format=value_format, finished=False)
        report = publish_events(producer, topic.name, events, ledger=ledger)
        entries = read_ledger(ledger)
        beat_at = latest + timedelta(minutes=2)
        beat_record: dict[str, object] = {"heartbeat": True, "timestamp": format_timestamp(beat_at)}
        beat = writers["sales"].encode(beat_record) if avro else None
        send_heartbeats(producer, topic.name, beat_at, value=beat)
        console.print(f"      sales: {report.summary()}; then a heartbeat per partition")
        orders_ledger = data_dir.parent / f"demo-run-{run}-orders.jsonl"
        orders_events = generate_events(
            "orders",
            count // 2,
            seed=seed,
            malformed_fraction=0.01,
            start=start,
            avro=writers["orders"].writers if avro else None,
        )
        orders_report = publish_events(producer, ORDERS_TOPIC, orders_events, ledger=orders_ledger)
        order_kinds: Counter[str] = Counter(e.kind for e in read_ledger(orders_ledger))
        console.print(f"      orders: {orders_report.summary()}")

        say("starting Spark (local[*]) with the Kafka and Delta connectors")
        try:
            ran = _run_spark_jobs(
                settings,
                environ,
                servers=servers,
                topic=topic.name,
                dlq=dlq,
                start=start,
                last_window=latest.replace(second=0, microsecond=0),
                batch_size=demo_batch_size(count, topic.partitions),
                on_running=say,
                verbose=verbose,
                value_format=value_format,
                registry_url=registry_url,
            )
        except (PySparkException, Py4JJavaError) as exc:
            from pipelines.spark import job_log_dir, spark_failure

            raise PipelinesError(spark_failure("Spark", exc, job_log_dir(settings) / "spark.log")) from None
        # Every event of this run was read: a run in the other format may follow.
        _save_state(state_file, run, next_start, value_format=value_format, finished=True)
        summary, shipped, counted, top, revenue = ran.summary, ran.shipped, ran.counted, ran.top, ran.revenue
        _print_revenue(revenue)
        letters = {t: read_range(servers, t, dlq_start[t], end_offsets(servers, t)) for t in dlq_start}
        # Records, not offsets: the exactly-once sink's commit markers take offsets too.
        new_shipments = count_committed(
            servers, SHIPMENTS_TOPIC, shipments_start, end_offsets(servers, SHIPMENTS_TOPIC)
        )
        lines = _reconciliation(
            summary.as_dict(),
            Counter(e.kind for e in entries),
            shipped.as_dict(),
            order_kinds,
            counted,
            new_shipments,
        )
        reasons = {
            t: dict(Counter(dict(m.headers() or [])[HEADER_REASON].decode() for m in msgs))
            for t, msgs in letters.items()
        }
        top_customers = [(r["customer_id"], r["order_count"], r["total_amount"]) for r in top]
        _print_accounting(lines, reasons, new_shipments, top_customers)

        say("writing the chart and the report")
        from pipelines.report import markdown_report, revenue_chart

        report_dir = data_dir.parent / "report"
        chart = revenue_chart(revenue, report_dir / "revenue_per_minute.png")
        md = markdown_report(
            report_dir / "report.md",
            revenue=revenue,
            reconciliation=lines,
            dead_letters=reasons,
            shipments=new_shipments,
            top_customers=top_customers,
            chart=chart,
        )
        console.print(f"      {chart}\n      {md}")
    except KeyboardInterrupt:
        # Typer ends the command with exit status 130 without a word; say what happened.
        console.print("[yellow]interrupted[/]: the Spark queries are stopped; run again to continue")
        raise
    finally:
        if registry is not None and registry_started:
            console.print("      stopping the schema registry this run started")
            registry.stop()
        if started_here:
            console.print("      stopping the broker this run started")
            broker.stop()
    console.print(f"[green]done[/] in {time.monotonic() - began:.0f} s")
    console.print(
        "      see it on the dashboard: [bold]pipelines broker start && pipelines dashboard[/], then open "
        "http://127.0.0.1:8501 (`pipelines demo --live` keeps it moving)",
        highlight=False,
    )
    return 0


def _register_schemas(registry_url: str, sales_topic: str) -> dict[str, EventWriters]:
    """Register the contract's schemas under `<topic>-value` (BACKWARD), as `pipelines schemas
    register` does, and say so; the Avro writers of the sales and the orders."""
    from pipelines.generators.avro import avro_writers
    from pipelines.registry.schemas import SchemaStore, contract_schema

    store = SchemaStore(registry_url)
    contracts = (("sales", sales_topic), ("orders", ORDERS_TOPIC), ("shipments", SHIPMENTS_TOPIC))
    for event_type, name in contracts:
        version = store.register(name, contract_schema(event_type))
        console.print(
            f"      {version.subject}: version {version.version}, id {version.schema_id} (BACKWARD)",
            highlight=False,
        )
    return {
        "sales": avro_writers(store, "sales", sales_topic),
        "orders": avro_writers(store, "orders", ORDERS_TOPIC),
    }


@dataclass(frozen=True)
class _SparkResults:
    summary: Any  # RevenueRunSummary
    shipped: Any  # ShipmentsRunSummary
    counted: int
    top: list[Any]
    revenue: dict[datetime, dict[str, Any]]


def _run_spark_jobs(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    servers: str,
    topic: str,
    dlq: str,
    start: datetime,
    last_window: datetime,
    batch_size: int,
    on_running: Callable[[str], None],
    verbose: bool = False,
    value_format: str = "json",
    registry_url: str | None = None,
) -> _SparkResults:
    """Runs the three jobs concurrently in one session until every window of the run is final, and
    reads back what they wrote. Ctrl-C stops the queries cleanly and ends in KeyboardInterrupt."""
    # Imported here: pyspark is slow to import and only this part needs it.
    from pipelines.jobs.customer_order_counts import read_customer_state, start_customer_order_counts
    from pipelines.jobs.orders_to_shipments import run_summary, start_orders_to_shipments
    from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
    from pipelines.monitor.progress import ProgressRecorder
    from pipelines.spark import session_for_job

    data_dir = settings.resolve_path(settings.paths.data_dir)
    checkpoint_dir = settings.resolve_path(settings.paths.checkpoint_dir)
    table_path = data_dir / "revenue_per_minute"
    counts_path = data_dir / "customer_order_counts"
    spark = session_for_job(
        "pipelines-demo", settings, environ, verbose=verbose, java_options=DEMO_JAVA_OPTIONS
    )
    try:
        with StopQueriesOnInterrupt(spark, console) as interrupt:
            # Every batch's progress, where `pipelines status` finds it.
            spark.streams.addListener(ProgressRecorder(checkpoint_dir / "revenue_per_minute.progress.jsonl"))
            on_running(
                "running revenue_per_minute, orders_to_shipments and customer_order_counts concurrently"
            )
            counts_before = _sum_column(spark, counts_path, "order_count")
            ticker = _ProgressTicker(spark)
            job = start_revenue_per_minute(
                spark,
                bootstrap_servers=servers,
                topic=topic,
                checkpoint=checkpoint_dir / "revenue_per_minute",
                delta_path=table_path,
                dlq_topic=dlq,
                trigger=RUNNING,
                max_offsets_per_trigger=batch_size,
                value_format=value_format,
                registry_url=registry_url,
            )
            groups: list[QueryGroup] = [job]
            try:
                interrupt.check()  # a Ctrl-C while a job was starting: do not start the next ones
                shipments = start_orders_to_shipments(
                    spark,
                    bootstrap_servers=servers,
                    source_topic=ORDERS_TOPIC,
                    sink_topic=SHIPMENTS_TOPIC,
                    checkpoint=_shipments_checkpoint(checkpoint_dir),
                    trigger=RUNNING,
                    value_format=value_format,
                    registry_url=registry_url,
                )
                groups.append(shipments)
                interrupt.check()
                counts = start_customer_order_counts(
                    spark,
                    bootstrap_servers=servers,
                    source_topic=ORDERS_TOPIC,
                    checkpoint=checkpoint_dir / "customer_order_counts",
                    sink="both",
                    delta_path=counts_path,
                    trigger=RUNNING,
                    dead_letters=False,  # the shipments job owns orders.dlq
                    value_format=value_format,
                    registry_url=registry_url,
                )
                groups.append(counts)
                interrupt.check()
                ticker.start()
                for group in groups:
                    group.process_all_available()
                _wait_for_window(spark, table_path, last_window, job.main)
            finally:
                ticker.stop()
                for group in groups:
                    group.stop()
            interrupt.check()
            top = (
                read_customer_state(spark, checkpoint_dir / "customer_order_counts" / "kafka")
                .orderBy("order_count", ascending=False)
                .limit(5)
                .collect()
            )
            return _SparkResults(
                summary=job.summary(),
                shipped=run_summary(shipments),
                counted=_sum_column(spark, counts_path, "order_count") - counts_before,
                top=top,
                revenue=_revenue_by_minute(spark, table_path, start),
            )
    finally:
        spark.stop()


class _ProgressTicker:
    """Every `every_s` seconds while the jobs run, one line: each query's latest batch and, for
    the revenue query, its watermark. Reads `lastProgress` from a thread of its own."""

    def __init__(self, spark: Any, every_s: float = 10.0) -> None:
        self._spark, self._every_s = spark, every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(self._every_s):
            parts = []
            try:
                for q in sorted(self._spark.streams.active, key=lambda q: q.name or ""):
                    progress = q.lastProgress or {}
                    if "batchId" not in progress:
                        continue
                    part = f"{q.name} batch {progress['batchId']}"
                    watermark = progress.get("eventTime", {}).get("watermark", "")
                    if watermark and not watermark.startswith("1970"):
                        part += f" (watermark {watermark[11:19]})"
                    parts.append(part)
            except Exception:  # the session is stopping: nothing more to say
                return
            if parts and not self._done.is_set():
                console.print("      … " + ", ".join(parts), highlight=False)


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


def _sum_column(spark: Any, path: Path, column: str) -> int:
    if not (path / "_delta_log").is_dir():
        return 0
    from pyspark.sql import functions as F

    return int(spark.read.format("delta").load(str(path)).agg(F.sum(column)).first()[0] or 0)


def _revenue_by_minute(spark: Any, table_path: Path, since: datetime) -> dict[datetime, dict[str, Any]]:
    from pyspark.sql import functions as F

    rows = (
        spark.read.format("delta")
        .load(str(table_path))
        .filter(F.col("window_start") >= F.lit(since.replace(tzinfo=None, second=0, microsecond=0)))
        .collect()
    )
    by_minute: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        by_minute.setdefault(r["window_start"], {})[r["category"]] = r["revenue"]
    return by_minute


def _print_revenue(by_minute: dict[datetime, dict[str, Any]]) -> None:
    categories = sorted({c for per in by_minute.values() for c in per})
    table = Table(title="Revenue per category per minute (EUR), from the Delta table revenue_per_minute")
    table.add_column("minute (UTC)")
    for c in categories:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right", style="bold")
    for minute, revenue in sorted(by_minute.items()):
        cells = [f"{revenue[c]:,.2f}" if c in revenue else "" for c in categories]
        table.add_row(f"{minute:%H:%M}", *cells, f"{sum(revenue.values()):,.2f}")
    _out().print(table)


def _reconciliation(
    sales: Mapping[str, Any],
    sale_kinds: Counter[str],
    shipped: Mapping[str, int],
    order_kinds: Counter[str],
    counted: int,
    new_shipments: int,
) -> list[str]:
    ok = "reconciles" if sales["reconciles"] else "DOES NOT RECONCILE"
    orders_ok = shipped["read"] == shipped["shipped"] + shipped["dead_lettered"]
    return [
        f"sales: read {sales['read']:,} = aggregated {sales['aggregated']:,} + late {sales['late']:,} + "
        f"dead-lettered {sales['dead_lettered']:,} + heartbeats {sales['heartbeats']:,} + still open "
        f"{sales['still_open']:,}: {ok} (ledger: {sale_kinds['valid']:,} valid, {sale_kinds['late']:,} late, "
        f"{sale_kinds['malformed']:,} malformed)",
        f"orders -> shipments: read {shipped['read']:,} = shipped {shipped['shipped']:,} + dead-lettered "
        f"{shipped['dead_lettered']:,}: {'reconciles' if orders_ok else 'DOES NOT RECONCILE'}; "
        f"{new_shipments:,} records on `shipments` "
        f"(ledger: {order_kinds['valid'] + order_kinds['late']:,} valid, "
        f"{order_kinds['malformed']:,} malformed)",
        f"orders -> customer counts: {counted:,} orders added to the per-customer table",
    ]


def _print_accounting(
    lines: list[str],
    reasons: Mapping[str, Mapping[str, int]],
    shipments: int,
    top_customers: list[tuple[str, int, Any]],
) -> None:
    out = _out()
    for line in lines:
        out.print(line, highlight=False)
    for topic, counts in reasons.items():
        table = Table(title=f"Dead letters in {topic} this run ({sum(counts.values())})")
        table.add_column(HEADER_REASON)
        table.add_column("count", justify="right")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            table.add_row(reason, str(n))
        out.print(table)
    table = Table(title="Top customers (order counts from the job's state store)")
    for col in ("customer", "orders", "amount (EUR)"):
        table.add_column(col, justify="left" if col == "customer" else "right")
    for customer, n, amount in top_customers:
        table.add_row(customer, str(n), f"{amount:,.2f}")
    out.print(table)
    out.print(f"shipments produced this run: {shipments:,}")


# -- `pipelines demo --live` -----------------------------------------------------------------------
LIVE_TRIGGER = "processing-time=5 seconds"
"""The live demo's jobs run a micro-batch every 5 s, as a production job would, until stopped."""
DAY_S = 86_400


class _LiveGenerator:
    """Sends seeded events of `event_type` at `rate` per second from a thread of its own until
    `stop()`, with the ledger of what the broker acknowledged; `latest` is the latest valid event
    time sent so far."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        event_type: str,
        *,
        rate: float,
        count: int,
        seed: int,
        start: datetime,
        ledger: Path,
        late_fraction: float = 0.0,
        malformed_fraction: float = 0.0,
    ) -> None:
        self.latest = start
        self.report: Any = None
        self._stopped = threading.Event()
        events = generate_events(
            event_type,
            count,
            seed=seed,
            late_fraction=late_fraction,
            malformed_fraction=malformed_fraction,
            late_by_s=300,
            start=start,
        )

        def sent() -> Any:
            for event in events:
                if self._stopped.is_set():
                    return
                if event.kind == "valid":
                    self.latest = max(self.latest, _parse_ts(json.loads(event.value)["timestamp"]))
                yield event

        def run() -> None:
            self.report = publish_events(producer, topic, sent(), ledger=ledger, rate=rate)

        self._thread = threading.Thread(target=run, name=f"live-{event_type}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=60)


def run_live_demo(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    rate: float = 50.0,
    duration_s: float | None = None,
    verbose: bool = False,
) -> int:
    """`pipelines demo --live`: the broker, generators sending `rate` sales and `rate / 2` orders
    per second (2% late, 2% and 1% malformed), and the revenue and shipments jobs on processing-time
    triggers, until `duration_s` (then a closing heartbeat, and the last window waited for) or
    Ctrl-C. `pipelines dashboard` in another terminal shows it moving."""
    data_dir, state_file, run, start, topic, dlq, broker = _demo_setup(settings)
    was_running = broker.running() is not None
    console.print(f"[bold cyan]live[/] starting the local Kafka broker in {broker.directory}")
    try:
        broker_state, started_here = broker.start()
    except KeyboardInterrupt:
        if not was_running:
            broker.stop()
        raise
    servers = broker_state.bootstrap_servers
    generators: list[_LiveGenerator] = []
    sales: _LiveGenerator | None = None
    finished = False
    try:
        create_topic(servers, topic.name, partitions=topic.partitions, exist_ok=True)
        for name, partitions in [
            (dlq, 1),
            (ORDERS_TOPIC, 3),
            (ORDERS_DLQ, 1),
            (SHIPMENTS_TOPIC, 3),
            (REVENUE_TOPIC, 3),
        ]:
            create_topic(servers, name, partitions=partitions, exist_ok=True)
        from pipelines.jobs.orders_to_shipments import start_orders_to_shipments
        from pipelines.jobs.revenue_per_minute import AT_LEAST_ONCE, start_revenue_per_minute
        from pipelines.monitor.progress import ProgressRecorder
        from pipelines.spark import session_for_job

        checkpoint_dir = settings.resolve_path(settings.paths.checkpoint_dir)
        table_path = data_dir / "revenue_per_minute"
        console.print(
            "[bold cyan]live[/] starting Spark and the revenue and shipments jobs (a batch every 5 s)"
        )
        spark = session_for_job("pipelines-demo-live", settings, environ, verbose=verbose)
        try:
            with StopQueriesOnInterrupt(spark, console) as interrupt:
                spark.streams.addListener(
                    ProgressRecorder(checkpoint_dir / "revenue_per_minute.progress.jsonl")
                )
                job = start_revenue_per_minute(
                    spark,
                    bootstrap_servers=servers,
                    topic=topic.name,
                    checkpoint=checkpoint_dir / "revenue_per_minute",
                    delta_path=table_path,
                    sink="both",  # final windows to Delta, every update of an open one to Kafka
                    # The dashboard keeps the latest update per window: a replayed one changes nothing.
                    guarantee=AT_LEAST_ONCE,
                    dlq_topic=dlq,
                    trigger=LIVE_TRIGGER,
                )
                groups: list[QueryGroup] = [job]
                try:
                    interrupt.check()
                    groups.append(
                        start_orders_to_shipments(
                            spark,
                            bootstrap_servers=servers,
                            source_topic=ORDERS_TOPIC,
                            sink_topic=SHIPMENTS_TOPIC,
                            checkpoint=_shipments_checkpoint(checkpoint_dir),
                            trigger=LIVE_TRIGGER,
                        )
                    )
                    interrupt.check()
                    seed = 1000 + run
                    count = int(rate * (duration_s or DAY_S)) + 1
                    # Claimed before the first event is sent (a run after this one starts after a
                    # day of event time at this rate); rewritten with the real end when it stops.
                    ahead = timedelta(milliseconds=100 * count) + timedelta(minutes=5)
                    _save_state(state_file, run, start + ahead, finished=False)
                    # A producer per generator thread: librdkafka crashed (segfault in rdk:main) with
                    # one producer flushed from two threads at once.
                    sales = _LiveGenerator(
                        make_producer(servers, settings.kafka.producer),
                        topic.name,
                        "sales",
                        rate=rate,
                        count=count,
                        seed=seed,
                        start=start,
                        ledger=data_dir.parent / f"demo-run-{run}.jsonl",
                        late_fraction=0.02,
                        malformed_fraction=0.02,
                    )
                    generators.append(sales)
                    generators.append(
                        _LiveGenerator(
                            make_producer(servers, settings.kafka.producer),
                            ORDERS_TOPIC,
                            "orders",
                            rate=rate / 2,
                            count=count // 2 + 1,
                            seed=seed,
                            start=start,
                            ledger=data_dir.parent / f"demo-run-{run}-orders.jsonl",
                            malformed_fraction=0.01,
                        )
                    )
                    until = (
                        "until Ctrl-C" if duration_s is None else f"for {duration_s:g} s (or until Ctrl-C)"
                    )
                    console.print(
                        f"[bold cyan]live[/] sending {rate:g} sales/s and {rate / 2:g} orders/s from "
                        f"{start:%H:%M:%S} UTC event time {until}.\n"
                        "      Watch it: [bold]pipelines dashboard[/] in another terminal, then open "
                        "http://127.0.0.1:8501 (Prometheus metrics: http://127.0.0.1:9464/metrics)",
                        highlight=False,
                    )
                    _run_until(groups, duration_s, interrupt)
                    for generator in generators:
                        generator.stop()
                    last = sales.latest
                    send_heartbeats(
                        make_producer(servers, settings.kafka.producer),
                        topic.name,
                        last + timedelta(minutes=2),
                    )
                    console.print("[bold cyan]live[/] stopped sending; waiting for the last window to close")
                    _wait_for_window(spark, table_path, last.replace(second=0, microsecond=0), job.main)
                    for group in groups:  # every event sent is read: a run in Avro may follow
                        group.process_all_available()
                    finished = True
                finally:
                    for generator in generators:
                        generator.stop()
                    for group in groups:
                        group.stop(raise_errors=False)
            done = job.summary()
            verdict = "reconciles" if done.reconciles else "DOES NOT RECONCILE"
            console.print(
                f"      sales this run: read {done.read:,} = aggregated {done.aggregated:,} "
                f"+ late {done.late:,} + dead-lettered {done.dead_lettered:,} "
                f"+ heartbeats {done.heartbeats:,} + still open {done.still_open:,}: {verdict}",
                highlight=False,
            )
        finally:
            if sales is not None:
                _save_state(state_file, run, sales.latest + timedelta(minutes=5), finished=finished)
            spark.stop()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the generators and the Spark queries are stopped")
        raise
    finally:
        if started_here:
            console.print("      stopping the broker this run started")
            broker.stop()
    console.print(
        "[green]done[/]: the dashboard shows the final state: "
        "[bold]pipelines broker start && pipelines dashboard[/] (http://127.0.0.1:8501)"
    )
    return 0


def _save_state(
    state_file: Path, run: int, next_start: datetime, *, value_format: str = "json", finished: bool
) -> None:
    """Record the run: its number, where the next run's event time starts, the format of its
    events, and whether its jobs have read them all (`finished`)."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(
        json.dumps(
            {
                "run": run,
                "next_start": next_start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "format": value_format,
                "finished": finished,
            }
        )
    )


def _shipments_checkpoint(checkpoint_dir: Path) -> Path:
    """The shipments job's checkpoint in the demo's folder, without the `dlq` query folder an
    earlier release left there (it read and parsed every order a second time; the job now writes
    its dead letters from the shipments query, and `pipelines status` would show the retired query
    lagging for ever). A demo run reads its topics to the end, so nothing it still owed is left."""
    from pipelines.jobs.orders_to_shipments import RETIRED_QUERIES

    checkpoint = checkpoint_dir / "orders_to_shipments"
    for name in RETIRED_QUERIES:
        shutil.rmtree(checkpoint / name, ignore_errors=True)
    return checkpoint


def _run_until(groups: list[QueryGroup], duration_s: float | None, interrupt: StopQueriesOnInterrupt) -> None:
    """Wait for `duration_s` (None: forever) or a Ctrl-C; a query that stops on its own fails the run."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    queries = [q for g in groups for q in g.values()]
    while deadline is None or time.monotonic() < deadline:
        interrupt.check()
        for query in queries:
            # Paced on the queries' own wait: returns at once when one stops.
            if query.awaitTermination(0.5 / len(queries)):  # type: ignore[arg-type]
                interrupt.check()
                raise PipelinesError(f"the query {query.name} stopped: {query.exception() or 'no error'}")
