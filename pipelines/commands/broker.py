"""`pipelines broker start|stop|status`: the local Apache Kafka broker (KRaft)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines import versions
from pipelines.commands.cluster import local_cluster
from pipelines.commands.common import ProfileOpt, err, local_broker, settings_for
from pipelines.errors import PipelinesError
from pipelines.local.cluster import is_cluster_dir

broker_app = typer.Typer(
    help="Run a real Apache Kafka broker (KRaft), or a three-node cluster, on 127.0.0.1.",
    no_args_is_help=True,
)


@broker_app.command("start")
def broker_start(
    brokers: Annotated[
        int, typer.Option("--brokers", help="1: a single broker; 3: a replicated three-node cluster")
    ] = 1,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="settings profile (default: local, or cluster with --brokers 3)"),
    ] = None,
) -> None:
    """Start a local broker (or, with --brokers 3, a three-node cluster) in the background and
    print its bootstrap servers.

    A second start on the same folder reports the running broker instead of starting another.
    """
    if brokers not in (1, 3):
        raise PipelinesError("--brokers takes 1 (a single broker) or 3 (a replicated three-node cluster)")
    if brokers == 3:
        _cluster_start(directory, profile or "cluster")
        return
    if is_cluster_dir(_folder(directory, profile or "local")):
        raise PipelinesError(
            f"{_folder(directory, profile or 'local')} holds a 3-broker cluster: start it with "
            "--brokers 3, or give the single broker another --dir"
        )
    broker = local_broker(settings_for(profile or "local"), directory)
    with err.status(f"starting Kafka {versions.KAFKA_BROKER} (KRaft) in {broker.directory} ..."):
        state, started = broker.start()
    if started:
        err.print(f"[green]broker started[/] (pid {state.pid}); logs in {broker.log_dir}")
    else:
        err.print(f"[yellow]a broker already runs[/] from {broker.directory} (pid {state.pid})")
    print(state.bootstrap_servers)


def _cluster_start(directory: Path | None, profile: str) -> None:
    cluster = local_cluster(settings_for(profile), directory, brokers=3)
    with err.status(f"starting 3 Kafka {versions.KAFKA_BROKER} brokers (KRaft) in {cluster.directory} ..."):
        state, started = cluster.start()
    if started:
        pids = ", ".join(str(n.pid) for n in state.nodes)
        err.print(
            f"[green]3-broker cluster started[/] (pids {pids}); logs in {cluster.directory}/node-*/logs; "
            f"stop it with `pipelines broker stop --dir {cluster.directory}`"
        )
    else:
        err.print(f"[yellow]a 3-broker cluster already runs[/] from {cluster.directory}")
    print(state.bootstrap_servers)


def _folder(directory: Path | None, profile: str) -> Path:
    settings = settings_for(profile)
    return directory or settings.resolve_path(settings.broker.dir)


@broker_app.command("stop")
def broker_stop(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")
    ] = None,
    profile: ProfileOpt = "local",
) -> None:
    """Stop the local broker (or cluster) running from the folder (its data stays for the next start)."""
    if is_cluster_dir(_folder(directory, profile)):
        cluster = local_cluster(settings_for(profile), _folder(directory, profile))
        with err.status("stopping the 3-broker cluster ..."):
            stopped = cluster.stop()
        err.print("cluster stopped" if stopped else f"no cluster was running in {cluster.directory}")
        return
    broker = local_broker(settings_for(profile), directory)
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
    """Say whether a broker (or cluster) runs from the folder, and where."""
    if is_cluster_dir(_folder(directory, profile)):
        cluster = local_cluster(settings_for(profile), _folder(directory, profile))
        cluster_state = cluster.running()
        if cluster_state is None:
            running = [n.node_id for n in cluster.running_nodes()]
            err.print(f"the cluster in {cluster.directory} is not fully running (nodes running: {running})")
            raise typer.Exit(1)
        print(cluster_state.bootstrap_servers)
        pids = ", ".join(str(n.pid) for n in cluster_state.nodes)
        err.print(f"pids {pids}, logs in {cluster.directory}/node-*/logs")
        return
    broker = local_broker(settings_for(profile), directory)
    state = broker.running()
    if state is None:
        err.print(f"no broker is running in {broker.directory}")
        raise typer.Exit(1)
    print(state.bootstrap_servers)
    err.print(f"pid {state.pid}, logs in {broker.log_dir}")
