"""The project's producer on the real broker: back-pressure on a full local queue instead of a crash,
murmur2 partitioning like Java clients, pacing, and every record reported, delivered or not."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from pipelines.errors import PipelinesError
from pipelines.kafka.producer import Delivered, make_producer, produce_all
from tests.helpers import log_end_offsets


def murmur2(data: bytes) -> int:
    """Java's org.apache.kafka.common.utils.Utils.murmur2, as an unsigned 32-bit number."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner (and Spark's kafka sink) picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafkas_own_test_vectors() -> None:
    # From Kafka's UtilsTest.testMurmur2 (signed Java ints).
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"abc": 479470107,
    }
    for data, signed in vectors.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


def unreachable_servers() -> str:
    """A loopback port nothing listens on (taken from the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_tiny_local_queue_means_back_pressure_not_a_crash(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    producer = make_producer(bootstrap, {"queue.buffering.max.messages": 50, "linger.ms": 5})
    records = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(5000)]
    reports: list[tuple[int, Delivered]] = []
    report = produce_all(producer, topic, records, on_delivered=lambda seq, d: reports.append((seq, d)))

    assert (report.sent, report.acknowledged, report.failed) == (5000, 5000, [])
    # The queue really was full, many times: the loop waited for deliveries instead of raising.
    assert report.queue_full_waits >= 1
    assert sorted(seq for seq, _ in reports) == list(range(5000))
    assert sorted(report.delivered, key=lambda d: (d.partition, d.offset)) == sorted(
        (d for _, d in reports), key=lambda d: (d.partition, d.offset)
    )
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for seq, d in reports:
        assert (d.key, d.value) == records[seq]
        # murmur2_random: the partition Java clients and Spark's kafka sink would choose.
        assert d.partition == java_partition(records[seq][0], 3)
        by_partition.setdefault(d.partition, []).append((d.offset, seq))
    # Nothing lost, nothing doubled, order kept: per partition the offsets are 0..n-1 in sending
    # order, and the broker holds exactly those.
    ends = log_end_offsets(bootstrap, topic)
    assert sum(ends.values()) == 5000
    for partition, pairs in by_partition.items():
        pairs.sort()
        assert [offset for offset, _ in pairs] == list(range(ends[partition]))
        assert [seq for _, seq in pairs] == sorted(seq for _, seq in pairs)


def test_the_summary_counts_what_the_delivery_reports_said(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    report = produce_all(make_producer(bootstrap), topic, [(b"k%d" % i, b"v") for i in range(1234)])
    assert (report.sent, report.acknowledged, len(report.failed), len(report.delivered)) == (
        1234,
        1234,
        0,
        1234,
    )
    assert report.seconds > 0
    assert report.events_per_s == pytest.approx(1234 / report.seconds)
    assert re.fullmatch(
        r"sent 1,234, acknowledged 1,234, failed 0 in \d+\.\d\d s \([\d,]+ events/s\)", report.summary()
    )


def test_keep_delivered_false_counts_without_holding_records(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    report = produce_all(make_producer(bootstrap), topic, [(b"k", b"v")] * 300, keep_delivered=False)
    assert (report.sent, report.acknowledged, report.delivered, report.failed) == (300, 300, [], [])


def test_rate_paces_sending_on_the_monotonic_clock(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    sent_at: list[float] = []
    before = time.monotonic()
    report = produce_all(
        make_producer(bootstrap),
        topic,
        [(b"k", b"v")] * 41,
        rate=200.0,
        on_progress=lambda _: sent_at.append(time.monotonic()),
    )
    assert report.acknowledged == 41
    # Record n goes out no earlier than n / rate after the start: a safe lower bound, never an upper.
    for n, t in enumerate(sent_at):
        assert t - before >= n / 200.0
    assert report.seconds >= 40 / 200.0


def test_an_interrupted_loop_still_reports_every_record_it_sent(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)

    def records() -> Iterator[tuple[bytes, bytes]]:
        for i in range(100):
            yield b"k%d" % i, b"v%d" % i
        raise KeyboardInterrupt

    reports: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        produce_all(
            make_producer(bootstrap), topic, records(), on_delivered=lambda seq, _: reports.append(seq)
        )
    assert sorted(reports) == list(range(100))


def test_failed_deliveries_are_reported_with_their_keys() -> None:
    producer = make_producer(unreachable_servers(), {"message.timeout.ms": 1000})
    failures: list[tuple[int, bytes | None, str]] = []
    report = produce_all(
        producer,
        "nowhere",
        [(b"k%d" % i, b"v") for i in range(5)],
        on_failed=lambda seq, key, error: failures.append((seq, key, error)),
    )
    assert (report.sent, report.acknowledged, report.delivered) == (5, 0, [])
    assert sorted(report.failed) == [(b"k%d" % i, "Local: Message timed out") for i in range(5)]
    assert sorted(failures) == [(i, b"k%d" % i, "Local: Message timed out") for i in range(5)]


def test_records_unacknowledged_at_the_flush_timeout_are_reported_failed_once() -> None:
    producer = make_producer(unreachable_servers(), {"message.timeout.ms": 60_000})
    failures: list[int] = []
    report = produce_all(
        producer,
        "nowhere",
        [(b"k%d" % i, b"v") for i in range(3)],
        flush_timeout_s=0.5,
        on_failed=lambda seq, _key, _error: failures.append(seq),
    )
    assert (report.sent, report.acknowledged) == (3, 0)
    assert report.failed == [(b"k%d" % i, "not acknowledged within 0.5 s") for i in range(3)]
    assert failures == [0, 1, 2]


def test_errors_only_counts_acknowledgements_after_the_flush(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    # `pipelines generate` without a ledger: the producer reports failures only.
    topic = new_topic(partitions=2)
    producer = make_producer(bootstrap, {"delivery.report.only.error": True})
    records = [(b"k%d" % i, b"v") for i in range(1234)]
    report = produce_all(producer, topic, records, keep_delivered=False, errors_only=True)
    assert (report.sent, report.acknowledged, report.failed) == (1234, 1234, [])
    assert sum(log_end_offsets(bootstrap, topic).values()) == 1234


def test_errors_only_still_reports_every_failure() -> None:
    conf = {"delivery.report.only.error": True}
    refused = produce_all(
        make_producer(unreachable_servers(), {**conf, "message.timeout.ms": 1000}),
        "nowhere",
        [(b"k%d" % i, b"v") for i in range(5)],
        keep_delivered=False,
        errors_only=True,
    )
    assert (refused.sent, refused.acknowledged) == (5, 0)
    assert sorted(refused.failed) == [(b"k%d" % i, "Local: Message timed out") for i in range(5)]
    unanswered = produce_all(
        make_producer(unreachable_servers(), {**conf, "message.timeout.ms": 60_000}),
        "nowhere",
        [(b"k%d" % i, b"v") for i in range(3)],
        flush_timeout_s=0.5,
        keep_delivered=False,
        errors_only=True,
    )
    assert (unanswered.sent, unanswered.acknowledged) == (3, 0)
    assert unanswered.failed == [(None, "not acknowledged within 0.5 s")] * 3
    with pytest.raises(ValueError, match="errors_only only counts"):
        produce_all(make_producer("127.0.0.1:1"), "t", [], errors_only=True)


def test_make_producer_keeps_murmur2_and_turns_bad_settings_into_one_line_errors() -> None:
    with pytest.raises(
        PipelinesError, match="partitioner=consistent_random would put keys on other partitions"
    ):
        make_producer("127.0.0.1:1", {"partitioner": "consistent_random"})
    with pytest.raises(
        PipelinesError, match=re.escape("`acks` must be set to `all` when `enable.idempotence` is true")
    ):
        make_producer("127.0.0.1:1", {"acks": "1"})
    with pytest.raises(PipelinesError, match=re.escape('No such configuration property: "linger.mss"')):
        make_producer("127.0.0.1:1", {"linger.mss": 5})
    make_producer("127.0.0.1:1", {"acks": "1", "enable.idempotence": False, "compression.type": "zstd"})


def test_a_rate_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="the rate must be positive, not 0"):
        produce_all(make_producer("127.0.0.1:1"), "t", [], rate=0)
