"""`pipelines topics ...`: topic administration through the AdminClient."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, out, settings_for
from pipelines.errors import PipelinesError

topics_app = typer.Typer(help="Create, list, describe, alter and delete topics.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(
    name: str,
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="partition count")] = 3,
    replication_factor: Annotated[int, typer.Option("--replication-factor", "-r", min=1)] = 1,
    config: Annotated[
        list[str] | None, typer.Option("--config", help="topic config k=v (repeatable)")
    ] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="succeed if the topic exists")] = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Create a topic and wait until every partition has a leader."""
    from pipelines.kafka.admin import create_topic

    conf = {}
    for item in config or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise PipelinesError(f"--config {item!r} is not key=value")
        conf[key] = value
    servers = bootstrap_servers(settings_for(profile), bootstrap)
    created = create_topic(
        servers,
        name,
        partitions=partitions,
        replication_factor=replication_factor,
        config=conf,
        exist_ok=exist_ok,
    )
    err.print(f"topic {name} {'created' if created else 'already exists'} ({partitions} partitions)")


@topics_app.command("list")
def topics_list(bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """List topics with their partition counts (internal topics hidden)."""
    from pipelines.kafka.admin import admin_client

    md = admin_client(bootstrap_servers(settings_for(profile), bootstrap)).list_topics(timeout=15)
    table = Table("topic", "partitions")
    for name in sorted(md.topics):
        if not name.startswith("__"):
            table.add_row(name, str(len(md.topics[name].partitions)))
    out.print(table)


@topics_app.command("delete")
def topics_delete(name: str, bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """Delete a topic and its data."""
    from confluent_kafka import KafkaException

    from pipelines.kafka.admin import admin_client

    admin = admin_client(bootstrap_servers(settings_for(profile), bootstrap))
    try:
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)
    except KafkaException as exc:
        raise PipelinesError(f"cannot delete topic {name!r}: {exc.args[0].str()}") from None
    err.print(f"topic {name} deleted")
