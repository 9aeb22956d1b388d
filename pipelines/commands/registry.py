"""`pipelines registry start|stop|status`: the local schema registry (Apicurio Registry).

It runs in `.pipelines/registry` (its H2 database on disk in `data/`), on 127.0.0.1 only, with a
JDK 21+ of its own (`PIPELINES_REGISTRY_JAVA_HOME`, else the newest under /usr/lib/jvm). Commands
and jobs that read or write Avro find it there, unless given `--registry-url` (or
`PIPELINES_SCHEMA_REGISTRY_URL`): the root of a Confluent-compatible API, for example
`http://host:8081` for Confluent's registry or `http://host:8080/apis/ccompat/v7` for Apicurio's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipelines import versions
from pipelines.commands.common import ProfileOpt, err, settings_for
from pipelines.config import Settings
from pipelines.registry import local
from pipelines.registry.local import URL_ENV, LocalRegistry

registry_app = typer.Typer(
    help=f"Run a real schema registry (Apicurio Registry {versions.APICURIO_REGISTRY}) on 127.0.0.1.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="registry folder (default: $PIPELINES_REGISTRY_DIR, else .pipelines/registry)"
    ),
]
RegistryUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--registry-url",
        help=f"Confluent-compatible schema registry API (default: ${URL_ENV}, else the local registry)",
    ),
]


def local_registry(settings: Settings, directory: Path | None = None) -> LocalRegistry:
    return local.local_registry(settings, os.environ, directory)


def registry_url(settings: Settings, override: str | None) -> str:
    """`--registry-url`, else $PIPELINES_SCHEMA_REGISTRY_URL, else the local registry's URL."""
    return local.registry_url(settings, override, os.environ)


@registry_app.command("start")
def registry_start(directory: DirOpt = None, profile: ProfileOpt = "local") -> None:
    """Start the local schema registry in the background and print its Confluent-compatible URL.

    A second start on the same folder reports the running registry instead of starting another.
    """
    registry = local_registry(settings_for(profile), directory)
    with err.status(f"starting Apicurio Registry {versions.APICURIO_REGISTRY} in {registry.directory} ..."):
        state, started = registry.start()
    if started:
        err.print(f"[green]schema registry started[/] (pid {state.pid}); log in {registry.log_file}")
    else:
        err.print(f"[yellow]a schema registry already runs[/] from {registry.directory} (pid {state.pid})")
    print(state.ccompat_url)


@registry_app.command("stop")
def registry_stop(directory: DirOpt = None, profile: ProfileOpt = "local") -> None:
    """Stop the local schema registry (its schemas stay on disk for the next start)."""
    registry = local_registry(settings_for(profile), directory)
    with err.status("stopping the schema registry ..."):
        stopped = registry.stop()
    idle = f"no schema registry was running in {registry.directory}"
    err.print("schema registry stopped" if stopped else idle)


@registry_app.command("status")
def registry_status(directory: DirOpt = None, profile: ProfileOpt = "local") -> None:
    """Print the local schema registry's Confluent-compatible URL if it runs (exit 1 if not)."""
    registry = local_registry(settings_for(profile), directory)
    state = registry.running()
    if state is None:
        err.print(f"no schema registry is running in {registry.directory}")
        raise typer.Exit(1)
    print(state.ccompat_url)
    err.print(f"pid {state.pid}, log in {registry.log_file}")
