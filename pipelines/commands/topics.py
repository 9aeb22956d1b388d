"""`pipelines topics create|list|describe|alter|delete|plan`: topic administration."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, out, settings_for
from pipelines.errors import PipelinesError
from pipelines.kafka import admin

topics_app = typer.Typer(
    help="Create, list, describe, alter, delete topics, and plan their partition count.",
    no_args_is_help=True,
)


def _parse_configs(items: list[str] | None) -> dict[str, str]:
    conf = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelinesError(f"--config {item!r} is not key=value (for example retention.ms=86400000)")
        conf[key] = value
    return conf


@topics_app.command("create")
def topics_create(
    name: str,
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="partition count")] = 3,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor",
            "-r",
            min=1,
            help="copies of each partition (default: the cluster's default.replication.factor; "
            "1 on the embedded broker, 3 on the local cluster)",
        ),
    ] = None,
    config: Annotated[
        list[str] | None, typer.Option("--config", help="topic config k=v (repeatable)")
    ] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="succeed if the topic exists")] = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Create a topic and wait until every partition has a leader."""
    servers = bootstrap_servers(settings_for(profile), bootstrap)
    created = admin.create_topic(
        servers,
        name,
        partitions=partitions,
        replication_factor=replication_factor,
        config=_parse_configs(config),
        exist_ok=exist_ok,
    )
    err.print(f"topic {name} {'created' if created else 'already exists'}")


@topics_app.command("list")
def topics_list(
    internal: Annotated[bool, typer.Option("--internal", help="include __ internal topics")] = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """List topics with their partition counts."""
    topics = admin.list_topics(bootstrap_servers(settings_for(profile), bootstrap), internal=internal)
    table = Table("topic", "partitions")
    for name, count in topics.items():
        table.add_row(name, str(count))
    out.print(table)


@topics_app.command("describe")
def topics_describe(name: str, bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """Each partition's leader, replicas and in-sync replicas, and the topic's notable configs."""
    info = admin.describe_topic(bootstrap_servers(settings_for(profile), bootstrap), name)
    under = [p.partition for p in info.partitions if p.under_replicated]
    out.print(
        f"[bold]{info.name}[/]  partitions {len(info.partitions)}  replication factor "
        f"{info.replication_factor}" + (f"  [red]under-replicated: {under}[/]" if under else "")
    )
    table = Table("partition", "leader", "replicas", "in-sync replicas")
    for p in info.partitions:
        isr = ",".join(map(str, p.isr))
        table.add_row(
            str(p.partition),
            str(p.leader) if p.leader is not None else "[red]none[/]",
            ",".join(map(str, p.replicas)),
            f"[red]{isr}[/]" if p.under_replicated else isr,
        )
    out.print(table)
    configs = Table("config", "value", "set on the topic")
    for key, value in info.configs.items():
        configs.add_row(key, value, "yes" if key in info.overridden else "")
    out.print(configs)


@topics_app.command("alter")
def topics_alter(
    name: str,
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="new partition count")],
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Add partitions to a topic (Kafka can add partitions, never remove them)."""
    before = admin.add_partitions(bootstrap_servers(settings_for(profile), bootstrap), name, partitions)
    err.print(
        f"topic {name}: {before} -> {partitions} partitions. Keys now map to partitions by murmur2 modulo "
        f"{partitions}: per-key ordering holds for records produced from now on."
    )


@topics_app.command("delete")
def topics_delete(name: str, bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """Delete a topic and its data."""
    admin.delete_topic(bootstrap_servers(settings_for(profile), bootstrap), name)
    err.print(f"topic {name} deleted")


@topics_app.command("plan")
def topics_plan(
    target_mb_s: Annotated[
        float, typer.Option("--target-mb-s", help="throughput the topic must carry, MB/s")
    ],
    consumers: Annotated[int, typer.Option("--consumers", min=1, help="consumers expected in a group")] = 3,
    growth: Annotated[
        float, typer.Option("--growth", help="expected growth factor (e.g. 2 = doubles)")
    ] = 2.0,
    per_partition_mb_s: Annotated[
        float | None,
        typer.Option("--per-partition-mb-s", help="what one partition sustains; measured if not given"),
    ] = None,
    brokers: Annotated[
        int | None, typer.Option("--brokers", help="broker count (default: the cluster's)")
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Recommend a partition count for a topic, and say why."""
    from pipelines.kafka.partitioning import measure_partition_throughput, plan_partitions

    if per_partition_mb_s is None or brokers is None:
        servers = bootstrap_servers(settings_for(profile), bootstrap)
        if brokers is None:
            brokers = len(admin.admin_client(servers).list_topics(timeout=15).brokers)
        if per_partition_mb_s is None:
            with err.status("measuring one partition on this broker (50,000 records of 1 KiB) ..."):
                m = measure_partition_throughput(servers)
            err.print(
                f"measured: produce {m.produce_mb_s:.1f} MB/s, consume {m.consume_mb_s:.1f} MB/s "
                f"-> one partition sustains {m.per_partition_mb_s:.1f} MB/s here"
            )
            per_partition_mb_s = m.per_partition_mb_s
    plan = plan_partitions(
        target_mb_s=target_mb_s,
        per_partition_mb_s=per_partition_mb_s,
        consumers=consumers,
        growth=growth,
        brokers=brokers,
    )
    for reason in plan.reasons:
        out.print(f"- {reason}")
    out.print(f"[bold]{plan.recommended}[/]")
