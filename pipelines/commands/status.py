"""`pipelines status [--watch]`: topics, consumer-group lag, Spark query lag and progress, at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, out, settings_for
from pipelines.errors import PipelinesError
from pipelines.security import redact, security_for

status_app = typer.Typer(help="Topics, lag (consumer groups and Spark queries) and query progress.")


def _topics_table(servers: str) -> Table:
    from pipelines.kafka.admin import admin_client

    md = admin_client(servers).list_topics(timeout=15)
    table = Table("topic", "partitions", "replication", "in-sync", title="Topics", title_justify="left")
    for name in sorted(t for t in md.topics if not t.startswith("__")):
        parts = md.topics[name].partitions.values()
        replication = max((len(p.replicas) for p in parts), default=0)
        under = [p.id for p in parts if len(p.isrs) < len(p.replicas)]
        table.add_row(
            name, str(len(parts)), str(replication), f"[red]under-replicated: {under}[/]" if under else "all"
        )
    return table


def _groups_table(servers: str) -> Table:
    from pipelines.kafka.groups import describe_group, list_groups

    table = Table("group", "state", "members", "lag", title="Consumer groups", title_justify="left")
    for listing in list_groups(servers):
        desc = describe_group(servers, listing.group_id)
        lag = sum(p.lag for p in desc.partitions if p.lag is not None)
        table.add_row(desc.group_id, desc.state, str(len(desc.members)), f"{lag:,}")
    return table


def _spark_tables(servers: str, roots: list[Path]) -> list[Table]:
    from pipelines.kafka.admin import end_offsets
    from pipelines.monitor.lag import find_checkpoints, latest_progress, query_lag, read_query_offsets

    lag_table = Table(
        "query checkpoint",
        "topic",
        "last batch",
        "processed",
        "log end",
        "lag",
        "watermark",
        title="Spark queries (lag from their checkpoints: Spark commits no offsets to Kafka)",
        title_justify="left",
    )
    ends_cache: dict[str, dict[int, int]] = {}
    progress_table = Table(
        "query",
        "batch",
        "in rows/s",
        "processed rows/s",
        "batch ms",
        "watermark",
        "late (batch/total)",
        "state rows",
        title="Latest progress (StreamingQueryListener)",
        title_justify="left",
    )
    for root in roots:
        for checkpoint in find_checkpoints(root):
            offsets = read_query_offsets(checkpoint)
            ends = {}
            for topic in offsets.offsets:
                if topic not in ends_cache:
                    try:
                        ends_cache[topic] = end_offsets(servers, topic)
                    except PipelinesError:
                        ends_cache[topic] = {}
                ends[topic] = ends_cache[topic]
            watermark = (
                datetime.fromtimestamp(offsets.watermark_ms / 1000, UTC).strftime("%H:%M:%S")
                if offsets.watermark_ms
                else "-"
            )
            for lag in query_lag(offsets, ends):
                processed = sum(p for p, _, _ in lag.per_partition.values())
                log_end = sum(e for _, e, _ in lag.per_partition.values())
                name = str(checkpoint.relative_to(root)) if checkpoint != root else checkpoint.name
                lag_table.add_row(
                    name,
                    lag.topic,
                    str(lag.batch),
                    f"{processed:,}",
                    f"{log_end:,}",
                    f"{lag.total:,}",
                    watermark,
                )
        for progress_file in sorted(root.rglob("*.progress.jsonl")) + sorted(
            root.parent.glob("*.progress.jsonl")
        ):
            for query, p in latest_progress(progress_file).items():
                progress_table.add_row(
                    query,
                    str(p.get("batch_id")),
                    _per_second(p.get("input_rows_per_second")),
                    _per_second(p.get("processed_rows_per_second")),
                    str(p.get("batch_duration_ms")),
                    str(p.get("watermark") or "-"),
                    f"{p.get('dropped_by_watermark')}/{p.get('dropped_by_watermark_total')}",
                    str(p.get("state_rows")),
                )
    return [lag_table, progress_table]


def _per_second(rate: object) -> str:
    """A progress rate (rows per second; None before the first batch) as a whole number."""
    return f"{float(rate or 0):,.0f}"  # type: ignore[arg-type]


@status_app.callback(invoke_without_command=True)
def status(
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoints", help="folder(s) holding Spark query checkpoints (default: the profile's)"
        ),
    ] = None,
    watch: Annotated[
        float | None, typer.Option("--watch", help="refresh every this many seconds until Ctrl-C")
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Topics with partitions and in-sync replicas; consumer-group lag; the lag of each Spark query
    computed from its checkpoint against the log-end offsets; the latest progress of each query."""
    settings = settings_for(profile)
    servers = bootstrap_servers(settings, bootstrap)
    roots = checkpoints or [settings.resolve_path(settings.paths.checkpoint_dir)]

    # The security in effect, never its password: the line shows `***` for it.
    security = Text(f"Kafka {servers}: {redact(security_for(servers).describe())}")

    def render() -> Group:
        return Group(security, _topics_table(servers), _groups_table(servers), *_spark_tables(servers, roots))

    if watch is None:
        out.print(render())
        return
    if watch <= 0:
        raise PipelinesError("--watch takes a positive number of seconds")
    with Live(render(), console=out, refresh_per_second=1) as live:
        while True:
            time.sleep(watch)  # the refresh interval the user asked for, not a synchronisation
            live.update(render())
