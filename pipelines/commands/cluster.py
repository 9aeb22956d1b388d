"""`pipelines cluster up|down|status`: three replicated Kafka brokers and a Spark standalone cluster
on 127.0.0.1, together (what `make cluster-up` / `make cluster-down` run).

Where things are comes from the profile (`conf/cluster.yaml` by default): the brokers' folder is
`broker.dir`, their client ports are those of `kafka.bootstrap_servers`, the Spark master's port is
the one in `spark.master`, and the Spark daemons live in `<broker.dir>/spark`. So a job run with
`--profile cluster` finds both without being told.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipelines import versions
from pipelines.commands.common import ProfileOpt, broker_dir, err, out, settings_for
from pipelines.config import LOCAL_BROKER, Settings
from pipelines.errors import PipelinesError
from pipelines.local.cluster import DEFAULT_BROKERS, LocalCluster, loopback_ports
from pipelines.local.spark_cluster import HOST, SparkStandalone, alive_workers

cluster_app = typer.Typer(
    help="Run three replicated Kafka brokers and a Spark standalone cluster on 127.0.0.1.",
    no_args_is_help=True,
)

WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1g"


def local_cluster(settings: Settings, directory: Path | None, brokers: int | None = None) -> LocalCluster:
    """The Kafka cluster in `directory`, else in the profile's `broker.dir`. In the profile's own
    folder the client ports are the profile's bootstrap servers (so the profile reaches the
    cluster); in another folder they are free ports chosen on the first start."""
    ports = None
    servers = settings.kafka.bootstrap_servers
    if directory is None and servers != LOCAL_BROKER:
        ports = loopback_ports(servers, brokers or DEFAULT_BROKERS)
    return LocalCluster(
        broker_dir(settings, directory),
        settings.resolve_path(settings.paths.jars_dir),
        brokers=brokers,
        ports=ports,
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
    )


def master_port(master: str) -> int:
    """The port of a `spark://127.0.0.1:PORT` master URL; PipelinesError for any other master."""
    prefix = f"spark://{HOST}:"
    port = master.removeprefix(prefix)
    if not master.startswith(prefix) or not port.isdigit():
        raise PipelinesError(
            f"the profile's spark.master is {master!r}; the local Spark cluster needs "
            f"spark://{HOST}:PORT (see conf/cluster.yaml)"
        )
    return int(port)


def local_spark(settings: Settings) -> SparkStandalone:
    """The Spark standalone cluster of the profile: master on the port of `spark.master`, two
    workers of 1 core and 1 GiB, in `<broker.dir>/spark`."""
    return SparkStandalone(
        broker_dir(settings, None) / "spark",
        workers=WORKERS,
        worker_cores=WORKER_CORES,
        worker_memory=WORKER_MEMORY,
        master_port=master_port(settings.spark.master),
    )


@cluster_app.command("up")
def cluster_up(profile: ProfileOpt = "cluster") -> None:
    """Start the three Kafka brokers and the Spark master with two workers (the ones not running).

    Prints `bootstrap_servers=...` and `spark_master=...` on stdout.
    """
    settings = settings_for(profile)
    kafka = local_cluster(settings, None)
    spark = local_spark(settings)
    with err.status(f"starting 3 Kafka {versions.KAFKA_BROKER} brokers (KRaft) in {kafka.directory} ..."):
        state, started = kafka.start()
    err.print(
        f"[green]Kafka cluster {'started' if started else 'already running'}[/] at "
        f"{state.bootstrap_servers}; logs in {kafka.directory}/node-*/logs"
    )
    with err.status(
        f"starting the Spark {versions.SPARK} master and {WORKERS} workers in {spark.directory} ..."
    ):
        spark_state, spark_started = spark.start()
    err.print(
        f"[green]Spark cluster {'started' if spark_started else 'already running'}[/] at "
        f"{spark_state.master_url} (UI {spark_state.master_ui}); logs in {spark.log_dir}"
    )
    err.print("stop both with `make cluster-down` (pipelines cluster down)")
    print(f"bootstrap_servers={state.bootstrap_servers}")
    print(f"spark_master={spark_state.master_url}")


@cluster_app.command("down")
def cluster_down(profile: ProfileOpt = "cluster") -> None:
    """Stop the Spark cluster, then the Kafka brokers (their data stays for the next `up`)."""
    settings = settings_for(profile)
    spark = local_spark(settings)
    kafka = local_cluster(settings, None)
    with err.status("stopping the Spark cluster ..."):
        spark_stopped = spark.stop()
    err.print(
        "Spark cluster stopped" if spark_stopped else f"no Spark cluster was running in {spark.directory}"
    )
    with err.status("stopping the Kafka brokers ..."):
        kafka_stopped = kafka.stop()
    err.print(
        "Kafka cluster stopped" if kafka_stopped else f"no Kafka cluster was running in {kafka.directory}"
    )


@cluster_app.command("status")
def cluster_status(profile: ProfileOpt = "cluster") -> None:
    """Each broker (process, listed in the metadata) and each Spark daemon (process, alive at the
    master). Exits 1 unless everything runs."""
    settings = settings_for(profile)
    kafka = local_cluster(settings, None)
    spark = local_spark(settings)
    healthy = True
    state = kafka.read_state()
    if state is None:
        err.print(f"no Kafka cluster in {kafka.directory} (start it with `make cluster-up`)")
        healthy = False
    else:
        running = {n.node_id for n in kafka.running_nodes()}
        listed = kafka.brokers_in_metadata() or set()
        table = Table("broker", "address", "pid", "process", "in metadata")
        for n in state.nodes:
            table.add_row(
                str(n.node_id),
                n.address,
                str(n.pid or ""),
                "running" if n.node_id in running else "[red]stopped[/]",
                "yes" if n.node_id in listed else "[red]no[/]",
            )
            healthy &= n.node_id in running and n.node_id in listed
        out.print(table)
    spark_state = spark.read_state()
    if spark_state is None:
        err.print(f"no Spark cluster in {spark.directory}")
        healthy = False
    else:
        doc = spark.status() or {}
        alive = alive_workers(doc)
        running_daemons = spark.running()
        table = Table("spark", "address", "web UI", "pid", "state")
        for d in spark_state.daemons:
            is_master = d.name == "master"
            ok = doc.get("status") == "ALIVE" if is_master else f"{HOST}:{d.port}" in alive
            table.add_row(
                d.name,
                spark_state.master_url if is_master else f"{HOST}:{d.port}",
                f"http://{HOST}:{d.ui_port}",
                str(d.pid or ""),
                "ALIVE" if ok else "[red]down[/]",
            )
            healthy &= ok
        healthy &= running_daemons is not None
        out.print(table)
    if not healthy:
        raise typer.Exit(1)
