"""Prometheus `/metrics` for the pipelines (prometheus-client), from a dashboard Snapshot: what the
page shows, in the exposition format Prometheus scrapes.

Every value is read at scrape time (a custom collector), so nothing is kept twice and a restarted
dashboard exports the same counters again: they are totals over what the progress files, the
Delta table and the dead-letter topics hold, not counts of this process's life.

    serve_metrics(monitor.snapshot, port=9464)      # http://127.0.0.1:9464/metrics

`METRICS` lists every family (a test checks that the Grafana board in docker/ asks only for these).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from pipelines.dashboard.snapshot import Snapshot

PREFIX = "pipelines_"
METRICS: dict[str, tuple[str, str]] = {
    # name (without _total for counters): (type, help)
    "pipelines_query_input_rows_per_second": ("gauge", "Input rate of the query's latest micro-batch."),
    "pipelines_query_processed_rows_per_second": (
        "gauge",
        "Processing rate of the query's latest micro-batch.",
    ),
    "pipelines_query_batch_duration_seconds": ("gauge", "Duration of the query's latest micro-batch."),
    "pipelines_query_last_batch_id": ("gauge", "Id of the query's latest micro-batch."),
    "pipelines_query_watermark_seconds": ("gauge", "The query's event-time watermark (Unix time)."),
    "pipelines_query_watermark_delay_seconds": (
        "gauge",
        "How far the watermark is behind the newest event time the query has seen.",
    ),
    "pipelines_query_state_rows": ("gauge", "Rows in the query's state store."),
    "pipelines_query_input_rows": ("counter", "Records the query read, over every batch."),
    "pipelines_query_dropped_by_watermark": (
        "counter",
        "Spark's numRowsDroppedByWatermark summed over batches (counted after partial aggregation).",
    ),
    "pipelines_query_lag_records": (
        "gauge",
        "Log-end offset minus the offset of the query's last committed batch (from its checkpoint).",
    ),
    "pipelines_job_records_read": ("counter", "Records the job's main query read (observed metrics)."),
    "pipelines_job_late_records": (
        "counter",
        "Records dropped as late, exact, by reconciliation (revenue_per_minute).",
    ),
    "pipelines_job_dead_lettered_records": ("counter", "Records the job sent to its dead-letter topic."),
    "pipelines_job_heartbeat_records": ("counter", "Heartbeat records the job read (revenue_per_minute)."),
    "pipelines_job_aggregated_records": ("counter", "Sales summed into final windows (revenue_per_minute)."),
    "pipelines_job_open_window_records": ("gauge", "Sales in windows that are not final yet."),
    "pipelines_job_shipped_records": ("counter", "Shipments written (orders_to_shipments)."),
    "pipelines_job_reconciles": (
        "gauge",
        "1 when read = written + late + dead-lettered (+ heartbeats, still open) holds.",
    ),
    "pipelines_dead_letters": ("counter", "Records on a dead-letter topic, by error.reason."),
    "pipelines_revenue_windows": ("gauge", "Windows x categories of revenue_per_minute, final or open."),
    "pipelines_revenue_eur": ("gauge", "Revenue of the final windows, by category (EUR)."),
    "pipelines_kafka_up": ("gauge", "1 when a Kafka broker answered the last snapshot."),
}


class SnapshotCollector(Collector):
    """Collects METRICS from `snapshot()` at every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families depend on what the snapshot holds: no checks at registration

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def _family(name: str, labels: list[str]) -> Any:
    kind, text = METRICS[name]
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, text, labels=labels)


def families(snap: Snapshot) -> list[Metric]:
    """The Prometheus families of one snapshot."""
    q = {name: _family(name, ["job", "query"]) for name in METRICS if name.startswith("pipelines_query_")}
    lag = _family("pipelines_query_lag_records", ["query", "topic", "partition"])
    q.pop("pipelines_query_lag_records")
    for s in snap.queries:
        labels = [s.job, s.query]
        q["pipelines_query_input_rows_per_second"].add_metric(labels, s.input_rows_per_second)
        q["pipelines_query_processed_rows_per_second"].add_metric(labels, s.processed_rows_per_second)
        q["pipelines_query_batch_duration_seconds"].add_metric(labels, s.batch_duration_ms / 1000)
        q["pipelines_query_last_batch_id"].add_metric(labels, s.batch_id)
        if s.watermark is not None:
            q["pipelines_query_watermark_seconds"].add_metric(labels, s.watermark.timestamp())
        if s.watermark_delay_s is not None:
            q["pipelines_query_watermark_delay_seconds"].add_metric(labels, s.watermark_delay_s)
        q["pipelines_query_state_rows"].add_metric(labels, s.state_rows)
        q["pipelines_query_input_rows"].add_metric(labels, s.input_rows_total)
        q["pipelines_query_dropped_by_watermark"].add_metric(labels, s.dropped_by_watermark_total)
    for p in snap.lags:
        lag.add_metric([p.query, p.topic, str(p.partition)], p.lag)

    job = {name: _family(name, ["job"]) for name in METRICS if name.startswith("pipelines_job_")}
    if (r := snap.revenue) is not None:
        labels = ["revenue_per_minute"]
        job["pipelines_job_records_read"].add_metric(labels, r.read)
        job["pipelines_job_late_records"].add_metric(labels, r.late)
        job["pipelines_job_dead_lettered_records"].add_metric(labels, r.dead_lettered)
        job["pipelines_job_heartbeat_records"].add_metric(labels, r.heartbeats)
        job["pipelines_job_aggregated_records"].add_metric(labels, r.aggregated)
        if r.still_open is not None:
            job["pipelines_job_open_window_records"].add_metric(labels, r.still_open)
        job["pipelines_job_reconciles"].add_metric(labels, int(r.reconciles))
    if (shipped := snap.shipments) is not None:
        labels = ["orders_to_shipments"]
        job["pipelines_job_records_read"].add_metric(labels, shipped.read)
        job["pipelines_job_dead_lettered_records"].add_metric(labels, shipped.dead_lettered)
        job["pipelines_job_shipped_records"].add_metric(labels, shipped.shipped)
        job["pipelines_job_reconciles"].add_metric(labels, 1)

    letters = _family("pipelines_dead_letters", ["topic", "reason"])
    for topic, reasons in sorted(snap.dead_letters.items()):
        for reason, n in sorted(reasons.items()):
            letters.add_metric([topic, reason], n)
    windows = _family("pipelines_revenue_windows", ["state"])
    finals = [w for w in snap.windows.values() if w.final]
    windows.add_metric(["final"], len(finals))
    windows.add_metric(["open"], len(snap.windows) - len(finals))
    revenue = _family("pipelines_revenue_eur", ["category"])
    per_category: dict[str, Any] = {}
    for (_, category), w in snap.windows.items():
        if w.final:
            per_category[category] = per_category.get(category, 0) + w.revenue
    for category, total in sorted(per_category.items()):
        revenue.add_metric([category], float(total))
    up = _family("pipelines_kafka_up", [])
    up.add_metric([], 1 if snap.kafka else 0)
    return [*q.values(), lag, *job.values(), letters, windows, revenue, up]


def serve_metrics(snapshot: Callable[[], Snapshot], port: int, address: str = "127.0.0.1") -> Any:
    """Serve `/metrics` on `address:port` from a thread (prometheus-client's own server); returns
    the server (`.shutdown()` stops it). OSError when the port is taken."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
