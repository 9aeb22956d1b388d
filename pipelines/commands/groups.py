"""`pipelines groups list|describe|demo`: consumer groups, their lag per partition, a live rebalance."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, out, settings_for
from pipelines.errors import PipelinesError

if TYPE_CHECKING:
    from pipelines.kafka.groups import GroupDescription, MemberPool

groups_app = typer.Typer(
    help="Consumer groups: list them, show their lag per partition, watch a rebalance.", no_args_is_help=True
)


@groups_app.command("list")
def groups_list(bootstrap: BootstrapOpt = None, profile: ProfileOpt = "local") -> None:
    """List the consumer groups with their state and protocol type."""
    from pipelines.kafka.groups import list_groups

    groups = list_groups(bootstrap_servers(settings_for(profile), bootstrap))
    table = Table("group", "state", "type")
    for g in groups:
        table.add_row(g.group_id, g.state, g.type)
    out.print(table)
    err.print(f"{len(groups)} consumer groups")


@groups_app.command("describe")
def groups_describe(
    group: Annotated[str, typer.Argument(help="consumer group id")],
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Per partition: committed offset, log-end offset, lag and owner (like kafka-consumer-groups --describe).

    Lag is log-end minus committed; `-` where the group never committed (and so has no position to
    measure from). Every partition of the group's topics is listed, owned or not.
    """
    from pipelines.kafka.groups import describe_group

    out.print(describe_table(describe_group(bootstrap_servers(settings_for(profile), bootstrap), group)))


def describe_table(desc: GroupDescription) -> Table:
    """The group's state line as the title, then one row per partition."""
    members = f"{len(desc.members)} member{'s' if len(desc.members) != 1 else ''}"
    table = Table(
        "topic",
        "partition",
        "committed offset",
        "log-end offset",
        "lag",
        "consumer id",
        "host",
        "client id",
        title=(
            f"group {desc.group_id}: state {desc.state}, {members}, assignor {desc.assignor or '-'}, "
            f"total lag {desc.total_lag}"
        ),
        title_justify="left",
    )
    for row in desc.partitions:
        owner = row.owner
        table.add_row(
            row.topic,
            str(row.partition),
            _or_dash(row.committed),
            _or_dash(row.log_end),
            _or_dash(row.lag),
            owner.member_id if owner else "-",
            owner.host if owner else "-",
            owner.client_id if owner else "-",
        )
    return table


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


@groups_app.command("demo")
def groups_demo(
    partitions: Annotated[
        int, typer.Option("--partitions", "-p", min=1, help="partitions of the demo topic")
    ] = 6,
    members: Annotated[int, typer.Option("--members", "-m", min=1, help="members to start with")] = 3,
    records: Annotated[
        int, typer.Option("--records", "-n", min=0, help="records to produce once they joined")
    ] = 600,
    topic: Annotated[
        str | None,
        typer.Option("--topic", help="use this topic (created if missing, kept) instead of a temporary one"),
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Watch a consumer group: members (one process each) join and share the records, one more
    joins, one leaves; each step shows who owns which partition and which partitions moved.

    Cooperative-sticky: on each change only the partitions that must move do, revoked partitions
    are committed before they move, and a member that closes leaves the group at once. The
    temporary topic (and with it the group's offsets) is deleted at the end.
    """
    from pipelines.kafka.admin import admin_client, create_topic
    from pipelines.kafka.groups import MemberPool, describe_group
    from pipelines.kafka.producer import make_producer, produce_all

    settings = settings_for(profile)
    servers = bootstrap_servers(settings, bootstrap)
    name = topic or f"groups-demo-{uuid.uuid4().hex[:8]}"
    create_topic(servers, name, partitions=partitions, exist_ok=topic is not None)
    count = len(admin_client(servers).list_topics(topic=name, timeout=15).topics[name].partitions)
    group = f"groups-demo-{uuid.uuid4().hex[:8]}"
    err.print(f"topic {name} ({count} partitions), group {group}")

    names = [f"member-{i}" for i in range(1, members + 1)]
    try:
        with MemberPool(servers, group, name, commit_every=1) as pool:
            for member in names:
                pool.start(member)
            took = pool.wait_balanced(names, count, timeout_s=60)
            # Produced once every member is in, so each reads only its own partitions.
            report = produce_all(
                make_producer(servers, settings.kafka.producer),
                name,
                ((f"key-{i}".encode(), f"record {i}".encode()) for i in range(records)),
            )
            if report.failed:
                raise PipelinesError(f"{len(report.failed)} records not acknowledged: {report.failed[0][1]}")
            available = _records_in(servers, name, count)
            pool.wait_until(lambda p: len(p.processed()) >= available, f"{available} records processed", 60)
            _step(pool, f"{members} members joined ({took:.1f} s) and read {available} records", count, {})

            before = pool.ownership()
            newcomer = f"member-{members + 1}"
            pool.start(newcomer)
            names.append(newcomer)
            took = pool.wait_balanced(names, count, timeout_s=60)
            _step(pool, f"{newcomer} joined ({took:.1f} s)", count, before)

            before = pool.ownership()
            leaver = names.pop(0)
            asked = pool.close(leaver)
            pool.wait_balanced(names, count, timeout_s=60)
            took = time.monotonic() - asked
            title = (
                f"{leaver} closed: the others own its partitions {took:.1f} s later (session timeout 45 s)"
            )
            _step(pool, title, count, before)
            out.print(describe_table(describe_group(servers, group)))
    finally:
        if topic is None:
            from pipelines.kafka.admin import delete_topic

            delete_topic(servers, name)
    err.print("all members closed" + ("; the demo topic is deleted" if topic is None else ""))


def _step(pool: MemberPool, title: str, partitions: int, before: dict[str, list[int]]) -> None:
    """Who owns what now, and which partitions moved since `before`."""
    previous = {p: name for name, parts in before.items() for p in parts}
    table = Table("member", "member id", "partitions", "records processed", title=title, title_justify="left")
    processed: dict[str, int] = {}
    for name, _, _ in pool.processed():
        processed[name] = processed.get(name, 0) + 1
    for name in pool.live():
        table.add_row(
            name,
            pool.member_ids.get(name, "-"),
            ", ".join(str(p) for p in sorted(pool.owned.get(name, ()))) or "-",
            str(processed.get(name, 0)),
        )
    out.print(table)
    if before:
        moved = [
            f"partition {p}: {previous[p]} -> {owner}"
            for owner, parts in pool.ownership().items()
            for p in parts
            if previous.get(p) != owner
        ]
        out.print(
            f"moved {len(moved)} of {partitions}: " + ("; ".join(sorted(moved)) or "none"), highlight=False
        )


def _records_in(servers: str, topic: str, partitions: int) -> int:
    """Records a new group reads from the beginning: log end minus log start, over all partitions."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    from pipelines.kafka.admin import admin_client

    admin = admin_client(servers)
    total = 0
    for spec, sign in ((OffsetSpec.latest(), 1), (OffsetSpec.earliest(), -1)):
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in range(partitions)})
        total += sign * sum(f.result(timeout=30).offset for f in futures.values())
    return total
