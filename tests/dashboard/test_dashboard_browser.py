"""`pipelines dashboard` after a small run, in a real browser and through Prometheus.

One run for the module, in the test run's SparkSession on its broker: the revenue job (Delta and
dead letters) and the shipments job read seeded sales and orders with late and malformed events
(the generator's ledgers know which), until every window is final. Then `pipelines dashboard`
runs as a user starts it, on free ports of 127.0.0.1, and

- Debian's chromium, driven by Playwright (the system binary: no browser is ever downloaded),
  must show exactly the ledger's revenue for a chosen minute and category, and the run's late and
  dead-letter counts with their reasons; the screenshot is kept as a test artifact;
- `/metrics`, parsed with prometheus-client's own parser, must carry the same exact counts.

Expected values come from the ledgers in plain Python (tests.helpers), never from the dashboard.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from pipelines.errors import BrokerError
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.orders_to_shipments import start_orders_to_shipments
from pipelines.jobs.revenue_per_minute import start_revenue_per_minute
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.local.broker import LocalBroker
from pipelines.local.cluster import wait_for
from pipelines.monitor.progress import ProgressRecorder
from pipelines.paths import PROJECT_ROOT
from tests.helpers import (
    PIPELINES,
    DeltaRows,
    event_time,
    expected_windows,
    heartbeat_after,
    publish_orders,
    wait_until,
    wait_while_running,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("PIPELINES_TEST_ARTIFACTS", PROJECT_ROOT / ".pipelines" / "test-artifacts"))
"""Where the browser test leaves its screenshot (git-ignored)."""


@dataclass(frozen=True)
class Run:
    """What the module's run sent, from the ledgers, and where its dashboard listens."""

    url: str
    metrics_url: str
    sales_topic: str
    sales_dlq: str
    orders_dlq: str
    windows: dict[tuple[datetime, str], tuple[Decimal, int]]
    read: int
    late: int
    heartbeats: int
    reasons: Counter[str]
    orders: int
    order_reasons: Counter[str]
    log: Path


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)
    return False


