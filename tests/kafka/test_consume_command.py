"""`pipelines consume TOPIC` as a user runs it: the installed console script against the real broker."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable

from pipelines.kafka.groups import describe_group
from pipelines.kafka.producer import make_producer
from tests.helpers import PIPELINES, pipelines

MS = 1795773600123  # 2026-11-27T10:00:00.123Z


def produce_three(bootstrap: str, topic: str) -> None:
    producer = make_producer(bootstrap)
    producer.produce(
        topic, key=b"sale-1", value=b'{"amount": 12.5}', headers=[("trace", b"t-1")], timestamp=MS
    )
    producer.produce(topic, key=None, value=b"\xff\xfe\x00raw", timestamp=MS + 1)
    producer.produce(topic, key=b"k3", value=b"two\nlines", headers=[("bin", b"\x80")], timestamp=MS + 2)
    assert producer.flush(30) == 0


LINES = [
    'partition=0 offset=0 timestamp=2026-11-27T10:00:00.123Z (create) key=sale-1 value={"amount": 12.5} '
    "headers=[trace=t-1]",
    "partition=0 offset=1 timestamp=2026-11-27T10:00:00.124Z (create) key=null value=b'\\xff\\xfe\\x00raw'",
    "partition=0 offset=2 timestamp=2026-11-27T10:00:00.125Z (create) key=k3 value=two\\nlines "
    "headers=[bin=b'\\x80']",
]


def test_consume_prints_each_record_on_one_readable_line(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    produce_three(bootstrap, topic)

    run = pipelines("consume", topic, "--from-beginning", "-n", "3", bootstrap=bootstrap)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == LINES
    assert run.stderr.startswith(f"3 records from {topic} in ") and "(count reached)" in run.stderr

    run = pipelines("consume", topic, "--from-beginning", "-n", "1", bootstrap=bootstrap)
    assert run.stdout.splitlines() == LINES[:1]


def test_consume_from_the_end_prints_only_new_records(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    produce_three(bootstrap, topic)
    assert pipelines("consume", topic, "--from-end", "--timeout", "1", bootstrap=bootstrap).stdout == ""

    proc = subprocess.Popen(
        [PIPELINES, "consume", topic, "--from-end", "-n", "1", "--bootstrap-servers", bootstrap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def forward() -> None:
        for printed in proc.stdout or []:
            lines.put(printed)

    threading.Thread(target=forward, daemon=True).start()
    producer = make_producer(bootstrap)
    try:
        # The reader's start position is set once it has fetched the log end, which we cannot see
        # from here: keep producing new records until it prints one.
        deadline = time.monotonic() + 30
        line = None
        while line is None and time.monotonic() < deadline:
            producer.produce(topic, key=b"new", value=b"new record")
            producer.flush(10)
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert line is not None and "key=new value=new record" in line
    assert int(line.split()[1].removeprefix("offset=")) >= 3  # none of the three old ones


def test_consume_with_a_group_commits_what_it_printed_and_resumes_there(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=1)
    produce_three(bootstrap, topic)

    run = pipelines("consume", topic, "--from-beginning", "-n", "2", "--group", group_id, bootstrap=bootstrap)
    assert run.stdout.splitlines() == LINES[:2]
    assert f"offsets committed for group {group_id}" in run.stderr
    [row] = describe_group(bootstrap, group_id).partitions
    assert (row.committed, row.log_end, row.lag) == (2, 3, 1)

    # --from-beginning only applies where the group has no committed offset: it resumes at 2.
    run = pipelines(
        "consume", topic, "--from-beginning", "--group", group_id, "--timeout", "2", bootstrap=bootstrap
    )
    assert run.stdout.splitlines() == LINES[2:]
    assert "(no record for 2 s)" in run.stderr
    [row] = describe_group(bootstrap, group_id).partitions
    assert (row.committed, row.lag) == (3, 0)


def test_consume_of_an_unknown_topic_is_a_one_line_error(bootstrap: str) -> None:
    run = pipelines("consume", "no-such-topic", "-n", "1", bootstrap=bootstrap)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "error: topic 'no-such-topic' does not exist (`pipelines topics list` shows the topics)"
    ]
