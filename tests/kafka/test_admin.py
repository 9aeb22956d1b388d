"""Topic administration on the real broker, and the one-line errors users get."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from pipelines.errors import PipelinesError
from pipelines.kafka import admin
from tests.helpers import pipelines


def test_create_then_describe_shows_leaders_replicas_isr_and_configs(bootstrap: str) -> None:
    name = f"admin-{uuid.uuid4().hex[:8]}"
    assert admin.create_topic(bootstrap, name, partitions=4, config={"retention.ms": "3600000"})
    info = admin.describe_topic(bootstrap, name)
    assert [(p.partition, p.leader, p.replicas, p.isr) for p in info.partitions] == [
        (0, 1, (1,), (1,)),
        (1, 1, (1,), (1,)),
        (2, 1, (1,), (1,)),
        (3, 1, (1,), (1,)),
    ]
    assert info.replication_factor == 1
    assert info.configs["retention.ms"] == "3600000"
    assert info.overridden == frozenset({"retention.ms"})
    assert info.configs["cleanup.policy"] == "delete"
    assert admin.list_topics(bootstrap)[name] == 4
    # Creating it again: refused, or accepted with exist_ok.
    with pytest.raises(PipelinesError, match=rf"topic '{name}' already exists"):
        admin.create_topic(bootstrap, name, partitions=4)
    assert admin.create_topic(bootstrap, name, partitions=4, exist_ok=True) is False
    admin.delete_topic(bootstrap, name)
    assert name not in admin.list_topics(bootstrap)


def test_alter_adds_partitions_and_refuses_to_remove_them(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    assert admin.add_partitions(bootstrap, topic, 5) == 3
    assert len(admin.describe_topic(bootstrap, topic).partitions) == 5
    with pytest.raises(
        PipelinesError, match=r"has 5 partitions and Kafka cannot remove partitions.*new topic"
    ):
        admin.add_partitions(bootstrap, topic, 2)
    with pytest.raises(PipelinesError, match="already has 5 partitions"):
        admin.add_partitions(bootstrap, topic, 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: admin.create_topic(b, "rf-too-high", partitions=1, replication_factor=3),
         r"replication factor 3: the cluster has 1 broker\(s\)"),
        (lambda b: admin.create_topic(b, "bad name", partitions=1), r"illegal topic name 'bad name'"),
        (lambda b: admin.create_topic(b, "x" * 250, partitions=1), r"illegal topic name"),
        (lambda b: admin.create_topic(b, "..", partitions=1), r"topic name '\.\.' is not allowed"),
        (lambda b: admin.delete_topic(b, "no-such-topic"), r"topic 'no-such-topic' does not exist"),
        (lambda b: admin.describe_topic(b, "no-such-topic"), r"topic 'no-such-topic' does not exist"),
        (lambda b: admin.add_partitions(b, "no-such-topic", 3), r"topic 'no-such-topic' does not exist"),
    ],
)  # fmt: skip
def test_user_errors_are_clear(bootstrap: str, call: Callable[[str], object], message: str) -> None:
    with pytest.raises(PipelinesError, match=message):
        call(bootstrap)


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "create", "bad name!"],
        ["topics", "create", "rf", "--replication-factor", "3"],
        ["topics", "alter", "no-such-topic", "--partitions", "2"],
        ["topics", "describe", "no-such-topic"],
    ],
)
def test_cli_errors_are_one_line_and_exit_non_zero(bootstrap: str, args: list[str]) -> None:
    proc = pipelines(*args, bootstrap=bootstrap, timeout_s=60, columns=None)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_cli_describe_prints_partitions_and_configs(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    proc = pipelines(
        "topics", "describe", topic, "-b", bootstrap, timeout_s=60, columns=200, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{topic}  partitions 2  replication factor 1" in proc.stdout
    assert "min.insync.replicas" in proc.stdout
