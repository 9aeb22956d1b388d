"""A run's results as JSON, a markdown table and PNG charts (matplotlib, Agg)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.stats import spread_text, summarize

NAMES = {
    "generate": "`pipelines generate sales` (project)",
    "producer_performance": "Kafka ProducerPerformance",
    "spark": "Spark revenue job (project, as shipped)",
    "naive": "naive Python poll loop",
    "quix": "Quix Streams tumbling window",
    "consumer_performance": "Kafka ConsumerPerformance (read ceiling)",
    "spark_batch": "Spark batch ceiling (same parse and aggregation, one batch query)",
    "spark_read": "Spark raw read (kafka source, batch, values only)",
    "spark_microbatch": "Spark micro-batch (processing-time=0s), exactly-once",
    "spark_microbatch_at_least_once": "Spark micro-batch (processing-time=0s), at-least-once",
    "spark_realtime": "Spark real-time mode",
    "python_at_least_once": "Python processor, at-least-once",
    "python_exactly_once": "Python processor, exactly-once (commit interval 100 ms)",
    "python_exactly_once_10ms": "Python processor, exactly-once, commit interval 10 ms",
    "python_exactly_once_1000ms": "Python processor, exactly-once, commit interval 1 s",
    "processor_exactly_once_10ms": "Python processor, exactly-once, commit interval 10 ms",
    "processor_exactly_once_1000ms": "Python processor, exactly-once, commit interval 1 s",
    "generate_baseline": "`pipelines generate sales` before the optimisations (baseline commit)",
    "spark_baseline": "Spark revenue job before the parser's fast path (VARIANT parse of every record)",
    "spark_revenue_job": "Spark revenue job (`python jobs/revenue_per_minute.py`)",
    "python_processor_at_least_once": "Python processor, at-least-once",
    "python_processor_exactly_once": "Python processor, exactly-once",
    "spark_shipments": "Spark orders → shipments job, exactly-once (project, as shipped)",
    "spark_shipments_at_least_once": "Spark orders → shipments job, at-least-once (Spark's kafka sink)",
    "processor_at_least_once": "Python processor, at-least-once (`pipelines process`)",
    "processor_exactly_once": "Python processor, exactly-once (`pipelines process`)",
    "spark_customer_counts": "Spark customer-counts job (stateful, Delta MERGE)",
    "generate_json": "`pipelines generate sales`, JSON",
    "generate_avro": "`pipelines generate sales --format avro` (AvroSerializer, wire format)",
    "revenue_json": "Spark revenue job, JSON",
    "revenue_avro": "Spark revenue job, `--format avro`",
}


def _name(key: str) -> str:
    return NAMES.get(key, f"{key} (variant)")


def paired_ratios(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """a/b of each repeat (measured side by side), summarised."""
    values = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"]]
    return summarize(values)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The comparisons the issue asks for, within this run."""
    out: dict[str, Any] = {}
    prod = (results.get("producer") or {}).get("implementations") or {}
    if "generate" in prod and "producer_performance" in prod:
        if "generate_baseline" in prod:
            out["generate / generate_baseline (speed-up)"] = paired_ratios(
                prod["generate"]["runs"], prod["generate_baseline"]["runs"]
            )
            out["generate_baseline / ProducerPerformance"] = paired_ratios(
                prod["generate_baseline"]["runs"], prod["producer_performance"]["runs"]
            )
        out["generate / ProducerPerformance"] = paired_ratios(
            prod["generate"]["runs"], prod["producer_performance"]["runs"]
        )
    agg = (results.get("aggregation") or {}).get("implementations") or {}
    if "spark" in agg and "spark_baseline" in agg:
        out["spark / spark_baseline (speed-up)"] = paired_ratios(
            agg["spark"]["runs"], agg["spark_baseline"]["runs"]
        )
    for ceiling in ("spark_batch", "spark_read"):
        if "spark" in agg and ceiling in agg:
            out[f"spark / {ceiling}"] = paired_ratios(agg["spark"]["runs"], agg[ceiling]["runs"])
    for spark_name in [n for n in agg if n.startswith("spark")]:
        for other in ("naive", "quix", "consumer_performance"):
            if other in agg:
                out[f"{spark_name} / {other}"] = paired_ratios(agg[spark_name]["runs"], agg[other]["runs"])
    orders = (results.get("orders") or {}).get("implementations") or {}
    for a, b in (
        ("spark_shipments", "spark_shipments_at_least_once"),
        ("spark_shipments", "processor_at_least_once"),
        ("spark_shipments", "processor_exactly_once"),
        ("processor_exactly_once", "processor_at_least_once"),
    ):
        if a in orders and b in orders:
            out[f"{a} / {b}"] = paired_ratios(orders[a]["runs"], orders[b]["runs"])
    return out


