"""`pipelines generate orders|sales`: seeded events to Kafka, with late and malformed ones on demand.

    pipelines generate orders --count N [--rate EPS] [--seed S] [--late-fraction F] [--late-by SECONDS]
        [--malformed-fraction F] [--ledger FILE] [--topic T] [--acks all|1|0]
        [--compression lz4|zstd|snappy|gzip|none] [--linger-ms MS] [--batch-size BYTES]
        [--producer-config k=v ...] [--bootstrap-servers B] [--profile P]

The same seed and arguments give the same events, byte for byte (pipelines.generators.events says
what the late and malformed ones look like); `--ledger` writes every event sent with its partition
and offset (pipelines.generators.ledger). A progress bar shows on a terminal only; the summary is
one line on stderr. Producer settings, weakest first: the project's defaults, the profile's
`kafka.producer`, the options `--acks`, `--compression`, `--linger-ms`, `--batch-size`, then
`--producer-config`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, settings_for
from pipelines.errors import PipelinesError

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from pipelines.config import Settings
    from pipelines.generators.events import AvroWriters, GeneratedEvent

generate_app = typer.Typer(help="Produce seeded events to Kafka.", no_args_is_help=True)

CountOpt = Annotated[int, typer.Option("--count", "-n", help="number of events")]
RateOpt = Annotated[
    float | None, typer.Option("--rate", help="events per second, paced evenly (default: unlimited)")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="same seed and arguments, same events")]
LateFractionOpt = Annotated[
    float,
    typer.Option("--late-fraction", help="share of events far behind the stream's event time (0..1)"),
]
LateByOpt = Annotated[
    float, typer.Option("--late-by", help="how far behind the stream late events are, in seconds (+ <1 s)")
]
MalformedFractionOpt = Annotated[
    float,
    typer.Option("--malformed-fraction", help="share of malformed events, each marked with a reason (0..1)"),
]
LedgerOpt = Annotated[
    Path | None,
    typer.Option("--ledger", help="write every event sent, with its partition and offset, here (JSON lines)"),
]
TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="topic to write (default: the profile's topic for the type)")
]
AcksOpt = Annotated[
    str | None,
    typer.Option("--acks", help="all (default), 1 or 0; anything but all turns idempotence off"),
]
CompressionOpt = Annotated[
    str | None, typer.Option("--compression", help="lz4 (default), zstd, snappy, gzip or none")
]
LingerOpt = Annotated[int | None, typer.Option("--linger-ms", help="how long a batch may wait to fill")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="largest batch, in bytes")]
ProducerConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--producer-config", "-X", help="any librdkafka producer property k=v (repeatable)"),
]

FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="json (default) or avro: Confluent wire format with the topic's schema from the registry "
        "(default: $PIPELINES_FORMAT, else json)",
    ),
]
RegistryUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--registry-url",
        help="with --format avro: Confluent-compatible schema registry API (default: "
        "$PIPELINES_SCHEMA_REGISTRY_URL, else the local registry)",
    ),
]
SchemaOpt = Annotated[
    Path | None,
    typer.Option(
        "--schema",
        help="with --format avro: write with this .avsc (a later version of the contract's), registered "
        "under <topic>-value first; one the registry refuses stops the run before any event",
    ),
]
FORMATS = ("json", "avro")
FORMAT_ENV = "PIPELINES_FORMAT"

HeartbeatOpt = Annotated[
    float | None,
    typer.Option(
        "--heartbeat",
        help="after the events, send a heartbeat to every partition this many seconds of event time "
        "after the latest event, so windowed jobs close their last windows (sales only)",
    ),
]

_ACKS = ("all", "-1", "1", "0")


def _command(event_type: str) -> Callable[..., None]:
    def command(
        count: CountOpt = 1000,
        rate: RateOpt = None,
        seed: SeedOpt = 42,
        late_fraction: LateFractionOpt = 0.0,
        late_by: LateByOpt = 300.0,
        malformed_fraction: MalformedFractionOpt = 0.0,
        ledger: LedgerOpt = None,
        topic: TopicOpt = None,
        acks: AcksOpt = None,
        compression: CompressionOpt = None,
        linger_ms: LingerOpt = None,
        batch_size: BatchSizeOpt = None,
        producer_config: ProducerConfigOpt = None,
        heartbeat: HeartbeatOpt = None,
        value_format: FormatOpt = None,
        registry_url: RegistryUrlOpt = None,
        schema: SchemaOpt = None,
        bootstrap: BootstrapOpt = None,
        profile: ProfileOpt = "local",
    ) -> None:
        generate(
            event_type,
            count=count,
            rate=rate,
            seed=seed,
            late_fraction=late_fraction,
            late_by_s=late_by,
            malformed_fraction=malformed_fraction,
            ledger=ledger,
            topic=topic,
            producer_conf=producer_overrides(acks, compression, linger_ms, batch_size, producer_config),
            heartbeat_after_s=heartbeat,
            bootstrap=bootstrap,
            profile=profile,
            value_format=value_format or os.environ.get(FORMAT_ENV) or "json",
            registry_url=registry_url,
            schema=schema,
        )

    command.__doc__ = (
        f"Produce seeded `{event_type}` events (murmur2 partitioning, idempotent, acks=all by default).\n\n"
        "Late events are --late-by seconds (default 300) behind the stream's event time; malformed "
        "ones carry a reason code in the ledger (invalid_json, missing_field:<field>, "
        "bad_type:<field>, negative_amount, bad_timestamp, empty_value, invalid_utf8; with --format "
        "avro: avro_truncated, avro_bad_magic_byte, avro_unknown_schema_id, avro_unreadable_schema, "
        "negative_amount, empty_value)."
    )
    return command


generate_app.command("orders")(_command("orders"))
generate_app.command("sales")(_command("sales"))


def producer_overrides(
    acks: str | None,
    compression: str | None,
    linger_ms: int | None,
    batch_size: int | None,
    producer_config: list[str] | None,
) -> dict[str, str | int | bool]:
    """The producer properties the options ask for (PipelinesError for a bad one)."""
    from pipelines.kafka.producer import COMPRESSION_TYPES

    conf: dict[str, str | int | bool] = {}
    if acks is not None:
        if acks not in _ACKS:
            raise PipelinesError(f"--acks must be all, 1 or 0, not {acks!r}")
        conf["acks"] = acks
        # The idempotent producer needs every in-sync replica's acknowledgement.
        conf["enable.idempotence"] = acks in ("all", "-1")
    if compression is not None:
        if compression not in COMPRESSION_TYPES:
            raise PipelinesError(
                f"--compression must be one of {', '.join(COMPRESSION_TYPES)}, not {compression!r}"
            )
        conf["compression.type"] = compression
    if linger_ms is not None:
        if linger_ms < 0:
            raise PipelinesError(f"--linger-ms must not be negative, not {linger_ms}")
        conf["linger.ms"] = linger_ms
    if batch_size is not None:
        if batch_size < 1:
            raise PipelinesError(f"--batch-size must be positive, not {batch_size}")
        conf["batch.size"] = batch_size
    for item in producer_config or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelinesError(f"--producer-config {item!r} is not key=value")
        conf[key.strip()] = value.strip()
    return conf


def generate(
    event_type: str,
    *,
    count: int,
    seed: int,
    rate: float | None = None,
    late_fraction: float = 0.0,
    late_by_s: float = 300.0,
    malformed_fraction: float = 0.0,
    ledger: Path | None = None,
    topic: str | None = None,
    producer_conf: dict[str, str | int | bool] | None = None,
    heartbeat_after_s: float | None = None,
    bootstrap: str | None = None,
    profile: str = "local",
    value_format: str = "json",
    registry_url: str | None = None,
    schema: Path | None = None,
) -> None:
    """What `pipelines generate <event_type>` does: check the arguments (PipelinesError with one line
    naming the option), check the topic exists, send the events, write the ledger, print the
    summary; PipelinesError when some event was not acknowledged."""
    from confluent_kafka import KafkaException

    from pipelines.generators.events import DISORDER_MS, fault_counts, generate_events
    from pipelines.generators.publish import publish_events
    from pipelines.kafka.producer import make_producer

    if count < 0:
        raise PipelinesError(f"--count must not be negative, not {count}")
    if rate is not None and not rate > 0:
        raise PipelinesError(f"--rate must be a positive number of events per second, not {rate:g}")
    for option, fraction in (
        ("--late-fraction", late_fraction),
        ("--malformed-fraction", malformed_fraction),
    ):
        if not 0.0 <= fraction <= 1.0:
            raise PipelinesError(f"{option} must be between 0 and 1, not {fraction:g}")
    if late_fraction + malformed_fraction > 1.0:
        raise PipelinesError(
            f"--late-fraction and --malformed-fraction add up to {late_fraction + malformed_fraction:g}; "
            "at most 1 (an event is late or malformed, not both)"
        )
    if late_by_s * 1000 <= DISORDER_MS:
        raise PipelinesError(
            f"--late-by must be more than the normal disorder of {DISORDER_MS / 1000:g} s, not {late_by_s:g}"
        )
    if heartbeat_after_s is not None and (event_type != "sales" or heartbeat_after_s <= 0):
        raise PipelinesError("--heartbeat takes a positive number of seconds, and only for sales")
    if ledger is not None and not ledger.parent.is_dir():
        raise PipelinesError(f"--ledger {ledger}: the folder {ledger.parent} does not exist")
    if value_format not in FORMATS:
        raise PipelinesError(f"--format must be json or avro, not {value_format!r} (also ${FORMAT_ENV})")
    if schema is not None and value_format != "avro":
        raise PipelinesError("--schema is the Avro writer schema: use it with --format avro")

    settings = settings_for(profile)
    if topic is None:
        topic = settings.topics[event_type].name if event_type in settings.topics else event_type
    avro = (
        _avro_writers(settings, event_type, topic, registry_url, schema) if value_format == "avro" else None
    )
    try:
        events = generate_events(
            event_type,
            count,
            seed=seed,
            late_fraction=late_fraction,
            malformed_fraction=malformed_fraction,
            late_by_s=late_by_s,
            avro=avro[0] if avro else None,
        )
    except ValueError as exc:
        raise PipelinesError(str(exc)) from None
    late, malformed = fault_counts(count, late_fraction, malformed_fraction)
    latest: list[datetime | None] = [None]
    if heartbeat_after_s is not None:
        events = _tracking_latest(events, latest)

    servers = bootstrap_servers(settings, bootstrap)
    # Without a ledger only the counts matter: the producer reports failures alone, which spares a
    # Python call per record (acknowledgements are counted after the flush, publish_events). With
    # one, every acknowledgement is reported: the ledger records its partition and offset. Set here
    # after `-X`, whose value for it would break either way of counting.
    errors_only = ledger is None
    producer = make_producer(
        servers,
        {
            **settings.kafka.producer,
            **(producer_conf or {}),
            "delivery.report.only.error": errors_only,
        },
    )
    _require_topic(producer, servers, topic)

    err.print(
        f"producing {count:,} {event_type} to {topic!r} (seed {seed}, late {late:,}, "
        f"malformed {malformed:,}{f', {rate:g}/s' if rate else ''}"
        f"{f', Avro schema id {avro[1]}' if avro else ''})",
        highlight=False,
        soft_wrap=True,
    )
    with Progress(
        TextColumn(f"{event_type}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("produce", total=count)
        last_update = 0.0

        def on_progress(sent: int) -> None:
            # At full speed this runs 100,000 times a second: update the bar ten times a second.
            nonlocal last_update
            now = time.monotonic()
            if now - last_update >= 0.1 or sent == count:
                progress.update(task, completed=sent)
                last_update = now

        try:
            report = publish_events(
                producer,
                topic,
                events,
                ledger=ledger,
                rate=rate,
                on_progress=on_progress if err.is_terminal else None,
                errors_only=errors_only,
            )
        except KafkaException as exc:
            raise PipelinesError(f"producing to {topic!r} failed: {exc.args[0].str()}") from None
        except OSError as exc:
            if ledger is None:
                raise
            raise PipelinesError(f"cannot write the ledger {ledger}: {exc.strerror or exc}") from None
        except KeyboardInterrupt:
            if ledger is not None:
                err.print(f"stopped; every event sent so far is in the ledger {ledger}", soft_wrap=True)
            raise
    err.print(report.summary() + (f"; ledger {ledger}" if ledger else ""), highlight=False, soft_wrap=True)
    if heartbeat_after_s is not None and latest[0] is not None:
        from pipelines.generators.common import format_timestamp
        from pipelines.generators.heartbeat import send_heartbeats

        at = latest[0] + timedelta(seconds=heartbeat_after_s)
        value = avro[2]({"heartbeat": True, "timestamp": format_timestamp(at)}) if avro else None
        sent = send_heartbeats(producer, topic, at, value=value)
        err.print(f"sent {sent} heartbeat(s) at event time {at.isoformat()}", highlight=False, soft_wrap=True)
    failed = report.produce.failed
    if failed:
        raise PipelinesError(
            f"{len(failed):,} events were not acknowledged (first: {failed[0][1]})"
            + (f"; the ledger marks them with an error: {ledger}" if ledger else "")
        )


def _tracking_latest(
    events: Iterator[GeneratedEvent], latest: list[datetime | None]
) -> Iterator[GeneratedEvent]:
    """Pass events through, keeping in `latest[0]` the latest event time of the valid ones."""
    for event in events:
        if event.kind == "valid":
            at = event.event_time or datetime.fromisoformat(
                json.loads(event.value)["timestamp"].replace("Z", "+00:00")
            )
            if latest[0] is None or at > latest[0]:
                latest[0] = at
        yield event


def _avro_writers(
    settings: Settings, event_type: str, topic: str, url: str | None, schema: Path | None
) -> tuple[AvroWriters, int, Callable[[dict[str, object]], bytes]]:
    """(the generators' Avro writers, the topic's schema id, the encoder of one document): the
    topic's schema (`schema`, else the contract's) and the foreign one registered first, so a
    schema the registry refuses stops the run in one line before any event is sent."""
    from pipelines.commands.registry import registry_url
    from pipelines.generators.avro import avro_writers
    from pipelines.registry.schemas import SchemaStore, load_schema

    store = SchemaStore(registry_url(settings, url))
    made = avro_writers(store, event_type, topic, load_schema(schema) if schema else None)
    return made.writers, made.schema_id, made.encode


def _require_topic(producer: Producer, servers: str, topic: str) -> None:
    """Fail at once, in one line, when Kafka is unreachable or the topic is missing, instead of
    letting every event time out minutes later (brokers of this project never create topics)."""
    from confluent_kafka import KafkaException

    try:
        # All topics, not just this one: a metadata request naming a topic may auto-create it.
        metadata = producer.list_topics(timeout=15)
    except KafkaException as exc:
        raise PipelinesError(f"cannot reach Kafka at {servers}: {exc.args[0].str()}") from None
    if topic not in metadata.topics:
        raise PipelinesError(
            f"topic {topic!r} does not exist on {servers}; create it with "
            f"`pipelines topics create {topic} --partitions 3`"
        )
