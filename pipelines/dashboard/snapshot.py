"""What the dashboard and `/metrics` show, computed from plain values: progress lines, table rows,
revenue updates, dead-letter reasons and offsets. No I/O here (`sources.py` reads), so every rule
is tested on literal inputs.

The reconciliation is the revenue job's own (`RevenueRunSummary`), over everything the progress
files and the table hold: `read = aggregated + late + dead_lettered + heartbeats + still_open`, where
`read`, `dead_lettered` and `heartbeats` are the main query's observed metrics summed over its
batches (exact per batch), `aggregated` the sales counted in the final windows of the Delta table,
`still_open` the sales of the windows that are not final yet (from the revenue updates topic or an
update-mode table), and `late` what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

JOBS = ("revenue_per_minute", "orders_to_shipments", "customer_order_counts", "sales_to_delta")
"""The project's jobs; a query is named `<job>_<query>` (`pipelines.queries.QueryGroup`)."""
REVENUE_JOB, SHIPMENTS_JOB = "revenue_per_minute", "orders_to_shipments"
REVENUE_METRICS, SHIPMENTS_METRICS = "records", "orders"
"""The observed metrics of the revenue job's main query and of the shipments query."""

Window = tuple[datetime, str]
"""(window start in UTC, category)."""


def job_of(query: str) -> str:
    """The job a query belongs to: the longest job name it starts with (else the query itself)."""
    return max((job for job in JOBS if query == job or query.startswith(job + "_")), key=len, default=query)


def parse_time(text: object) -> datetime | None:
    """A progress or contract timestamp (`2026-11-27T10:00:00.000Z`) as an aware UTC datetime; None
    for nothing, and for Spark's watermark before the first one (the epoch)."""
    if not isinstance(text, str) or not text:
        return None
    at = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return None if at.timestamp() == 0 else at


@dataclass(frozen=True)
class QueryStatus:
    """One streaming query, from its progress lines: the latest batch's rates, duration, watermark
    and state, and totals over every batch."""

    query: str
    job: str
    batch_id: int
    at: datetime | None
    """When its latest batch started."""
    input_rows_per_second: float
    processed_rows_per_second: float
    batch_duration_ms: int
    watermark: datetime | None
    newest_event: datetime | None
    """The latest event time the query has seen (max over its batches)."""
    state_rows: int
    input_rows_total: int
    dropped_by_watermark_total: int
    """Spark's own count (after partial aggregation: not the exact late count)."""
    observed: dict[str, dict[str, int]] = field(default_factory=dict)
    """Observed metrics summed over every batch: metrics name -> metric -> total."""
    observed_complete: bool = True
    """False when some batch's line has no observed metrics (written by an older version)."""

    @property
    def watermark_delay_s(self) -> float | None:
        """How far the watermark is behind the newest event, in seconds."""
        if self.watermark is None or self.newest_event is None:
            return None
        return (self.newest_event - self.watermark).total_seconds()


def query_statuses(lines: Iterable[Mapping[str, Any]]) -> list[QueryStatus]:
    """Every query's status from progress lines (`pipelines.monitor.progress` records), in file
    order. A batch reported twice (replayed after a crash) counts once: its last line."""
    batches: dict[str, dict[int, Mapping[str, Any]]] = {}
    for line in lines:
        query, batch = line.get("query"), line.get("batch_id")
        if isinstance(query, str) and isinstance(batch, int):
            batches.setdefault(query, {})[batch] = line
    statuses = []
    for query, by_batch in sorted(batches.items()):
        ordered = [by_batch[b] for b in sorted(by_batch)]
        last = ordered[-1]
        observed: dict[str, dict[str, int]] = {}
        for line in ordered:
            for name, metrics in (line.get("observed") or {}).items():
                totals = observed.setdefault(name, {})
                for metric, value in (metrics or {}).items():
                    totals[metric] = totals.get(metric, 0) + int(value or 0)
        newest = [t for t in (parse_time(line.get("event_time_max")) for line in ordered) if t]
        watermarks = [t for t in (parse_time(line.get("watermark")) for line in ordered) if t]
        statuses.append(
            QueryStatus(
                query=query,
                job=job_of(query),
                batch_id=int(last["batch_id"]),
                at=parse_time(last.get("timestamp")),
                input_rows_per_second=float(last.get("input_rows_per_second") or 0.0),
                processed_rows_per_second=float(last.get("processed_rows_per_second") or 0.0),
                batch_duration_ms=int(last.get("batch_duration_ms") or 0),
                watermark=max(watermarks, default=None),
                newest_event=max(newest, default=None),
                state_rows=int(last.get("state_rows") or 0),
                input_rows_total=sum(int(line.get("input_rows") or 0) for line in ordered),
                dropped_by_watermark_total=sum(
                    int(line.get("dropped_by_watermark") or 0) for line in ordered
                ),
                observed=observed,
                observed_complete=all("observed" in line for line in ordered),
            )
        )
    return statuses


@dataclass(frozen=True)
class WindowRevenue:
    revenue: Decimal
    sales_count: int
    final: bool
    """True: the row of the append-mode Delta table, written once the watermark passed the window.
    False: the latest update of a window that is still open; it may change."""


