"""`pipelines dashboard`: the live page (Streamlit) and Prometheus `/metrics`, in one process.

The page runs in this process (`streamlit.web.bootstrap`), next to the Monitor that reads the
Delta table, the progress files, the checkpoints and Kafka, and prometheus-client's `/metrics`
server: one Snapshot serves both. Both listen on 127.0.0.1 unless `--address` says otherwise
(a container that publishes its ports needs 0.0.0.0 inside it).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.commands.common import (
    BootstrapOpt,
    ProfileOpt,
    client_security,
    err,
    local_broker,
    settings_for,
)
from pipelines.config import LOCAL_BROKER, Settings
from pipelines.contracts import ORDERS_TOPIC, REVENUE_TOPIC, SALES_TOPIC, dead_letter_topic
from pipelines.errors import PipelinesError

if TYPE_CHECKING:
    from pipelines.dashboard.sources import DashboardConfig

dashboard_app = typer.Typer(help="The live dashboard (Streamlit) and Prometheus /metrics.")

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
DEFAULT_PORT, DEFAULT_METRICS_PORT = 8501, 9464


def dashboard_config(
    settings: Settings,
    *,
    table: Path | None = None,
    checkpoints: list[Path] | None = None,
    updates_table: Path | None = None,
    updates_topic: str | None = REVENUE_TOPIC,
    sales_dlq: str | None = None,
    orders_dlq: str | None = None,
) -> DashboardConfig:
    """The dashboard's sources for a profile: its Delta table, checkpoints and topics."""
    from pipelines.dashboard.sources import DashboardConfig

    data_dir = settings.resolve_path(settings.paths.data_dir)
    return DashboardConfig(
        table=table or data_dir / "revenue_per_minute",
        checkpoints=tuple(checkpoints or [settings.resolve_path(settings.paths.checkpoint_dir)]),
        updates_topic=updates_topic or None,
        updates_table=updates_table,
        dead_letter_topics={
            "revenue_per_minute": sales_dlq or dead_letter_topic(settings.topics[SALES_TOPIC].name),
            "orders_to_shipments": orders_dlq or dead_letter_topic(ORDERS_TOPIC),
        },
    )


def server_finder(settings: Settings, override: str | None) -> Callable[[], str | None]:
    """A function returning the bootstrap servers to read, or None while no local broker runs
    (the profile's "local" means the broker `pipelines broker start` runs; asked again later)."""
    from pipelines.security import use_security

    security = client_security(settings)
    servers = override or settings.kafka.bootstrap_servers

    def find() -> str | None:
        if servers != LOCAL_BROKER:
            use_security(servers, security)
            return servers
        state = local_broker(settings, None).running()
        if state is None:
            return None
        use_security(state.bootstrap_servers, security)
        return state.bootstrap_servers

    return find


def _check_free(address: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise PipelinesError(
                f"cannot listen on {address}:{port} ({exc.strerror}): pass {option} with a free port"
            ) from None


@dashboard_app.callback(invoke_without_command=True)
def dashboard(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port of the page")] = DEFAULT_PORT,
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", min=0, max=65535, help="port of Prometheus /metrics (0: none)")
    ] = DEFAULT_METRICS_PORT,
    address: Annotated[
        str, typer.Option("--address", help="address both listen on (0.0.0.0 only inside a container)")
    ] = "127.0.0.1",
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.5, help="seconds between updates of the page")
    ] = 3.0,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="the Delta table revenue_per_minute (default: the profile's)"),
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoints", help="folder(s) of query checkpoints and progress files (default: the profile's)"
        ),
    ] = None,
    updates_table: Annotated[
        Path | None,
        typer.Option("--updates-table", help="an update-mode (--mode update) revenue table: open windows"),
    ] = None,
    updates_topic: Annotated[
        str, typer.Option("--updates-topic", help="the revenue job's Kafka sink: open windows ('' : none)")
    ] = REVENUE_TOPIC,
    sales_dlq: Annotated[
        str | None,
        typer.Option("--sales-dlq", help="the revenue job's dead-letter topic (default: sales.dlq)"),
    ] = None,
    orders_dlq: Annotated[
        str | None,
        typer.Option("--orders-dlq", help="the shipments job's dead-letter topic (default: orders.dlq)"),
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Serve the live dashboard at http://127.0.0.1:8501 and Prometheus metrics at
    http://127.0.0.1:9464/metrics until Ctrl-C.

    Revenue per category per minute from the Delta table (open windows from the revenue-per-minute
    topic, marked not final); per job: rates, batch duration, watermark and its delay, lag per
    partition from the checkpoints, late and dead-lettered counts with their reasons, the
    reconciliation; the shipments path. Run it beside `pipelines demo --live`, or after
    `make run` (with `pipelines broker start` for lag and dead-letter reasons).
    """
    from pipelines.dashboard import runtime
    from pipelines.dashboard.sources import Monitor

    settings = settings_for(profile)
    config = dashboard_config(
        settings,
        table=table,
        checkpoints=checkpoints,
        updates_table=updates_table,
        updates_topic=updates_topic,
        sales_dlq=sales_dlq,
        orders_dlq=orders_dlq,
    )
    _check_free(address, port, "--port")
    if metrics_port:
        _check_free(address, metrics_port, "--metrics-port")
    monitor = Monitor(config, server_finder(settings, bootstrap))
    runtime.configure(monitor, refresh)
    monitor.start(refresh)
    metrics = None
    try:
        if metrics_port:
            from pipelines.metrics import serve_metrics

            metrics = serve_metrics(monitor.snapshot, metrics_port, address)
        err.print(
            f"dashboard: http://{address}:{port}"
            + (f"   metrics: http://{address}:{metrics_port}/metrics" if metrics_port else "")
            + "   (Ctrl-C stops)",
            highlight=False,
        )
        _run_streamlit(address, port)
    finally:
        if metrics is not None:
            metrics.shutdown()
        monitor.close()


def _run_streamlit(address: str, port: int) -> None:
    """Streamlit's server on `address:port` running APP in this process, until Ctrl-C or SIGTERM.
    Headless, no usage statistics (no network), no file watcher, no developer menu."""
    from streamlit import config as st_config
    from streamlit.web import bootstrap

    flags = {
        "server.address": address,
        "server.port": port,
        "server.headless": True,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "browser.serverAddress": address,
        "browser.serverPort": port,
        "global.developmentMode": False,
        "runner.magicEnabled": False,
        "client.toolbarMode": "viewer",
        "client.showErrorDetails": "none",
        "logger.level": "error",
    }
    st_config._main_script_path = str(APP)
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [], flags)
