"""What every `pipelines` command shares: consoles, common options, settings and the broker lookup.

`bootstrap_servers` is also where a command's Kafka clients get their credentials: it registers
the security of the settings (`PIPELINES_KAFKA__*` from the environment) for the servers it
returns, so every client the command builds for them connects with TLS and SCRAM when configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.config import LOCAL_BROKER, Settings, load_settings
from pipelines.errors import PipelinesError
from pipelines.kafka.reach import check_reachable
from pipelines.local.broker import LocalBroker
from pipelines.security import KafkaSecurity, security_from_settings, use_security

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


def broker_dir(settings: Settings, directory: Path | None) -> Path:
    """The local broker's (or cluster's) folder: `directory`, else the profile's `broker.dir`."""
    return directory or settings.resolve_path(settings.broker.dir)


def local_broker(settings: Settings, directory: Path | None) -> LocalBroker:
    return LocalBroker(
        broker_dir(settings, directory),
        settings.resolve_path(settings.paths.jars_dir),
        heap=settings.broker.heap,
        start_timeout_s=settings.broker.start_timeout_s,
        secure=settings.broker.secure,
    )


def local_principal(
    settings: Settings, directory: Path | None, principal: str, hint: str
) -> tuple[str, KafkaSecurity]:
    """The bootstrap servers of the local secured broker in `directory` (else the profile's folder)
    and how `principal` logs in to it; PipelinesError ending with `hint` when none runs there."""
    from pipelines.local.security import principal_security

    broker = local_broker(settings, directory)
    state = broker.running()
    if state is None or not state.secure:
        raise PipelinesError(f"no secured broker is running in {broker.directory}{hint}")
    return state.bootstrap_servers, principal_security(broker.directory, principal)


def client_security(settings: Settings) -> KafkaSecurity:
    """The client security the settings (and so the environment) describe."""
    return security_from_settings(settings)


def bootstrap_servers(settings: Settings, override: str | None) -> str:
    """The servers to talk to: the option, else the profile's; "local" finds the local broker.

    Registers the settings' client security for them (see the module docstring) and checks that a
    broker answers (`pipelines.kafka.reach`): a wrong address fails here, in seconds, with one line.
    """
    servers = override or settings.kafka.bootstrap_servers
    security = client_security(settings)
    if servers != LOCAL_BROKER:
        use_security(servers, security)
        check_reachable(servers)
        return servers
    broker = local_broker(settings, None)
    state = broker.running()
    if state is None:
        raise PipelinesError(
            f"no local broker is running in {broker.directory}. Start one with `pipelines broker start`, "
            "or pass --bootstrap-servers HOST:PORT (or set PIPELINES_BOOTSTRAP_SERVERS)."
        )
    if state.secure and not security.uses_sasl:
        raise PipelinesError(
            f"the local broker in {broker.directory} is secured (TLS, SCRAM, ACLs) and this command has no "
            'credentials: run `eval "$(pipelines broker env)"` (or `--principal producer` for the '
            "generators) and use --profile secure"
        )
    use_security(state.bootstrap_servers, security)
    check_reachable(state.bootstrap_servers)
    return state.bootstrap_servers
