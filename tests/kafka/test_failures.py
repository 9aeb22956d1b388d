"""Careless-user failures on a real broker: a wrong address, a missing topic. Each is one line
(which servers or topic, what to do), a non-zero exit, no traceback, and comes before any real
work starts: commands within 15 s, jobs before Spark starts. Dead-letter topics are created on
demand with the source's partition count, by the jobs' runner and by the Python processor alike.

The deadlines are the subprocess timeouts: a command that hangs fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from pipelines.contracts import dead_letter_topic
from pipelines.kafka.admin import describe_topic, list_topics
from pipelines.kafka.job_topics import JobTopics, MissingTopic, prepare_topics
from pipelines.kafka.reach import KafkaUnreachable, check_reachable
from pipelines.processor.processor import Guarantee, Processor, ProcessorConfig
from tests.helpers import JOBS_DIR, pipelines

NOWHERE = "127.0.0.1:1"
"""Nothing listens on port 1: every connection is refused at once."""
COMMAND_DEADLINE_S = 15


def assert_one_line(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "list"],
        ["topics", "describe", "sales"],
        ["consume", "sales", "--count", "1"],
        ["status"],
        ["groups", "list"],
        ["generate", "sales", "--count", "1"],
        ["process", "orders-to-shipments", "--max-records", "1"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_command_names_the_servers_it_could_not_reach(command: list[str]) -> None:
    run = pipelines(*command, bootstrap=NOWHERE, timeout_s=COMMAND_DEADLINE_S)
    assert run.returncode == 1
    assert_one_line(
        run.stderr,
        f"error: no Kafka broker answered at {NOWHERE} (Connect to ipv4#{NOWHERE} failed: "
        "Connection refused)",
        "`pipelines broker start`",
        "--bootstrap-servers",
    )


def test_an_unknown_host_is_named_as_such() -> None:
    with pytest.raises(KafkaUnreachable, match=r"no-such-host\.invalid:9092 \(Failed to resolve"):
        check_reachable("no-such-host.invalid:9092", timeout_s=5)


def test_a_job_fails_before_spark_starts() -> None:
    job = [sys.executable, str(JOBS_DIR / "revenue_per_minute.py"), "--bootstrap-servers", NOWHERE]
    job += ["--checkpoint", "/nonexistent/ck", "--delta-path", "/nonexistent/table"]
    run = subprocess.run(job, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert_one_line(run.stderr, f"revenue_per_minute: no Kafka broker answered at {NOWHERE}")


def test_a_reachable_broker_passes(bootstrap: str) -> None:
    check_reachable(bootstrap)


def test_a_missing_source_is_one_line_and_creates_nothing(bootstrap: str) -> None:
    before = set(list_topics(bootstrap))
    with pytest.raises(MissingTopic, match=r"^source topic 'no-such-source' does not exist on "):
        prepare_topics(
            bootstrap, JobTopics(sources=["no-such-source"], dead_letters=[("x.dlq", "no-such-source")])
        )
    assert set(list_topics(bootstrap)) == before


def test_dead_letters_are_created_like_their_source_and_reported_once(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=5)
    said: list[str] = []
    topics = JobTopics(sources=[source], dead_letters=[(dead_letter_topic(source), source)])
    assert prepare_topics(bootstrap, topics, say=said.append) == [dead_letter_topic(source)]
    assert prepare_topics(bootstrap, topics, say=said.append) == []  # there now: nothing to say
    assert said == [
        f"created dead-letter topic '{source}.dlq': 5 partitions, replication factor the cluster's default"
    ]
    info = describe_topic(bootstrap, dead_letter_topic(source))
    assert (len(info.partitions), info.replication_factor) == (5, 1)


def test_a_missing_sink_is_refused_unless_the_job_may_create_it(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=2)
    sink = f"{source}-out"
    topics = JobTopics(sources=[source], sinks=[sink])
    refusal = rf"sink topic '{sink}' does not exist on .* or let the job create it with --create-topics"
    with pytest.raises(MissingTopic, match=refusal):
        prepare_topics(bootstrap, topics)
    assert sink not in list_topics(bootstrap)
    assert prepare_topics(bootstrap, topics, create_sinks=True) == [sink]
    assert list_topics(bootstrap)[sink] == 2


def test_the_processor_creates_its_dead_letter_topic_like_the_jobs(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(partitions=3), new_topic(partitions=3)
    said: list[str] = []
    config = ProcessorConfig(
        bootstrap_servers=bootstrap,
        guarantee=Guarantee.AT_LEAST_ONCE,
        source_topic=source,
        sink_topic=sink,
        group_id=f"{source}-group",
        on_topic_created=said.append,
    )
    processor = Processor(config)
    try:
        processor.open()
    finally:
        processor.close()
    assert list_topics(bootstrap)[dead_letter_topic(source)] == 3
    assert said == [
        f"created dead-letter topic '{source}.dlq': 3 partitions, replication factor the cluster's default"
    ]
