"""`pipelines broker start|stop|status`: the local Apache Kafka broker (KRaft)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines import versions
from pipelines.commands.common import ProfileOpt, err, local_broker, settings_for
from pipelines.errors import PipelinesError

broker_app = typer.Typer(help="Run a real Apache Kafka broker (KRaft) on 127.0.0.1.", no_args_is_help=True)


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
    broker = local_broker(settings_for(profile), directory)
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
    """Say whether a broker runs from the folder, and where."""
    broker = local_broker(settings_for(profile), directory)
    state = broker.running()
    if state is None:
        err.print(f"no broker is running in {broker.directory}")
        raise typer.Exit(1)
    print(state.bootstrap_servers)
    err.print(f"pid {state.pid}, logs in {broker.log_dir}")
