"""The report `make run` leaves behind: a chart of revenue per minute per category (PNG) and a
short markdown report next to it, both from plain values the demo collected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path


def revenue_chart(revenue: Mapping[datetime, Mapping[str, Decimal]], path: Path) -> Path:
    """Line chart: one line per category, revenue (EUR) per event-time minute (UTC)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    minutes = sorted(revenue)
    categories = sorted({c for per in revenue.values() for c in per})
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for category in categories:
        values = [float(revenue[m].get(category, 0)) for m in minutes]
        ax.plot(minutes, values, marker="o", label=category)  # type: ignore[arg-type]
    ax.set_title("Revenue per category per minute (from the Delta table revenue_per_minute)")
    ax.set_xlabel("event-time minute (UTC)")
    ax.set_ylabel("revenue (EUR)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown_report(
    path: Path,
    *,
    revenue: Mapping[datetime, Mapping[str, Decimal]],
    reconciliation: Sequence[str],
    dead_letters: Mapping[str, Mapping[str, int]],
    shipments: int,
    top_customers: Sequence[tuple[str, int, Decimal]],
    chart: Path,
) -> Path:
    """A short markdown report of one `make run`."""
    categories = sorted({c for per in revenue.values() for c in per})
    lines = ["# pipelines: what this run computed", "", f"![revenue per minute]({chart.name})", ""]
    lines += ["## Revenue per category per minute (EUR)", ""]
    lines += ["| minute (UTC) | " + " | ".join(categories) + " | total |"]
    lines += ["|---|" + "---:|" * (len(categories) + 1)]
    for minute in sorted(revenue):
        per = revenue[minute]
        cells = [f"{per[c]:,.2f}" if c in per else "" for c in categories]
        lines.append(f"| {minute:%H:%M} | " + " | ".join(cells) + f" | {sum(per.values()):,.2f} |")
    lines += ["", "## Reconciliation", ""] + [f"- {line}" for line in reconciliation]
    for topic, reasons in dead_letters.items():
        lines += ["", f"## Dead letters in `{topic}`", "", "| error.reason | count |", "|---|---:|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    lines += ["", f"## Shipments produced: {shipments:,}", "", "## Top customers by orders", ""]
    lines += ["| customer | orders | amount (EUR) |", "|---|---:|---:|"]
    lines += [f"| {c} | {n} | {a:,.2f} |" for c, n, a in top_customers]
    path.write_text("\n".join(lines) + "\n")
    return path