def _median(results: dict[str, Any], workload: str, impl: str) -> float | None:
    impls = (results.get(workload) or {}).get("implementations") or {}
    return (impls.get(impl) or {}).get("rate", {}).get("median")


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Markdown rows comparing two runs: medians (absolute, from two runs: the machine's load
    differs between them) and the ratios within each run (the fairer comparison)."""
    lines = [
        f"Before: run of {before['machine']['date_utc']} ({before['options'].get('note') or 'no note'}); "
        f"after: this run ({after['options'].get('note') or 'no note'}).",
        "",
        "| measure | before | after | change |",
        "|---|---:|---:|---:|",
    ]
    rows = [
        ("producer: `pipelines generate` records/s", _median(before, "producer", "generate"),
         _median(after, "producer", "generate"), "{:,.0f}"),
        ("producer: Kafka ProducerPerformance records/s (reference)",
         _median(before, "producer", "producer_performance"),
         _median(after, "producer", "producer_performance"), "{:,.0f}"),
        ("aggregation: Spark revenue job events/s", _median(before, "aggregation", "spark"),
         _median(after, "aggregation", "spark"), "{:,.0f}"),
        ("aggregation: naive Python events/s (reference)", _median(before, "aggregation", "naive"),
         _median(after, "aggregation", "naive"), "{:,.0f}"),
    ]  # fmt: skip
    rb, ra = ratios(before), ratios(after)
    for key in rb.keys() & ra.keys():
        rows.append((f"ratio within the run: {key}", rb[key]["median"], ra[key]["median"], "{:.2f}x"))
    for label, b, a, fmt in sorted(rows, key=lambda r: r[0].startswith("ratio")):
        if b is None or a is None:
            continue
        lines.append(f"| {label} | {fmt.format(b)} | {fmt.format(a)} | {a / b:.2f}x |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Benchmarks, {m['date_utc']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"load {m['load_avg_at_start']} at start "
        f"(shared with other work: absolute numbers drift, ratios are within this run); {m['os']}; Python "
        f"{m['python']}, {m['java']}, Spark {m['spark']}, Delta {m['delta']}, Kafka {m['kafka_broker']} "
        f"(one local KRaft broker), confluent-kafka {m['confluent_kafka']} (librdkafka {m['librdkafka']}), "
        f"quixstreams {m['quixstreams']}.",
        "",
        *(
            [f"**This run was stopped before its end** ({results['interrupted']}).", ""]
            if results.get("interrupted")
            else []
        ),
        f"Each cell: median (min-max) of {results['options']['repeats']} repeats. "
        "`ok` = the result was checked "
        "(counts and exact sums); a run that fails its check is marked ✗ and does not count as a win.",
        "",
    ]
    prod = results.get("producer")
    if prod:
        lines += [
            f"## Producer throughput ({prod['records']:,} records of {prod['mean_record_bytes']:.0f} B mean, "
            f"{prod['partitions']} partitions, acks=all, idempotent, lz4, linger 20 ms)",
            "",
            "| producer | records/s | ok |",
            "|---|---:|:-:|",
        ]
        for key, impl in prod["implementations"].items():
            lines.append(
                f"| {_name(key)} | {spread_text(impl['rate'])} | {'✓' if impl['correct'] else '✗'} |"
            )
        lines.append("")
    agg = results.get("aggregation")
    if agg:
        lines += [
            f"## Aggregation throughput: revenue per category per minute ({agg['events']:,} preloaded sales, "
            f"{agg['partitions']} partitions, {agg['windows']:,} windows)",
            "",
            "| implementation | events/s | seconds | ok |",
            "|---|---:|---:|:-:|",
        ]
        for key, impl in agg["implementations"].items():
            secs = summarize([r["seconds"] for r in impl["runs"] if "seconds" in r])
            label = _name(key)
            variant = agg.get("spark_variants", {}).get(key)
            if variant and key not in ("spark", "spark_baseline"):
                label += " (" + ", ".join(f"{k}={v}" for k, v in variant.items()) + ")"
            lines.append(
                f"| {label} | {spread_text(impl['rate'])} "
                f"| {spread_text(secs, '{:.1f}') if secs['n'] else '-'} "
                f"| {'✓' if impl['correct'] else '✗'} |"
            )
        lines.append("")
    orders = results.get("orders")
    if orders:
        lines += [
            f"## Jobs that read orders ({orders['events']:,} preloaded orders, {orders['partitions']} "
            f"partitions, {orders['customers']:,} customers)",
            "",
            "| implementation | orders/s | seconds | ok |",
            "|---|---:|---:|:-:|",
        ]
        for key, impl in orders["implementations"].items():
            secs = summarize([r["seconds"] for r in impl["runs"]])
            lines.append(
                f"| {_name(key)} | {spread_text(impl['rate'])} | {spread_text(secs, '{:.1f}')} "
                f"| {'✓' if impl['correct'] else '✗'} |"
            )
        lines.append("")
    avro_results = results.get("avro")
    if avro_results:
        lines += [
            f"## Avro next to JSON ({avro_results['records']:,} sales per format, "
            f"{avro_results['partitions']} partitions)",
            "",
            "| implementation | events/s | ok |",
            "|---|---:|:-:|",
        ]
        for key, impl in avro_results["implementations"].items():
            ok = "✓" if impl["correct"] else "✗"
            lines.append(f"| {_name(key)} | {spread_text(impl['rate'])} | {ok} |")
        ratio_text = ", ".join(f"{w} {r:.2f}x" for w, r in avro_results["avro_over_json"].items())
        lines += ["", f"Avro / JSON (medians): {ratio_text}.", ""]
    scaling = results.get("scaling")
    if scaling:
        lines += [
            "## Scaling: the revenue job over growing backlogs (one run per size)",
            "",
            "| sales | seconds | events/s | batches | state rows (max) | driver old gen peak MiB "
            "| driver heap after GC MiB | ok |",
            "|---:|---:|---:|---:|---:|---:|---:|:-:|",
        ]
        for r in scaling["runs"]:
            lines.append(
                f"| {r['events']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['batches']} "
                f"| {r['state_rows_max']:,} | {r['old_gen_peak_mib']:.0f} | {r['heap_retained_mib']:.0f} "
                f"| {'✓' if r['check']['ok'] else '✗'} |"
            )
        lines.append("")
    rs = ratios(results)
    if rs:
        lines += [
            "## Ratios within this run (per repeat, median (min-max))",
            "",
            "| ratio | value |",
            "|---|---:|",
        ]
        for key, s in rs.items():
            lines.append(f"| {key} | {spread_text(s, '{:.2f}x')} |")
        lines.append("")
    lat = results.get("latency")
    if lat:
        lines += [
            f"## End-to-end latency order → shipment ({lat['seconds_per_run']:g} s per run; "
            "ms from the order's "
            "broker append time to the shipment being received by a read_committed consumer)",
            "",
            "| pipeline | input events/s | p50 ms | p95 ms | p99 ms | ok |",
            "|---|---:|---:|---:|---:|:-:|",
        ]
        for r in lat["results"].values():
            cells = " | ".join(spread_text(r[p]) for p in ("p50", "p95", "p99"))
            lines.append(
                f"| {_name(r['config'])} | {r['rate']:,} | {cells} | {'✓' if r['correct'] else '✗'} |"
            )
        lines += ["", *_latency_stages(lat), *_commit_interval_tradeoff(results)]
    st = results.get("startup")
    if st:
        lines += [
            "## Start-up: launching a job → its first committed batch",
            "",
            "| job | seconds | ok |",
            "|---|---:|:-:|",
        ]
        for key, r in st["results"].items():
            lines.append(
                f"| {_name(key)} | {spread_text(r['seconds'], '{:.1f}')} | {'✓' if r['correct'] else '✗'} |"
            )
        lines.append("")
    if results.get("before_after"):
        lines += ["## Before → after the optimisations", "", *results["before_after"], ""]
    return "\n".join(lines)


def _latency_stages(lat: dict[str, Any]) -> list[str]:
    """Where the time goes: p50/p99 of each stage (median of the repeats), and what the pipeline
    says of itself (Spark's mean phase times per micro-batch, the processor's summary line)."""
    lines = [
        "Where the time goes (p50 / p99 ms, median of the repeats): *order → shipment append* is the "
        "pipeline's own work (fetch, transform, produce); *shipment append → received* is the wait "
        "for its commit (exactly-once) plus the reader's fetch. Spark: mean ms per micro-batch of "
        "each phase of its progress reports (first repeat).",
        "",
        "| pipeline | input events/s | order → shipment append | shipment append → received | "
        "the pipeline's own account |",
        "|---|---:|---:|---:|---|",
    ]
    for r in lat["results"].values():
        cells = []
        for stage in ("order_to_sink_append_ms", "sink_append_to_visible_ms"):
            st = (r.get("stages") or {}).get(stage) or {}
            p50, p99 = ((st.get(p) or {}).get("median") for p in ("p50", "p99"))
            cells.append(f"{p50:,.0f} / {p99:,.0f}" if p50 is not None and p99 is not None else "-")
        said = (r.get("runs") or [{}])[0].get("stages") or {}
        account = ""
        for query, phases in (said.get("spark_phase_ms") or {}).items():
            parts = ", ".join(f"{k} {v:,.0f}" for k, v in phases.items() if k != "batches")
            account += f"{query}: {phases['batches']} batches; {parts}. "
        if said.get("processor_summary"):
            account += said["processor_summary"].replace("|", "/")
        lines.append(
            f"| {_name(r['config'])} | {r['rate']:,} | {cells[0]} | {cells[1]} | {account.strip()} |"
        )
    return [*lines, ""]


def _transactions_per_s(run: dict[str, Any], seconds: float) -> float | None:
    """Transactions a latency run's processor committed per second of input (its summary line)."""
    found = re.search(
        r"transactions committed ([\d,]+)", (run.get("stages") or {}).get("processor_summary", "")
    )
    return int(found.group(1).replace(",", "")) / seconds if found else None


