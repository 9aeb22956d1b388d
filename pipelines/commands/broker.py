"""`pipelines broker start|stop|status|env`: the local Apache Kafka broker (KRaft).

`start --secure` (or `--profile secure`) runs it with TLS, SCRAM-SHA-512 and ACLs; `env` prints the
`export PIPELINES_KAFKA__...` lines a client needs to reach it as one of its principals.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from pipelines import versions
from pipelines.commands.cluster import local_cluster
from pipelines.commands.common import ProfileOpt, broker_dir, err, local_broker, local_principal, settings_for
from pipelines.errors import PipelinesError
from pipelines.local.cluster import LocalCluster, is_cluster_dir

broker_app = typer.Typer(
    help="Run a real Apache Kafka broker (KRaft), or a three-node cluster, on 127.0.0.1.",
    no_args_is_help=True,
)

DirOpt = Annotated[Path | None, typer.Option("--dir", help="broker folder (default: the profile's)")]


@broker_app.command("start")
def broker_start(
    brokers: Annotated[
        int, typer.Option("--brokers", help="1: a single broker; 3: a replicated three-node cluster")
    ] = 1,
    directory: DirOpt = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="settings profile (default: local; cluster with --brokers 3; secure with --secure)",
        ),
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="TLS + SCRAM-SHA-512 + ACLs: certificates, users and least-privilege ACLs are created "
            "on the first start (see `pipelines broker env`)",
        ),
    ] = False,
) -> None:
    """Start a local broker (or, with --brokers 3, a three-node cluster) in the background and
    print its bootstrap servers.

    A second start on the same folder reports the running broker instead of starting another.
    """
    if brokers not in (1, 3):
        raise PipelinesError("--brokers takes 1 (a single broker) or 3 (a replicated three-node cluster)")
    if brokers == 3:
        if secure:
            raise PipelinesError("--secure is for the single broker (--brokers 1)")
        _cluster_start(directory, profile or "cluster")
        return
    settings = settings_for(profile or ("secure" if secure else "local"))
    folder = broker_dir(settings, directory)
    if is_cluster_dir(folder):
        raise PipelinesError(
            f"{folder} holds a 3-broker cluster: start it with --brokers 3, or give the single broker "
            "another --dir"
        )
    broker = local_broker(settings, directory)
    broker.secure = broker.secure or secure
    kind = "secured Kafka" if broker.secure else "Kafka"
    with err.status(f"starting {kind} {versions.KAFKA_BROKER} (KRaft) in {broker.directory} ..."):
        state, started = broker.start()
        if broker.secure:
            _ensure_acls(broker.directory, state.bootstrap_servers)
    if started:
        err.print(f"[green]broker started[/] (pid {state.pid}); logs in {broker.log_dir}")
    else:
        err.print(f"[yellow]a broker already runs[/] from {broker.directory} (pid {state.pid})")
    if broker.secure:
        env_cmd = "pipelines broker env" + (
            "" if directory is None else f" --dir {shlex.quote(str(directory))}"
        )
        err.print(
            "TLS + SCRAM-SHA-512 + ACLs; passwords in "
            f"{broker.credentials_file} (mode 0600). Clients take credentials from the environment:\n"
            f'  eval "$({env_cmd})"                      # the pipeline principal (jobs, processor)\n'
            f'  eval "$({env_cmd} --principal producer)" # the generators',
            highlight=False,
        )
    print(state.bootstrap_servers)


def _ensure_acls(directory: Path, servers: str) -> None:
    """The least-privilege ACLs of the producer and pipeline principals (idempotent); their users
    were created with the storage."""
    from pipelines.kafka.acls import setup_least_privilege
    from pipelines.local.security import ADMIN, principal_security

    setup_least_privilege(servers, {}, security=principal_security(directory, ADMIN))


@broker_app.command("env")
def broker_env(
    principal: Annotated[
        str, typer.Option("--principal", help="pipeline (jobs, processor), producer (generators) or admin")
    ] = "pipeline",
    directory: DirOpt = None,
    profile: ProfileOpt = "secure",
) -> None:
    """Print the `export PIPELINES_KAFKA__...` lines that connect a client to the local secured
    broker as `principal`: eval "$(pipelines broker env)".

    The password comes from the broker folder's 0600 credentials file and is printed only here.
    """
    servers, sec = local_principal(
        settings_for(profile), directory, principal, "; start one with `pipelines broker start --secure`"
    )
    assert sec.password is not None
    values = {
        "PIPELINES_BOOTSTRAP_SERVERS": servers,
        "PIPELINES_KAFKA__SECURITY_PROTOCOL": sec.protocol,
        "PIPELINES_KAFKA__SASL_MECHANISM": sec.mechanism,
        "PIPELINES_KAFKA__SASL_USERNAME": principal,
        "PIPELINES_KAFKA__SASL_PASSWORD": sec.password.get_secret_value(),
        "PIPELINES_KAFKA__SSL_CA_LOCATION": str(sec.ca_location),
    }
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")


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


def _cluster_in(directory: Path | None, profile: str) -> LocalCluster | None:
    """The 3-broker cluster in the folder (`directory`, else the profile's); None when the folder
    holds a single broker, or nothing yet."""
    settings = settings_for(profile)
    folder = broker_dir(settings, directory)
    return local_cluster(settings, folder) if is_cluster_dir(folder) else None


@broker_app.command("stop")
def broker_stop(
    directory: DirOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Stop the local broker (or cluster) running from the folder (its data stays for the next start)."""
    cluster = _cluster_in(directory, profile)
    target = cluster or local_broker(settings_for(profile), directory)
    with err.status(f"stopping the {'3-broker cluster' if cluster else 'broker'} ..."):
        stopped = target.stop()
    err.print(f"{target.KIND} stopped" if stopped else f"no {target.KIND} was running in {target.directory}")


@broker_app.command("status")
def broker_status(
    directory: DirOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Say whether a broker (or cluster) runs from the folder, and where."""
    cluster = _cluster_in(directory, profile)
    if cluster is not None:
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
