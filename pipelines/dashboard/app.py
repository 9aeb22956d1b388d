"""The dashboard page (Streamlit). `pipelines dashboard` runs it; everything on it comes from one
Snapshot (`pipelines.dashboard.snapshot`), refreshed every few seconds by a Streamlit fragment,
so the page moves while the jobs run and shows their final state once they stop.

Money stays Decimal until it is text: every amount on the page is the table's exact value with
two decimals (the chart alone plots floats).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from pipelines.dashboard import runtime
from pipelines.dashboard.snapshot import REVENUE_JOB, SHIPMENTS_JOB, QueryStatus, Snapshot

MINUTES_SHOWN = 30
"""The table shows the latest this many minutes (the chart all of them)."""
OPEN = "open · not final"
NONE = "—"
FINAL = "final"


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def clock(at: datetime | None) -> str:
    return f"{at:%H:%M:%S}" if at is not None else NONE


def revenue_table(snap: Snapshot) -> pd.DataFrame:
    """One row per window (latest first), one column per category, the total, and whether the
    window is final (in the Delta table) or still open (its latest update)."""
    categories = sorted({c for _, c in snap.windows})
    minutes = sorted({m for m, _ in snap.windows}, reverse=True)[:MINUTES_SHOWN]
    rows = []
    for minute in minutes:
        cells = {c: snap.windows.get((minute, c)) for c in categories}
        present = [w for w in cells.values() if w is not None]
        row = {"window (UTC)": f"{minute:%H:%M}", "state": FINAL if all(w.final for w in present) else OPEN}
        row |= {c: money(w.revenue) if w is not None else "" for c, w in cells.items()}
        row["total"] = money(sum((w.revenue for w in present), Decimal("0.00")))
        rows.append(row)
    return pd.DataFrame(rows, columns=["window (UTC)", "state", *categories, "total"]).set_index(
        "window (UTC)"
    )


def revenue_chart(snap: Snapshot) -> pd.DataFrame:
    data: dict[str, dict[datetime, float]] = {}
    for (minute, category), w in snap.windows.items():
        data.setdefault(category, {})[minute.replace(tzinfo=None)] = float(w.revenue)
    return pd.DataFrame(data).sort_index().fillna(0.0)  # no sale of a category in a minute: 0 EUR


def queries_table(queries: list[QueryStatus]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "query": q.query,
                "last batch": q.batch_id,
                "at (UTC)": clock(q.at),
                "input rows/s": f"{q.input_rows_per_second:,.0f}",
                "processed rows/s": f"{q.processed_rows_per_second:,.0f}",
                "batch ms": f"{q.batch_duration_ms:,}",
                "watermark (UTC)": clock(q.watermark),
                "behind newest event": f"{q.watermark_delay_s:,.1f} s"
                if q.watermark_delay_s is not None
                else NONE,
                "state rows": f"{q.state_rows:,}",
                "rows in": f"{q.input_rows_total:,}",
                "dropped by watermark (Spark)": f"{q.dropped_by_watermark_total:,}",
            }
            for q in queries
        ]
    ).set_index("query")


def lag_table(snap: Snapshot, job: str) -> pd.DataFrame | None:
    rows = [
        {
            "query": p.query,
            "topic": p.topic,
            "partition": p.partition,
            "processed": f"{p.processed:,}",
            "log end": f"{p.log_end:,}",
            "lag": f"{p.lag:,}",
        }
        for p in snap.lags
        if p.query == job or p.query.startswith(job + "_")
    ]
    return pd.DataFrame(rows).set_index("query") if rows else None


def reasons_table(reasons: dict[str, int]) -> pd.DataFrame:
    ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return pd.DataFrame([{"error.reason": r, "records": n} for r, n in ordered]).set_index("error.reason")


def main_metrics(q: QueryStatus | None) -> None:
    if q is None:
        return
    cols = st.columns(5)
    cols[0].metric("input rows/s", f"{q.input_rows_per_second:,.0f}")
    cols[1].metric("processed rows/s", f"{q.processed_rows_per_second:,.0f}")
    cols[2].metric("batch duration", f"{q.batch_duration_ms / 1000:,.2f} s")
    cols[3].metric("watermark (UTC)", clock(q.watermark))
    delay = q.watermark_delay_s
    cols[4].metric("watermark behind newest event", f"{delay:,.1f} s" if delay is not None else NONE)


def dead_letters(snap: Snapshot, job: str, what: str) -> None:
    topic = snap.dead_letter_topics.get(job)
    if topic is None:
        return
    reasons = snap.dead_letters.get(topic)
    if reasons:
        st.markdown(f"**Dead letters on `{topic}` by reason** ({sum(reasons.values()):,} records)")
        st.table(reasons_table(reasons))
    elif snap.kafka is not None:
        st.caption(f"no dead letters on `{topic}`")
    else:
        st.caption(f"dead-letter reasons of {what}: need Kafka (`{topic}`)")


def revenue_section(snap: Snapshot) -> None:
    st.header("Revenue per category per minute (EUR)")
    if not snap.windows:
        st.caption("no windows yet")
        return
    st.line_chart(revenue_chart(snap), x_label="event-time minute (UTC)", y_label="EUR")
    n_open = sum(1 for w in snap.windows.values() if not w.final)
    st.caption(
        "final: the row of the Delta table revenue_per_minute, written once the watermark passed the "
        f"window; {OPEN}: its latest update so far, it may still change ({n_open} open)"
    )
    st.table(revenue_table(snap))


def revenue_job(snap: Snapshot) -> None:
    r = snap.revenue
    if r is not None:
        cols = st.columns(6)
        cols[0].metric("sales read", f"{r.read:,}")
        cols[1].metric("sales aggregated", f"{r.aggregated:,}")
        cols[2].metric(
            "sales late" if r.still_open is not None else "sales late or still open", f"{r.late:,}"
        )
        cols[3].metric("sales dead-lettered", f"{r.dead_lettered:,}")
        cols[4].metric("heartbeats", f"{r.heartbeats:,}")
        cols[5].metric("sales still open", f"{r.still_open:,}" if r.still_open is not None else NONE)
        st.code(r.line(), language=None)
    dead_letters(snap, REVENUE_JOB, "sales")


def shipments_job(snap: Snapshot) -> None:
    s = snap.shipments
    if s is not None:
        cols = st.columns(3)
        cols[0].metric("orders in", f"{s.read:,}")
        cols[1].metric("shipments out", f"{s.shipped:,}")
        cols[2].metric("orders dead-lettered", f"{s.dead_lettered:,}")
        st.code(s.line(), language=None)
    dead_letters(snap, SHIPMENTS_JOB, "orders")


def jobs_section(snap: Snapshot) -> None:
    st.header("Jobs")
    if not snap.queries:
        st.caption("no progress files yet: the jobs write one line per micro-batch")
    for job in snap.jobs():
        title = {SHIPMENTS_JOB: "orders_to_shipments — the shipments path"}.get(job, job)
        st.subheader(title)
        main_metrics(snap.main_query(job))
        if job == REVENUE_JOB:
            revenue_job(snap)
        elif job == SHIPMENTS_JOB:
            shipments_job(snap)
        st.markdown("**Queries** (latest batch; totals over every batch)")
        st.table(queries_table([q for q in snap.queries if q.job == job]))
        lags = lag_table(snap, job)
        if lags is not None:
            st.markdown(
                "**Lag per topic-partition** (from the checkpoints: Spark commits no offsets to Kafka)"
            )
            st.table(lags)


def page(snap: Snapshot, refresh_s: float) -> None:
    kafka = f"Kafka {snap.kafka}" if snap.kafka else "Kafka: not connected"
    st.caption(f"refreshed {clock(snap.taken_at)} UTC, every {refresh_s:g} s · {kafka}")
    for note in snap.notes:
        st.info(note)
    revenue_section(snap)
    jobs_section(snap)


def run() -> None:
    st.set_page_config(page_title="pipelines dashboard", layout="wide")
    st.title("pipelines")
    monitor: Any = runtime.monitor()
    refresh_s = runtime.refresh_s()

    @st.fragment(run_every=refresh_s)
    def live() -> None:
        page(monitor.latest(), refresh_s)

    live()


run()
