"""What every `pipelines` command shares: consoles, common options, settings and the broker lookup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.config import LOCAL_BROKER, Settings, load_settings
from pipelines.errors import PipelinesError
from pipelines.local.broker import LocalBroker

err = Console(stderr=True)
"""Progress, summaries and errors: stderr, so stdout stays clean for pipes."""
out = Console()
"""Results (tables, records, bootstrap servers): stdout."""

ProfileOpt = Annotated[str, typer.Option("--profile", help="settings profile in conf/ (or a YAML path)")]
BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", "-b", help="Kafka bootstrap servers (default: the profile's)"),
]


def settings_for(profile: str) -> Settings:
    return load_settings(profile, os.environ)


def local_broker(settings: Settings, directory: Path | None) -> LocalBroker:
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
    broker = local_broker(settings, None)
    state = broker.running()
    if state is None:
        raise PipelinesError(
            f"no local broker is running in {broker.directory}. Start one with `pipelines broker start`, "
            "or pass --bootstrap-servers HOST:PORT (or set PIPELINES_BOOTSTRAP_SERVERS)."
        )
    return state.bootstrap_servers