def _commit_interval_tradeoff(results: dict[str, Any]) -> list[str]:
    """The processor's exactly-once commit interval, same run: latency and transactions per second
    at each rate of the latency workload, and throughput over a backlog (orders workload, where the
    unit's record cap, not the interval, decides the transactions)."""
    latency = results.get("latency") or {}
    lat = latency.get("results") or {}
    seconds = float(latency.get("seconds_per_run") or 0)
    orders = (results.get("orders") or {}).get("implementations") or {}
    rows = []
    for label, lat_key, orders_key in (
        ("10 ms", "python_exactly_once_10ms", "processor_exactly_once_10ms"),
        ("100 ms (default)", "python_exactly_once", "processor_exactly_once"),
        ("1 s", "python_exactly_once_1000ms", "processor_exactly_once_1000ms"),
    ):
        o = orders.get(orders_key)
        for r in sorted((r for r in lat.values() if r["config"] == lat_key), key=lambda r: r["rate"]):
            tps = [_transactions_per_s(run, seconds) for run in r["runs"]] if seconds else []
            tps_text = spread_text(summarize([t for t in tps if t is not None]), "{:,.1f}") if tps else "-"
            latency_text = f"{spread_text(r['p50'])} / {spread_text(r['p99'])}"
            backlog = spread_text(o["rate"]) if o else "-"
            ok = "✓" if r["correct"] and (not o or o["correct"]) else "✗"
            rows.append(f"| {label} | {r['rate']:,} | {latency_text} | {tps_text} | {backlog} | {ok} |")
    if not rows:
        return []
    return [
        "### Python processor, exactly-once: the commit interval (`--commit-interval`)",
        "",
        "| commit interval | input events/s | latency p50 / p99 ms | transactions/s | throughput over a "
        "500,000-order backlog, orders/s | ok |",
        "|---|---:|---:|---:|---:|:-:|",
        *rows,
        "",
    ]