@pytest.fixture(scope="module")
def _dashboard_run(
    _session_spark: SparkSession, _session_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    spark, bootstrap = _session_spark, _session_broker.bootstrap_servers
    tmp = tmp_path_factory.mktemp("dashboard")
    suffix = uuid.uuid4().hex[:8]
    sales, orders, shipments = (f"{name}-dashboard-{suffix}" for name in ("sales", "orders", "shipments"))
    for topic, partitions in (
        (sales, 2),
        (f"{sales}.dlq", 1),
        (orders, 2),
        (shipments, 2),
        (f"{orders}.dlq", 1),
    ):
        create_topic(bootstrap, topic, partitions=partitions)
    producer = make_producer(bootstrap)
    # Part A is clean and sets the watermark; part B continues after it with late and malformed
    # sales (a late sale in the very first batch would not be late to Spark: no watermark yet).
    publish_events(producer, sales, generate_events("sales", 240, seed=91), ledger=tmp / "a.jsonl")
    a = read_ledger(tmp / "a.jsonl")
    sent_orders = publish_orders(bootstrap, orders, tmp / "orders.jsonl", 40, seed=92, malformed_fraction=0.1)

    checkpoints, table = tmp / "checkpoints", tmp / "revenue_per_minute"
    recorder = ProgressRecorder(checkpoints / "revenue_per_minute.progress.jsonl")
    spark.streams.addListener(recorder)
    running = "processing-time=0 seconds"
    revenue = start_revenue_per_minute(
        spark, bootstrap_servers=bootstrap, topic=sales, checkpoint=checkpoints / "revenue_per_minute",
        delta_path=table, dlq_topic=f"{sales}.dlq", trigger=running,
    )  # fmt: skip
    shipping = start_orders_to_shipments(
        spark, bootstrap_servers=bootstrap, source_topic=orders, sink_topic=shipments,
        checkpoint=checkpoints / "orders_to_shipments", trigger=running, guarantee="at-least-once",
    )  # fmt: skip
    try:
        revenue.process_all_available()
        shipping.process_all_available()
        b_events = generate_events(
            "sales", 300, seed=93, late_fraction=0.05, malformed_fraction=0.05,
            start=max(event_time(e) for e in a) + timedelta(seconds=1),
        )  # fmt: skip
        publish_events(producer, sales, b_events, ledger=tmp / "b.jsonl")
        b = read_ledger(tmp / "b.jsonl")
        windows = expected_windows(a + b)
        produce_all(producer, sales, [heartbeat_after(windows)])  # closes every window
        revenue.process_all_available()
        written = DeltaRows(spark, table)
        wait_until(lambda: written() == len(windows), revenue.main, f"all {len(windows)} windows")
    finally:
        revenue.stop()
        shipping.stop()
        spark.streams.removeListener(recorder)

    port, metrics_port, log = _free_port(), _free_port(), tmp / "dashboard.log"
    command = [
        PIPELINES, "dashboard", "--port", str(port), "--metrics-port", str(metrics_port), "--refresh", "1",
        "--table", str(table), "--checkpoints", str(checkpoints), "--bootstrap-servers", bootstrap,
        "--sales-dlq", f"{sales}.dlq", "--orders-dlq", f"{orders}.dlq",
    ]  # fmt: skip
    with log.open("w") as out:
        dashboard = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_while_running(lambda: _answers(f"{url}/_stcore/health"), dashboard, "the page", log, 60)
        b_kinds = Counter(e.kind for e in b)
        yield Run(
            url=url,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            sales_topic=sales,
            sales_dlq=f"{sales}.dlq",
            orders_dlq=f"{orders}.dlq",
            windows=windows,
            read=len(a) + len(b) + 1,
            late=b_kinds["late"],
            heartbeats=1,
            reasons=Counter(e.reason for e in b if e.kind == "malformed" and e.reason),
            orders=len(sent_orders),
            order_reasons=Counter(s.reason for s in sent_orders if s.reason),
            log=log,
        )
    finally:
        dashboard.terminate()  # what Ctrl-C or a service manager does: the page and /metrics stop
        assert dashboard.wait(timeout=30) == 0, log.read_text()[-3000:]


@pytest.fixture
def run(request: pytest.FixtureRequest, spark: SparkSession, kafka_broker: LocalBroker) -> Run:
    """The module's run and dashboard (asking for `spark` and `kafka_broker` marks the test and
    puts it in the SparkSession's group)."""
    result: Run = request.getfixturevalue("_dashboard_run")
    return result


def _launch(playwright: Any) -> Any:
    if not Path(CHROMIUM).is_file():
        missing = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("PIPELINES_REQUIRE_CHROMIUM") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


def test_page_shows_the_tables_revenue_and_the_runs_late_and_dead_letter_counts(run: Run) -> None:
    from playwright.sync_api import expect, sync_playwright

    # The busiest window: its revenue has the most digits to get wrong.
    (minute, category), (revenue, _) = max(run.windows.items(), key=lambda kv: (kv[1][1], kv[0]))
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(run.url)
            timeout_ms = 60_000

            def metric(label: str) -> Any:
                box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
                return box.locator('[data-testid="stMetricValue"]')

            # Waits on the page itself (Playwright retries until the deadline), no sleeps.
            expect(metric("sales late")).to_have_text(f"{run.late:,}", timeout=timeout_ms)
            expect(metric("sales dead-lettered")).to_have_text(f"{sum(run.reasons.values()):,}")
            expect(metric("sales read")).to_have_text(f"{run.read:,}")
            expect(metric("sales still open")).to_have_text("0")
            expect(metric("orders in")).to_have_text(f"{run.orders:,}")
            expect(metric("orders dead-lettered")).to_have_text(f"{sum(run.order_reasons.values()):,}")
            expect(metric("shipments out")).to_have_text(f"{run.orders - sum(run.order_reasons.values()):,}")

            revenue_table = page.locator('[data-testid="stTable"] table').first
            headers = [h.strip() for h in revenue_table.locator("thead th").all_inner_texts()]
            row = revenue_table.locator("tbody tr").filter(has=page.locator("th", has_text=f"{minute:%H:%M}"))
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            # headers[0] names the index column (the window), so cell i is under headers[i + 1].
            assert dict(zip(headers[1:], cells, strict=True))[category] == f"{revenue:,.2f}"
            assert dict(zip(headers[1:], cells, strict=True))["state"] == "final"

            reasons = page.locator('[data-testid="stTable"]').filter(has_text="error.reason")
            expect(reasons.first).to_be_visible(timeout=timeout_ms)
            shown = {}
            for table in reasons.all():
                for tr in table.locator("tbody tr").all():
                    reason, count = (c.strip() for c in tr.locator("th, td").all_inner_texts())
                    shown[reason] = shown.get(reason, 0) + int(count.replace(",", ""))
            assert shown == dict(run.reasons + run.order_reasons)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": 1400, "height": int(height)})
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_carry_the_runs_exact_counts(run: Run) -> None:
    expected: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def want(name: str, value: float, **labels: str) -> None:
        expected[(name, frozenset(labels.items()))] = value

    valid = sum(n for _, n in run.windows.values())
    revenue_job, shipments_job = {"job": "revenue_per_minute"}, {"job": "orders_to_shipments"}
    want("pipelines_job_records_read_total", run.read, **revenue_job)
    want("pipelines_job_late_records_total", run.late, **revenue_job)
    want("pipelines_job_dead_lettered_records_total", sum(run.reasons.values()), **revenue_job)
    want("pipelines_job_heartbeat_records_total", run.heartbeats, **revenue_job)
    want("pipelines_job_aggregated_records_total", valid, **revenue_job)
    want("pipelines_job_open_window_records", 0, **revenue_job)
    want("pipelines_job_reconciles", 1, **revenue_job)
    want("pipelines_job_records_read_total", run.orders, **shipments_job)
    want("pipelines_job_dead_lettered_records_total", sum(run.order_reasons.values()), **shipments_job)
    want("pipelines_job_shipped_records_total", run.orders - sum(run.order_reasons.values()), **shipments_job)
    for reason, n in run.reasons.items():
        want("pipelines_dead_letters_total", n, topic=run.sales_dlq, reason=reason)
    for reason, n in run.order_reasons.items():
        want("pipelines_dead_letters_total", n, topic=run.orders_dlq, reason=reason)
    want(
        "pipelines_query_input_rows_total",
        run.read,
        job="revenue_per_minute",
        query="revenue_per_minute_delta",
    )
    for partition in ("0", "1"):  # everything read: no lag on either partition of the sales topic
        want("pipelines_query_lag_records", 0, query="revenue_per_minute_delta", topic=run.sales_topic,
             partition=partition)  # fmt: skip
    want("pipelines_revenue_windows", len(run.windows), state="final")
    want("pipelines_revenue_windows", 0, state="open")
    want("pipelines_kafka_up", 1)

    def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(run.metrics_url, timeout=10) as response:
            return _samples(response.read().decode())

    # The last progress lines reach their file shortly after the queries stop (the listener bus is
    # asynchronous) and the dead-letter topics are read in the background: wait for the counts.
    missing: dict[Any, tuple[float, float | None]] = {}

    def counts_match() -> bool:
        got = {k: v for k, v in scrape().items() if k in expected}
        missing.clear()
        missing.update({k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v})
        return not missing

    try:
        wait_for(counts_match, 60, "the run's counts on /metrics", every_s=0.5)
    except BrokerError:
        pytest.fail(f"/metrics still differs (expected, got): {missing}")
    samples = scrape()
    watermark = samples[("pipelines_query_watermark_seconds", frozenset(
        {"job": "revenue_per_minute", "query": "revenue_per_minute_delta"}.items()))]  # fmt: skip
    last_minute = max(m for m, _ in run.windows)
    assert watermark >= (last_minute + timedelta(minutes=1)).timestamp()  # every window closed
