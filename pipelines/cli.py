"""The `pipelines` command: local broker, jars, topics and generators.

Every command takes `--profile` (a file in conf/) and, where it talks to Kafka,
`--bootstrap-servers` (default: the profile's, where "local" means the broker that
`pipelines broker start` runs). Errors print one clear line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipelines import versions
from pipelines.config import LOCAL_BROKER, Settings, load_settings
from pipelines.errors import PipelinesError
from pipelines.local import jvm
from pipelines.local.broker import LocalBroker

app = typer.Typer(
    help="Real-time pipelines on Apache Kafka and Spark Structured Streaming with Delta Lake.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
broker_app = typer.Typer(help="Run a real Apache Kafka broker (KRaft) on 127.0.0.1.", no_args_is_help=True)
topics_app = typer.Typer(help="Create, list and delete topics.", no_args_is_help=True)
generate_app = typer.Typer(help="Produce seeded events to Kafka.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(generate_app, name="generate")

err = Console(stderr=True)
out = Console()

ProfileOpt = Annotated[str, typer.Option("--profile", help="settings profile in conf/ (or a YAML path)")]
BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", "-b", help="Kafka bootstrap servers (default: the profile's)"),
]


def _settings(profile: str) -> Settings:
    return load_settings(profile, os.environ)


def _broker(settings: Settings, directory: Path | None) -> LocalBroker:
    return LocalBroker(
        directory or settings.resolve_path(settings.broker.dir),
        settings.resolve_path(settings.paths.jars_dir),
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
    )


def bootstrap_servers(settings: Settings, override: str | None) -> str:
    """The servers to talk to: the option, else the profile's; "local" finds the local broker."""
    servers = override or settings.kafka.bootstrap_servers
    if servers != LOCAL_BROKER:
        return servers
    broker = _broker(settings, None)
    state = broker.running()
    if state is None:
        raise PipelinesError(
            f"no local broker is running in {broker.directory}. Start one with `pipelines broker start`, "
            "or pass --bootstrap-servers HOST:PORT (or set PIPELINES_BOOTSTRAP_SERVERS)."
        )
    return state.bootstrap_servers


# -- broker --------------------------------------------------------------------------------------
@broker_app.command("start")
def broker_start(
    brokers: Annotated[int, typer.Option("--brokers", help="number of brokers (1 for now)")] = 1,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")
    ] = None,
    profile: ProfileOpt = "local",
) -> None:
    """Start a local broker in the background and print its bootstrap servers.

    A second start on the same folder reports the running broker instead of starting another.
    """
    if brokers != 1:
        raise PipelinesError("only --brokers 1 is available so far; the 3-broker cluster is not built yet")
    broker = _broker(_settings(profile), directory)
    with err.status(f"starting Kafka {versions.KAFKA_BROKER} (KRaft) in {broker.directory} ..."):
        state, started = broker.start()
    if started:
        err.print(f"[green]broker started[/] (pid {state.pid}); logs in {broker.log_dir}")
    else:
        err.print(f"[yellow]a broker already runs[/] from {broker.directory} (pid {state.pid})")
    print(state.bootstrap_servers)


@broker_app.command("stop")
def broker_stop(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")
    ] = None,
    profile: ProfileOpt = "local",
) -> None:
    """Stop the local broker running from the folder (its data stays for the next start)."""
    broker = _broker(_settings(profile), directory)
    with err.status("stopping the broker ..."):
        stopped = broker.stop()
    err.print("broker stopped" if stopped else f"no broker was running in {broker.directory}")


@broker_app.command("status")
def broker_status(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")
    ] = None,
    profile: ProfileOpt = "local",
) -> None:
    """Say whether a broker runs from the folder, and where."""
    broker = _broker(_settings(profile), directory)
    state = broker.running()
    if state is None:
        err.print(f"no broker is running in {broker.directory}")
        raise typer.Exit(1)
    print(state.bootstrap_servers)
    err.print(f"pid {state.pid}, logs in {broker.log_dir}")


# -- jars ----------------------------------------------------------------------------------------
@app.command("jars")
def jars(
    packages: Annotated[
        bool, typer.Option("--packages", help="print Maven coordinates for spark-submit --packages")
    ] = False,
    resolve: Annotated[
        bool, typer.Option("--resolve", help="resolve the jars with Maven (make setup)")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="with --resolve: resolve again")] = False,
    profile: ProfileOpt = "local",
) -> None:
    """Print the local Kafka and Delta jars for spark-submit --jars, comma-separated.

    spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py ...
    """
    if packages:
        print(",".join(versions.SPARK_PACKAGES))
        return
    settings = _settings(profile)
    jars_dir = settings.resolve_path(settings.paths.jars_dir)
    if resolve:
        for name in jvm.MANIFESTS:
            jvm.resolve(jars_dir, name, force=force, log=lambda m: err.print(m))
        return
    print(",".join(str(p) for p in jvm.spark_jars(jars_dir)))


# -- topics --------------------------------------------------------------------------------------
@topics_app.command("create")
def topics_create(
    name: str,
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="partition count")] = 3,
    replication_factor: Annotated[int, typer.Option("--replication-factor", "-r", min=1)] = 1,
    config: Annotated[
        list[str] | None, typer.Option("--config", help="topic config k=v (repeatable)")
    ] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="succeed if the topic exists")] = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Create a topic and wait until every partition has a leader."""
    from pipelines.kafka.admin import create_topic

    conf = {}
    for item in config or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise PipelinesError(f"--config {item!r} is not key=value")
        conf[key] = value
    servers = bootstrap_servers(_settings(profile), bootstrap)
    created = create_topic(
        servers,
        name,
        partitions=partitions,
        replication_factor=replication_factor,
        config=conf,
        exist_ok=exist_ok,
    )
    err.print(f"topic {name} {'created' if created else 'already exists'} ({partitions} partitions)")


@topics_app.command("list")
def topics_list(bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """List topics with their partition counts (internal topics hidden)."""
    from pipelines.kafka.admin import admin_client

    md = admin_client(bootstrap_servers(_settings(profile), bootstrap)).list_topics(timeout=15)
    table = Table("topic", "partitions")
    for name in sorted(md.topics):
        if not name.startswith("__"):
            table.add_row(name, str(len(md.topics[name].partitions)))
    out.print(table)


@topics_app.command("delete")
def topics_delete(name: str, bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """Delete a topic and its data."""
    from confluent_kafka import KafkaException

    from pipelines.kafka.admin import admin_client

    admin = admin_client(bootstrap_servers(_settings(profile), bootstrap))
    try:
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)
    except KafkaException as exc:
        raise PipelinesError(f"cannot delete topic {name!r}: {exc.args[0].str()}") from None
    err.print(f"topic {name} deleted")


# -- generate ------------------------------------------------------------------------------------
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

    settings = _settings(profile)
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


# -- demo ----------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="sales events to produce")] = 5000,
    profile: ProfileOpt = "local",
) -> None:
    """Run the whole stack once (what `make run` does): broker, topic, events, Spark job, Delta."""
    from pipelines.demo import run_demo

    raise typer.Exit(run_demo(_settings(profile), os.environ, count))


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show client and broker warnings")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point of the `pipelines` console script."""
    try:
        app()
    except PipelinesError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