def revenue_windows(
    final: Mapping[Window, tuple[Decimal, int]], updates: Mapping[Window, tuple[Decimal, int]]
) -> dict[Window, WindowRevenue]:
    """The final windows, and the updated windows that are not final yet, by (window, category)."""
    windows = {w: WindowRevenue(r, n, True) for w, (r, n) in final.items()}
    for w, (r, n) in updates.items():
        if w not in windows:
            windows[w] = WindowRevenue(r, n, False)
    return windows


@dataclass(frozen=True)
class RevenueAccount:
    """Where every sales record the revenue job read went (the job's reconciliation)."""

    read: int
    aggregated: int
    dead_lettered: int
    heartbeats: int
    still_open: int | None
    """Sales in windows not final yet; None when no source of open windows was found."""

    @property
    def late(self) -> int:
        """Dropped by the watermark: what is left (with `still_open` unknown, it includes those)."""
        return self.read - self.aggregated - self.dead_lettered - self.heartbeats - (self.still_open or 0)

    @property
    def reconciles(self) -> bool:
        return self.late >= 0

    def line(self) -> str:
        late = "late" if self.still_open is not None else "late or still open"
        text = (
            f"sales: read {self.read:,} = aggregated {self.aggregated:,} + {late} {self.late:,} + "
            f"dead-lettered {self.dead_lettered:,} + heartbeats {self.heartbeats:,}"
        )
        if self.still_open is not None:
            text += f" + still open {self.still_open:,}"
        return text + (": reconciles" if self.reconciles else ": DOES NOT RECONCILE")


def revenue_account(
    main: QueryStatus | None, windows: Mapping[Window, WindowRevenue], open_windows_known: bool
) -> RevenueAccount | None:
    """The revenue job's account, from its main query's observed metrics and the windows; None
    without a main query with complete observed metrics."""
    if main is None or not main.observed_complete:
        return None
    metrics = main.observed.get(REVENUE_METRICS, {})
    return RevenueAccount(
        read=metrics.get("read", 0),
        aggregated=sum(w.sales_count for w in windows.values() if w.final),
        dead_lettered=metrics.get("dead_lettered", 0),
        heartbeats=metrics.get("heartbeats", 0),
        still_open=sum(w.sales_count for w in windows.values() if not w.final)
        if open_windows_known
        else None,
    )


@dataclass(frozen=True)
class ShipmentsAccount:
    """Orders the shipments job read: each became one shipment or one dead letter."""

    read: int
    dead_lettered: int

    @property
    def shipped(self) -> int:
        return self.read - self.dead_lettered

    def line(self) -> str:
        return (
            f"orders -> shipments: read {self.read:,} = shipped {self.shipped:,} + dead-lettered "
            f"{self.dead_lettered:,}: reconciles"
        )


def shipments_account(query: QueryStatus | None) -> ShipmentsAccount | None:
    if query is None or not query.observed_complete:
        return None
    metrics = query.observed.get(SHIPMENTS_METRICS, {})
    return ShipmentsAccount(read=metrics.get("read", 0), dead_lettered=metrics.get("dead_lettered", 0))


@dataclass(frozen=True)
class PartitionLag:
    """A query's lag on one partition, from its checkpoint (`pipelines.monitor.lag`)."""

    query: str
    topic: str
    partition: int
    processed: int
    log_end: int

    @property
    def lag(self) -> int:
        return max(self.log_end - self.processed, 0)


@dataclass(frozen=True)
class Snapshot:
    """Everything the page and `/metrics` show, at one moment."""

    taken_at: datetime
    windows: dict[Window, WindowRevenue]
    queries: list[QueryStatus]
    lags: list[PartitionLag]
    revenue: RevenueAccount | None
    shipments: ShipmentsAccount | None
    dead_letters: dict[str, dict[str, int]]
    """Dead-letter topic -> error.reason -> records on the topic."""
    dead_letter_topics: dict[str, str]
    """Job -> its dead-letter topic."""
    kafka: str | None
    """The bootstrap servers when a broker answered; None when none did."""
    notes: list[str]
    """What could not be read, and what to do about it."""

    def query(self, name: str) -> QueryStatus | None:
        return next((q for q in self.queries if q.query == name), None)

    def jobs(self) -> list[str]:
        """The jobs seen in the progress files, in JOBS order."""
        seen = {q.job for q in self.queries}
        return [j for j in JOBS if j in seen] + sorted(seen - set(JOBS))

    def main_query(self, job: str) -> QueryStatus | None:
        """The query that carries a job's rates and watermark: the revenue job's Delta (else Kafka)
        query, the shipments query; else the job's first."""
        preferred = {
            REVENUE_JOB: ("revenue_per_minute_delta", "revenue_per_minute_kafka"),
            SHIPMENTS_JOB: ("orders_to_shipments_shipments",),
        }.get(job, ())
        for name in preferred:
            if (q := self.query(name)) is not None:
                return q
        return next((q for q in self.queries if q.job == job), None)