def charts(results: dict[str, Any], out_dir: Path, stamp: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def bar_chart(impls: dict[str, Any], metric: str, title: str, unit: str, file: str) -> None:
        keys = list(impls)
        med = [impls[k][metric]["median"] or 0 for k in keys]
        low = [m - (impls[k][metric]["min"] or 0) for k, m in zip(keys, med, strict=True)]
        high = [(impls[k][metric]["max"] or 0) - m for k, m in zip(keys, med, strict=True)]
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(keys) + 1.5))
        ax.barh([_name(k).replace("`", "") for k in keys], med, xerr=[low, high], color="#4C72B0", capsize=4)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.set_title(title)
        fig.tight_layout()
        path = out_dir / f"{stamp}-{file}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if results.get("producer"):
        bar_chart(
            results["producer"]["implementations"], "rate", "Producer throughput", "records/s", "producer"
        )
    if results.get("aggregation"):
        bar_chart(
            results["aggregation"]["implementations"],
            "rate",
            "Aggregation throughput",
            "events/s",
            "aggregation",
        )
    if results.get("orders"):
        bar_chart(results["orders"]["implementations"], "rate", "Jobs that read orders", "orders/s", "orders")
    if results.get("scaling"):
        runs = results["scaling"]["runs"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        sizes = [r["events"] / 1e6 for r in runs]
        left.plot(sizes, [r["seconds"] for r in runs], "o-", label="measured")
        if runs and runs[0]["events"]:
            per = runs[0]["seconds"] / runs[0]["events"]
            left.plot(
                sizes, [per * r["events"] for r in runs], "--", color="grey", label="linear from the first"
            )
        left.set_xlabel("million sales")
        left.set_ylabel("seconds")
        left.set_title("Revenue job: time")
        left.legend()
        right.plot(sizes, [r["old_gen_peak_mib"] for r in runs], "o-", label="driver old gen peak (MiB)")
        right.plot(sizes, [r["heap_retained_mib"] for r in runs], "s-", label="driver heap after GC (MiB)")
        right.plot(sizes, [r["state_rows_max"] for r in runs], "^-", label="state rows (max)")
        right.set_xlabel("million sales")
        right.set_title("Revenue job: memory and state")
        right.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stamp}-scaling.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if results.get("latency"):
        lat = results["latency"]["results"]
        fig, ax = plt.subplots(figsize=(10, 6))
        ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])
        for r in lat.values():
            cdf = next((run["cdf_ms"] for run in r["runs"] if run.get("cdf_ms")), None)
            if not cdf:
                continue
            style = "-" if r["rate"] == min(x["rate"] for x in lat.values()) else "--"
            ax.plot(
                cdf, [q / 2 for q in range(len(cdf))], style, label=f"{_name(r['config'])} @{r['rate']:,}/s"
            )
        ax.set_xscale("log")
        ax.set_xlabel("ms from the order's append to its shipment's receipt (log scale)")
        ax.set_ylabel("% of orders")
        ax.set_title("Order → shipment latency, CDF (first repeat of each)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out_dir / f"{stamp}-latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if results.get("startup"):
        bar_chart(
            results["startup"]["results"],
            "seconds",
            "Start-up to first committed batch",
            "seconds",
            "startup",
        )
    return written


def rewrite_markdown(json_path: Path) -> Path:
    """Write a run's `.md` (and `latest.md`) again from its JSON, charts as they are."""
    results = json.loads(json_path.read_text())
    stamp = json_path.stem
    pngs = sorted(json_path.parent.glob(f"{stamp}-*.png"))
    md = markdown(results) + "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
    (json_path.parent / f"{stamp}.md").write_text(md)
    (json_path.parent / "latest.md").write_text(md)
    return json_path.parent / "latest.md"


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results)
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    md = markdown(results)
    pngs = charts(results, out_dir, stamp)
    md += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
    (out_dir / f"{stamp}.md").write_text(md)
    (out_dir / "latest.md").write_text(md)
    return {"json": json_path, "md": out_dir / "latest.md"}
