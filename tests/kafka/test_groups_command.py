"""`pipelines groups list|describe|demo` as a user runs them, checked against what was produced and
committed on the real broker."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from pipelines.kafka.admin import admin_client
from pipelines.kafka.producer import make_producer, produce_all
from tests.helpers import pipelines


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of the rich table(s) in `stdout`, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


def test_describe_shows_committed_offset_log_end_lag_and_owner_per_partition(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=3)
    report = produce_all(make_producer(bootstrap), topic, [(f"k{i}".encode(), b"v") for i in range(30)])
    ends = {p: sum(1 for d in report.delivered if d.partition == p) for p in range(3)}
    assert all(n >= 3 for n in ends.values())

    member = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "client.id": "lag-reader",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
        }
    )
    member.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while len(member.assignment()) < 3:
            assert time.monotonic() < deadline, "never assigned"
            member.poll(0.2)
        # Partition 0 two records in, partition 1 all the way, partition 2 never committed.
        member.commit(
            offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, ends[1])], asynchronous=False
        )
        member_id = member.memberid()

        run = pipelines("groups", "describe", group_id, bootstrap=bootstrap)
        assert run.returncode == 0, run.stderr
        title = run.stdout.splitlines()[0].strip()
        assert title == (
            f"group {group_id}: state Stable, 1 member, assignor cooperative-sticky, total lag {ends[0] - 2}"
        )
        assert table_rows(run.stdout) == [
            [topic, "0", "2", str(ends[0]), str(ends[0] - 2), member_id, "/127.0.0.1", "lag-reader"],
            [topic, "1", str(ends[1]), str(ends[1]), "0", member_id, "/127.0.0.1", "lag-reader"],
            [topic, "2", "-", str(ends[2]), "-", member_id, "/127.0.0.1", "lag-reader"],
        ]
    finally:
        member.close()

    # Without members the offsets and lag stay; the owner columns empty and the group is Empty.
    run = pipelines("groups", "describe", group_id, bootstrap=bootstrap)
    assert run.stdout.splitlines()[0].strip() == (
        f"group {group_id}: state Empty, 0 members, assignor -, total lag {ends[0] - 2}"
    )
    assert table_rows(run.stdout) == [
        [topic, "0", "2", str(ends[0]), str(ends[0] - 2), "-", "-", "-"],
        [topic, "1", str(ends[1]), str(ends[1]), "0", "-", "-", "-"],
        [topic, "2", "-", str(ends[2]), "-", "-", "-", "-"],
    ]

    run = pipelines("groups", "list", bootstrap=bootstrap)
    assert run.returncode == 0, run.stderr
    assert [group_id, "Empty", "classic"] in table_rows(run.stdout)


def test_describe_of_an_unknown_group_is_a_one_line_error(bootstrap: str) -> None:
    run = pipelines("groups", "describe", "no-such-group", bootstrap=bootstrap)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "error: consumer group 'no-such-group' does not exist (no members, no committed offsets); "
        "`pipelines groups list` shows the groups"
    ]


def test_demo_shows_members_joining_and_leaving_with_only_the_necessary_moves(bootstrap: str) -> None:
    run = pipelines("groups", "demo", "--records", "60", bootstrap=bootstrap)
    assert run.returncode == 0, run.stderr
    lines = [line.strip() for line in run.stdout.splitlines()]
    assert any(re.fullmatch(r"3 members joined \([0-9.]+ s\) and read 60 records", line) for line in lines)
    assert any(line.startswith("member-4 joined") for line in lines)
    moves = [line for line in lines if line.startswith("moved ")]
    assert len(moves) == 2, run.stdout
    assert re.fullmatch(r"moved 1 of 6: partition \d: member-[123] -> member-4", moves[0])
    # member-1 had one or two partitions left; exactly those move, nothing else.
    moved = int(moves[1].split()[1])
    assert moved in (1, 2) and moves[1].count("member-1 ->") == moves[1].count("->") == moved
    members_rows = [row for row in table_rows(run.stdout) if row[0].startswith("member-")]
    assert {row[0] for row in members_rows} == {"member-1", "member-2", "member-3", "member-4"}
    # The records were shared: every member of the first three read some.
    first_table = members_rows[:3]
    assert sum(int(row[3]) for row in first_table) == 60 and all(int(row[3]) > 0 for row in first_table)
    assert any(line.startswith("group groups-demo-") and "state Stable, 3 members" in line for line in lines)

    # The temporary topic is gone afterwards.
    topic = re.search(r"topic (groups-demo-[0-9a-f]{8}) \(6 partitions\)", run.stderr)
    assert topic is not None, run.stderr
    assert "the demo topic is deleted" in run.stderr
    admin, deadline = admin_client(bootstrap), time.monotonic() + 30
    while topic.group(1) in admin.list_topics(timeout=10).topics:  # deletion reaches metadata shortly after
        assert time.monotonic() < deadline, f"{topic.group(1)} still exists"
