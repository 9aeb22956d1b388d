"""The dashboard's rules on literal inputs (no broker, no Spark): progress lines to query status
(a replayed batch counted once), final and open windows, the reconciliation, and the Prometheus
exposition of a snapshot, read back with prometheus-client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from pipelines.dashboard.snapshot import (
    PartitionLag,
    RevenueAccount,
    Snapshot,
    WindowRevenue,
    job_of,
    query_statuses,
    revenue_account,
    revenue_windows,
    shipments_account,
)
from pipelines.metrics import SnapshotCollector


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 27, 10, minute, second, tzinfo=UTC)


def line(batch: int, read: int, dead: int, **extra: object) -> dict[str, object]:
    return {
        "query": "revenue_per_minute_delta", "batch_id": batch, "timestamp": "2026-12-01T16:00:00.000Z",
        "input_rows": read, "input_rows_per_second": 10.0, "processed_rows_per_second": 20.0,
        "batch_duration_ms": 1500, "watermark": "1970-01-01T00:00:00.000Z", "dropped_by_watermark": 0,
        "state_rows": 3, "event_time_max": None,
        "observed": {"records": {"read": read, "dead_lettered": dead, "heartbeats": 0}}, **extra,
    }  # fmt: skip


def test_query_status_counts_a_replayed_batch_once_and_measures_the_watermark_delay() -> None:
    lines = [
        line(0, 100, 2),
        line(1, 50, 1, watermark="2026-11-27T10:01:00.000Z", event_time_max="2026-11-27T10:01:30.000Z"),
        line(1, 50, 1, watermark="2026-11-27T10:01:00.000Z", event_time_max="2026-11-27T10:01:30.000Z"),
        line(2, 0, 0, watermark="2026-11-27T10:01:00.000Z", state_rows=0, dropped_by_watermark=4),
        {**line(0, 7, 0), "query": "orders_to_shipments_shipments", "observed": {"orders": {"read": 7}}},
    ]
    revenue, shipments = (
        {q.query: q for q in query_statuses(lines)}[n]
        for n in ("revenue_per_minute_delta", "orders_to_shipments_shipments")
    )
    assert (revenue.batch_id, revenue.input_rows_total, revenue.state_rows) == (2, 150, 0)
    assert revenue.observed == {"records": {"read": 150, "dead_lettered": 3, "heartbeats": 0}}
    assert revenue.watermark == at(1) and revenue.newest_event == at(1, 30)
    assert revenue.watermark_delay_s == 30.0 and revenue.dropped_by_watermark_total == 4
    assert (shipments.job, shipments_account(shipments).line()) == (  # type: ignore[union-attr]
        "orders_to_shipments",
        "orders -> shipments: read 7 = shipped 7 + dead-lettered 0: reconciles",
    )
    assert [job_of(q) for q in ("sales_to_delta", "customer_order_counts_merge", "other")] == [
        "sales_to_delta", "customer_order_counts", "other",
    ]  # fmt: skip


def test_open_windows_are_the_updates_not_yet_in_the_table_and_the_account_reconciles() -> None:
    final = {(at(0), "books"): (Decimal("10.30"), 2)}
    updates = {(at(0), "books"): (Decimal("9.00"), 1), (at(1), "toys"): (Decimal("4.00"), 3)}
    windows = revenue_windows(final, updates)
    assert windows == {
        (at(0), "books"): WindowRevenue(Decimal("10.30"), 2, True),  # the table's row wins
        (at(1), "toys"): WindowRevenue(Decimal("4.00"), 3, False),
    }
    [main] = query_statuses([line(0, 12, 2)])
    account = revenue_account(main, windows, open_windows_known=True)
    assert account == RevenueAccount(read=12, aggregated=2, dead_lettered=2, heartbeats=0, still_open=3)
    assert account.late == 5 and account.reconciles
    assert account.line() == (
        "sales: read 12 = aggregated 2 + late 5 + dead-lettered 2 + heartbeats 0 + still open 3: reconciles"
    )
    unknown = revenue_account(main, windows, open_windows_known=False)
    assert unknown is not None and unknown.still_open is None and unknown.late == 8
    assert "late or still open 8" in unknown.line()
    old = [{k: v for k, v in line(0, 12, 2).items() if k != "observed"}]
    assert revenue_account(query_statuses(old)[0], windows, True) is None  # no observed metrics: no account


def test_metrics_exposition_parses_with_prometheus_clients_parser() -> None:
    [main] = query_statuses([line(0, 12, 2, watermark="2026-11-27T10:00:30.000Z")])
    windows = revenue_windows({(at(0), "books"): (Decimal("10.30"), 7)}, {})
    snap = Snapshot(
        taken_at=at(5),
        windows=windows,
        queries=[main],
        lags=[PartitionLag("revenue_per_minute_delta", "sales", 1, 40, 45)],
        revenue=revenue_account(main, windows, True),
        shipments=None,
        dead_letters={"sales.dlq": {"invalid_json": 2}},
        dead_letter_topics={"revenue_per_minute": "sales.dlq"},
        kafka="127.0.0.1:9092",
        notes=[],
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    job = (("job", "revenue_per_minute"),)
    query = (("job", "revenue_per_minute"), ("query", "revenue_per_minute_delta"))
    assert samples[("pipelines_job_records_read_total", job)] == 12
    assert samples[("pipelines_job_late_records_total", job)] == 3
    assert samples[("pipelines_job_dead_lettered_records_total", job)] == 2
    assert samples[("pipelines_job_reconciles", job)] == 1
    assert (
        samples[("pipelines_dead_letters_total", (("reason", "invalid_json"), ("topic", "sales.dlq")))] == 2
    )
    lag = (("partition", "1"), ("query", "revenue_per_minute_delta"), ("topic", "sales"))
    assert samples[("pipelines_query_lag_records", lag)] == 5
    assert samples[("pipelines_query_watermark_seconds", query)] == at(0, 30).timestamp()
    assert samples[("pipelines_query_batch_duration_seconds", query)] == 1.5
    assert samples[("pipelines_revenue_eur", (("category", "books"),))] == 10.3
    assert samples[("pipelines_kafka_up", ())] == 1
