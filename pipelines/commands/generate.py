"""`pipelines generate orders|sales`: seeded events to Kafka."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, settings_for
from pipelines.errors import PipelinesError

generate_app = typer.Typer(help="Produce seeded events to Kafka.", no_args_is_help=True)


@generate_app.command("sales")
def generate_sales_cmd(
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="number of events")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same events")] = 42,
    topic: Annotated[str, typer.Option("--topic", help="topic to write")] = "sales",
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="write every acknowledged event (JSON lines) here")
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Produce seeded `sales` events (murmur2 partitioning, acks=all, idempotent)."""
    from pipelines.generators.sales import encode_sale, generate_sales
    from pipelines.kafka.producer import make_producer, produce_all

    settings = settings_for(profile)
    producer = make_producer(bootstrap_servers(settings, bootstrap), settings.kafka.producer)
    started = time.monotonic()
    records = (encode_sale(s) for s in generate_sales(count, seed=seed))
    with Progress(
        TextColumn("producing sales"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("produce", total=count)
        report = produce_all(
            producer, topic, records, on_progress=lambda n: progress.update(task, completed=n)
        )
    seconds = time.monotonic() - started
    if ledger is not None:
        with ledger.open("w") as fh:
            for d in sorted(report.delivered, key=lambda d: (d.partition, d.offset)):
                fh.write(
                    json.dumps(
                        {
                            "partition": d.partition,
                            "offset": d.offset,
                            "key": (d.key or b"").decode(),
                            "value": d.value.decode(),
                        }
                    )
                    + "\n"
                )
    err.print(
        f"sent {report.sent}, acknowledged {report.acknowledged}, failed {len(report.failed)} "
        f"in {seconds:.2f} s ({report.sent / seconds if seconds else 0:,.0f} events/s)"
    )
    if report.failed:
        raise PipelinesError(f"{len(report.failed)} events were not acknowledged: {report.failed[0][1]}")
