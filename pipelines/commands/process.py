"""`pipelines process orders-to-shipments`: the consume-transform-produce processor on confluent-kafka.

    pipelines process orders-to-shipments --guarantee at-most-once|at-least-once|exactly-once
        [--source-topic orders] [--sink-topic shipments] [--group G] [--instance-id ID]
        [--transactional-id T] [--commit-interval S] [--batch-size N] [--max-records N]
        [--idle-timeout-s S] [--bootstrap-servers B] [--profile P]

What each guarantee means across a crash, and how the processor keeps it, is in
pipelines.processor.processor. The source, sink and `<source>.dlq` topics must exist. The profile's
`kafka.producer` settings, then its `processor.producer` settings, apply to the processor's producer;
`processor.commit_interval_s` and `processor.max_batch` are the defaults of `--commit-interval` and
`--batch-size`. SIGTERM and Ctrl-C finish the current unit (commit or transaction), then stop. One
summary line goes to stderr at the end; a fenced instance (a newer one took its transactional.id or
instance id) prints it too, then fails with one line that says so.
"""

from __future__ import annotations

import gc
import os
import signal
from typing import Annotated

import typer

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, settings_for
from pipelines.contracts import ORDERS_TOPIC, SHIPMENTS_TOPIC
from pipelines.errors import PipelinesError

process_app = typer.Typer(help="Consume-transform-produce processors on Kafka.", no_args_is_help=True)

GUARANTEES = ("at-most-once", "at-least-once", "exactly-once")


@process_app.command("orders-to-shipments")
def orders_to_shipments(
    guarantee: Annotated[
        str,
        typer.Option(
            "--guarantee",
            help="at-most-once (commit, then write), at-least-once (write, wait for the acks, then "
            "commit) or exactly-once (transactions; read the sink with read_committed)",
        ),
    ] = "exactly-once",
    source_topic: Annotated[
        str, typer.Option("--source-topic", help="topic of orders to read")
    ] = ORDERS_TOPIC,
    sink_topic: Annotated[
        str, typer.Option("--sink-topic", help="topic to write shipments to")
    ] = SHIPMENTS_TOPIC,
    group: Annotated[
        str, typer.Option("--group", "-g", help="consumer group (holds the committed offsets)")
    ] = "orders-to-shipments",
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            help="static group member id: a restarted instance takes its partitions back at once "
            "(each running instance needs its own)",
        ),
    ] = None,
    transactional_id: Annotated[
        str | None,
        typer.Option(
            "--transactional-id",
            help="exactly-once: the producer's transactional.id (default: <group>-shipper[-<instance>]); "
            "keep it across restarts so a restarted instance fences the old one",
        ),
    ] = None,
    commit_interval: Annotated[
        float | None,
        typer.Option(
            "--commit-interval",
            help="seconds between commits: at-least-once commits the acknowledged offsets, exactly-once "
            "commits its transaction (output latency ~ half of it), at-most-once collects a batch "
            "(default: the profile's processor.commit_interval_s, 0.1)",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="records per commit or transaction, at most (default: the profile's processor.max_batch, "
            "5000)",
        ),
    ] = None,
    max_records: Annotated[
        int | None, typer.Option("--max-records", help="stop after this many records (default: never)")
    ] = None,
    idle_timeout_s: Annotated[
        float | None,
        typer.Option("--idle-timeout-s", help="stop when no record arrived for this many seconds"),
    ] = None,
    value_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="json (default) or avro: orders and shipments in the Confluent wire format, schemas "
            "from the registry (default: $PIPELINES_FORMAT, else json)",
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry-url",
            help="with --format avro: Confluent-compatible schema registry API (default: "
            "$PIPELINES_SCHEMA_REGISTRY_URL, else the local registry)",
        ),
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Turn orders into shipments (key, headers and event time kept); bad orders go to <source>.dlq."""
    from pipelines.processor.processor import Guarantee, Processor, ProcessorConfig

    if guarantee not in GUARANTEES:
        raise PipelinesError(f"--guarantee must be one of {', '.join(GUARANTEES)}, not {guarantee!r}")
    if max_records is not None and max_records < 1:
        raise PipelinesError(f"--max-records must be at least 1, not {max_records}")
    if idle_timeout_s is not None and idle_timeout_s <= 0:
        raise PipelinesError(f"--idle-timeout-s must be positive, not {idle_timeout_s:g}")
    settings = settings_for(profile)
    value_format = value_format or os.environ.get("PIPELINES_FORMAT") or "json"
    if value_format not in ("json", "avro"):
        raise PipelinesError(f"--format must be json or avro, not {value_format!r} (also $PIPELINES_FORMAT)")
    transform = None
    if value_format == "avro":
        from pipelines.commands.registry import registry_url as find_registry
        from pipelines.processor.avro import AvroShipments

        transform = AvroShipments(find_registry(settings, registry_url), sink_topic)
    config = ProcessorConfig(
        bootstrap_servers=bootstrap_servers(settings, bootstrap),
        guarantee=Guarantee(guarantee),
        source_topic=source_topic,
        sink_topic=sink_topic,
        group_id=group,
        instance_id=instance_id,
        transactional_id=transactional_id,
        batch_size=settings.processor.max_batch if batch_size is None else batch_size,
        commit_interval_s=settings.processor.commit_interval_s
        if commit_interval is None
        else commit_interval,
        producer_config={**settings.kafka.producer, **settings.processor.producer},
        replication_factor=settings.kafka.replication_factor,
        on_topic_created=lambda message: err.print(message, highlight=False),
        transform=transform,
    )
    processor = Processor(config)

    def stop(_signum: int, _frame: object) -> None:
        # Finish the batch in hand instead of dying in the middle of it (or of a transaction); a
        # second Ctrl-C interrupts at once.
        processor.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    err.print(
        f"{guarantee}: {source_topic} -> {sink_topic} (dead letters: {config.dead_letter_topic}), "
        f"group {group}"
        + (
            f", transactional.id {config.effective_transactional_id}"
            if config.effective_transactional_id
            else ""
        ),
        highlight=False,
    )
    # Everything loaded so far (the CLI, rich, confluent-kafka: ~80,000 objects) lives as long as
    # the process. Frozen, a full collection no longer walks it while a record is on its way
    # through: 30-38 ms per full collection before, measured on this project's 2-core machine.
    gc.collect()
    gc.freeze()
    result = processor.run(max_records=max_records, idle_timeout_s=idle_timeout_s)
    err.print(result.summary(), highlight=False)
    if result.stopped == "fenced":
        raise PipelinesError(
            "fenced: another instance with the same transactional.id or instance id took over, so this "
            "one stopped without committing anything more (do not restart it while the other runs). "
            f"Cause: {result.detail}"
        )
