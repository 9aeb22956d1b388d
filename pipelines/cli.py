"""The `pipelines` command.

Every command takes `--profile` (a file in conf/) and, where it talks to Kafka,
`--bootstrap-servers` (default: the profile's, where "local" means the broker that
`pipelines broker start` runs). Errors print one clear line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from confluent_kafka import KafkaException

from pipelines import versions
from pipelines.commands.broker import broker_app
from pipelines.commands.cluster import cluster_app
from pipelines.commands.common import ProfileOpt, err, settings_for
from pipelines.commands.consume import consume_app
from pipelines.commands.dashboard import dashboard_app
from pipelines.commands.generate import generate_app
from pipelines.commands.groups import groups_app
from pipelines.commands.process import process_app
from pipelines.commands.status import status_app
from pipelines.commands.topics import topics_app
from pipelines.errors import PipelinesError
from pipelines.local import jvm

app = typer.Typer(
    help="Real-time pipelines on Apache Kafka and Spark Structured Streaming with Delta Lake.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(broker_app, name="broker")
app.add_typer(cluster_app, name="cluster")
app.add_typer(topics_app, name="topics")
app.add_typer(generate_app, name="generate")
app.add_typer(consume_app)
app.add_typer(groups_app, name="groups")
app.add_typer(status_app, name="status")
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(process_app, name="process")
app.add_typer(__import__("pipelines.commands.acls").commands.acls.acls_app, name="acls")
app.add_typer(__import__("pipelines.commands.registry").commands.registry.registry_app, name="registry")
app.add_typer(__import__("pipelines.commands.schemas").commands.schemas.schemas_app, name="schemas")


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
    settings = settings_for(profile)
    jars_dir = settings.resolve_path(settings.paths.jars_dir)
    if resolve:
        for name in jvm.MANIFESTS:
            jvm.resolve(jars_dir, name, force=force, log=lambda m: err.print(m))
        return
    print(",".join(str(p) for p in jvm.spark_jars(jars_dir)))


# -- demo ----------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="sales events to produce")] = 5000,
    value_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="json (default; also $PIPELINES_FORMAT) or avro: the events in Avro (Confluent wire "
            "format) with the local schema registry, started too (and stopped at the end if this run "
            "started it), the contract's schemas registered under <topic>-value; `make run FORMAT=avro`",
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option("--live", help="keep generators and jobs running (a batch every 5 s) for the dashboard"),
    ] = False,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="with --live: sales per second (orders: half as many)")
    ] = 50.0,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=1, help="with --live: seconds to run (default: until Ctrl-C)"),
    ] = None,
    profile: ProfileOpt = "local",
) -> None:
    """Run the whole stack once (what `make run` does): broker, topic, events, Spark job, Delta.

    With --format avro (or PIPELINES_FORMAT=avro) the events are Avro in the Confluent wire format:
    the local schema registry starts too (in $PIPELINES_REGISTRY_DIR, else .pipelines/registry), the
    jobs read Avro with the registered schemas, and the report is the same as in JSON. `make run
    FORMAT=avro` runs it.

    With --live, generators and the revenue and shipments jobs keep running until --duration or
    Ctrl-C, so `pipelines dashboard` (in another terminal) moves (JSON only).
    """
    from pipelines.demo import FORMATS, run_demo, run_live_demo

    if not live and (rate != 50.0 or duration is not None):
        raise PipelinesError(
            "--rate and --duration go with --live: pipelines demo --live --rate N --duration S"
        )
    fmt = value_format or os.environ.get("PIPELINES_FORMAT") or "json"
    if fmt not in FORMATS:
        raise PipelinesError(f"--format must be json or avro, not {fmt!r} (also $PIPELINES_FORMAT)")
    if live and fmt != "json":
        raise PipelinesError(
            "the live demo runs in JSON only: run `pipelines demo --format avro` without --live "
            "(or unset PIPELINES_FORMAT for --live)"
        )
    settings = settings_for(profile)
    if live:
        raise typer.Exit(
            run_live_demo(settings, os.environ, rate=rate, duration_s=duration, verbose=_VERBOSE[0])
        )
    raise typer.Exit(run_demo(settings, os.environ, count, verbose=_VERBOSE[0], value_format=fmt))


_VERBOSE = [False]
"""`pipelines --verbose …`, for commands that start Spark (its log level is set at JVM start)."""


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="more on the terminal: client warnings, Spark's INFO log")
    ] = False,
) -> None:
    _VERBOSE[0] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point of the `pipelines` console script: every failure is one line on stderr and a
    non-zero exit; a traceback only with `--verbose`."""
    try:
        app()
    except PipelinesError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # anything unforeseen: still one line, the traceback on request
        if _VERBOSE[0]:
            raise
        what = exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else str(exc)
        _fail(f"{type(exc).__name__}: {what} (run with --verbose for the traceback)")


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
