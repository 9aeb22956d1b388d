"""The orders -> shipments processor on the real broker: each guarantee without crashes, the
transactional error paths, fencing, and the command as a user runs it.

What each guarantee gives across SIGKILLs is measured in test_processor_kill.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from pipelines.contracts import DEAD_LETTER_HEADERS
from pipelines.kafka.producer import PRODUCER_DEFAULTS, ConfValue
from pipelines.processor.processor import Guarantee, Processor, ProcessorConfig, default_transactional_id
from tests.helpers import (
    PIPELINES,
    Sent,
    Topics,
    committed_offsets,
    log_end_offsets,
    pipelines,
    produce_orders,
    publish_orders,
    read_topic,
    shipment_value,
)


def exactly_once(bootstrap: str, topics: Topics, group_id: str, batch_size: int) -> ProcessorConfig:
    return ProcessorConfig(
        bootstrap, Guarantee.EXACTLY_ONCE, topics.source, topics.sink, group_id, batch_size=batch_size
    )


def assert_exact_output(bootstrap: str, topics: Topics, inputs: list[Sent], *, isolation: str) -> None:
    """The sink holds exactly one shipment per valid input, on the input's partition number and in
    its order there, key and headers carried over; the dead-letter topic exactly one letter per bad
    input, with its bytes, its headers first, and the reason and origin it must have."""
    sink = read_topic(bootstrap, topics.sink, isolation=isolation)
    valid = [i for i in inputs if i.reason is None]
    assert Counter((m.partition, m.key, m.value, m.headers) for m in sink) == Counter(
        (i.partition, i.key, shipment_value(i.value or b""), i.headers) for i in valid
    )
    for partition in {i.partition for i in valid}:
        in_order = [i.key for i in sorted(valid, key=lambda i: i.offset) if i.partition == partition]
        out_order = [m.key for m in sorted(sink, key=lambda m: m.offset) if m.partition == partition]
        assert out_order == in_order, f"partition {partition}: shipments out of the orders' order"

    letters = read_topic(bootstrap, topics.dlq, isolation=isolation)
    got = []
    for m in letters:
        assert [name for name, _ in m.headers[-5:]] == list(DEAD_LETTER_HEADERS)
        reason, detail, source, partition, offset = (value or b"" for _, value in m.headers[-5:])
        assert detail
        got.append(
            (
                m.key,
                m.value,
                m.headers[:-5],
                reason.decode(),
                source.decode(),
                int(partition or b"-1"),
                int(offset or b"-1"),
            )
        )
    bad = [i for i in inputs if i.reason is not None]
    # The letter keeps the original headers except any that reuse the five dead-letter names.
    assert Counter(got) == Counter(
        (
            i.key,
            i.value,
            tuple(h for h in i.headers if h[0] not in DEAD_LETTER_HEADERS),
            i.reason,
            topics.source,
            i.partition,
            i.offset,
        )
        for i in bad
    )


# -- each guarantee, no crash ----------------------------------------------------------------------
TRACE = (("trace-id", b"t-1"), ("origin", b"web"))


@pytest.mark.parametrize("guarantee", list(Guarantee))
def test_each_guarantee_ships_every_order_once_and_dead_letters_the_bad_ones(
    guarantee: Guarantee, bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(
        bootstrap,
        topics.source,
        tmp_path / "ledger.jsonl",
        300,
        seed=5,
        late_fraction=0.05,
        malformed_fraction=0.1,
    )
    good = (
        b'{"order_id":"order-h1","customer_id":"cust-9","amount":1.00,"currency":"EUR",'
        b'"timestamp":"2026-11-27T10:00:00.000Z"}'
    )
    inputs += produce_orders(
        bootstrap,
        topics.source,
        [
            (b"order-h1", good, TRACE, None),  # headers travel with the shipment
            (b"order-h2", b'{"order_id":"order-h2"}', TRACE, "missing_field:timestamp"),  # ... and the letter
            (b"order-h3", None, (), "empty_value"),  # a tombstone is not an order
            # a record that already claims an error.reason gets the real one instead
            (
                b"order-h4",
                b'{"order_id":"order-h4","\xff":1}',
                (("error.reason", b"spoofed"),),
                "invalid_utf8",
            ),
        ],
    )
    bad = sum(i.reason is not None for i in inputs)
    assert 25 <= bad < len(inputs)

    config = ProcessorConfig(
        bootstrap, guarantee, topics.source, topics.sink, group_id, batch_size=50, commit_interval_s=0.2
    )
    result = Processor(config).run(idle_timeout_s=2)

    assert result.stopped == "idle"
    stats = result.stats
    assert (stats.consumed, stats.shipped, stats.dead_lettered, stats.lost) == (
        len(inputs),
        len(inputs) - bad,
        bad,
        0,
    )
    if guarantee is Guarantee.EXACTLY_ONCE:
        assert stats.transactions_committed >= len(inputs) // 50
        assert (stats.transactions_aborted, stats.offset_commits) == (0, 0)
    elif guarantee is Guarantee.AT_MOST_ONCE:
        assert stats.offset_commits >= len(inputs) // 50  # one commit per batch, before its outputs
        assert stats.transactions_committed == 0
    else:
        # at-least-once commits what is acknowledged, when it is: how often depends on the broker's
        # pace; that everything ends up committed is asserted below.
        assert stats.transactions_committed == 0
    # read_committed for the transactional output; the others wrote no transactions, so both see the same
    assert_exact_output(
        bootstrap,
        topics,
        inputs,
        isolation="read_committed" if guarantee is Guarantee.EXACTLY_ONCE else "read_uncommitted",
    )
    assert committed_offsets(bootstrap, group_id, topics.source) == log_end_offsets(bootstrap, topics.source)

    again = Processor(config).run(idle_timeout_s=1)  # a restart with nothing new writes nothing
    assert (again.stopped, again.stats.consumed) == ("idle", 0)


def test_max_records_stops_after_exactly_that_many(
    bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(bootstrap, topics.source, tmp_path / "ledger.jsonl", 120, seed=6)
    config = exactly_once(bootstrap, topics, group_id, batch_size=50)
    first = Processor(config).run(max_records=70)
    assert (first.stopped, first.stats.consumed) == ("max_records", 70)
    second = Processor(config).run(idle_timeout_s=2)
    assert second.stats.consumed == 50
    assert_exact_output(bootstrap, topics, inputs, isolation="read_committed")


@pytest.mark.parametrize("guarantee", [Guarantee.AT_LEAST_ONCE, Guarantee.EXACTLY_ONCE])
def test_a_second_instance_joining_mid_stream_takes_partitions_without_loss_or_duplicates(
    guarantee: Guarantee, bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    """Records are written as they arrive, so a revocation can come with a unit half written: the
    first instance finishes it in on_revoke (at-least-once: waits for the acks and commits;
    exactly-once: commits the open transaction) before the partitions move. Every order is then
    shipped once, by one of the two."""
    from pipelines.local.cluster import wait_for

    def config(instance: str) -> ProcessorConfig:  # own instance ids: own transactional.ids
        return ProcessorConfig(
            bootstrap, guarantee, topics.source, topics.sink, group_id, instance_id=instance, batch_size=50
        )

    first, second = Processor(config("a")), Processor(config("b"))
    results: dict[str, Any] = {}

    def run(name: str, processor: Processor) -> None:
        results[name] = processor.run(idle_timeout_s=4)

    threads = [threading.Thread(target=run, args=("first", first))]
    threads[0].start()
    inputs = publish_orders(bootstrap, topics.source, tmp_path / "l0.jsonl", 500, seed=40)
    wait_for(lambda: first.stats.consumed >= 500, 60, "the first instance's first 500 orders")
    threads.append(threading.Thread(target=run, args=("second", second)))
    threads[1].start()
    # Input keeps flowing while the group rebalances around the first instance's open units, until
    # the second instance has shipped some (then a little more, so both end with work done).
    chunk, after = 0, 3
    deadline = time.monotonic() + 90
    while after and time.monotonic() < deadline:
        chunk += 1
        inputs += publish_orders(bootstrap, topics.source, tmp_path / f"l{chunk}.jsonl", 200, seed=40 + chunk)
        after -= second.stats.consumed > 0
    for thread in threads:
        thread.join(120)
    a, b = results["first"], results["second"]
    assert (a.stopped, b.stopped) == ("idle", "idle")
    assert a.stats.consumed > 500 and b.stats.consumed > 0, "the partitions did not move mid-stream"
    assert a.stats.consumed + b.stats.consumed == len(inputs)
    isolation = "read_committed" if guarantee is Guarantee.EXACTLY_ONCE else "read_uncommitted"
    assert_exact_output(bootstrap, topics, inputs, isolation=isolation)
    assert committed_offsets(bootstrap, group_id, topics.source) == log_end_offsets(bootstrap, topics.source)


# -- exactly-once error paths ----------------------------------------------------------------------
class FaultyProducer(Producer):
    """A real transactional producer that fails on cue: `faults[method]` errors are raised once each,
    before the real call. Before an injected abortable or fatal error it flushes, so the records of
    the doomed transaction are in the log (and read_uncommitted consumers can see them)."""

    def __init__(self, conf: dict[str, Any], faults: dict[str, list[KafkaError]]) -> None:
        super().__init__(conf)
        self.faults = faults
        self.in_transaction = 0
        self.doomed = 0
        """Records of transactions that an injected error made fail."""

    def _fail(self, method: str) -> None:
        errors = self.faults.get(method)
        if errors:
            err = errors.pop(0)
            if not err.retriable():
                assert self.flush(30) == 0
                self.doomed += self.in_transaction
            raise KafkaException(err)

    def begin_transaction(self) -> None:
        self.in_transaction = 0
        super().begin_transaction()

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.in_transaction += 1
        super().produce(*args, **kwargs)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self._fail("send_offsets_to_transaction")
        super().send_offsets_to_transaction(*args)

    def commit_transaction(self, *args: Any) -> None:
        self._fail("commit_transaction")
        super().commit_transaction(*args)


FAULTS = {
    "abortable": (
        "send_offsets_to_transaction",
        KafkaError(KafkaError.INVALID_TXN_STATE, "injected: abort", txn_requires_abort=True),
    ),
    "retriable": ("commit_transaction", KafkaError(KafkaError._TIMED_OUT, "injected: again", retriable=True)),
    "fatal": (
        "send_offsets_to_transaction",
        KafkaError(KafkaError._INCONSISTENT, "injected: fatal", fatal=True),
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_exactly_once_survives_abortable_retriable_and_fatal_errors(
    fault: str, bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(
        bootstrap, topics.source, tmp_path / "ledger.jsonl", 400, seed=7, malformed_fraction=0.05
    )
    method, error = FAULTS[fault]
    made: list[FaultyProducer] = []

    def factory(conf: Mapping[str, ConfValue]) -> Producer:
        # The first producer fails once, in the middle of the run; a replacement does not.
        faults = {method: [error]} if not made else {}
        made.append(FaultyProducer({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **conf}, faults))
        return made[-1]

    config = exactly_once(bootstrap, topics, group_id, batch_size=100)
    result = Processor(config, producer_factory=factory).run(idle_timeout_s=2)

    stats = result.stats
    assert stats.consumed == len(inputs)
    expected = {
        "abortable": (1, 0, 0, 1),  # aborted, rewound, the batch written again
        "retriable": (0, 0, 1, 1),  # the commit called again, nothing aborted
        "fatal": (1, 1, 0, 2),  # a new producer, whose init_transactions aborted the open transaction
    }[fault]
    assert (stats.transactions_aborted, stats.producer_restarts, stats.retries, len(made)) == expected
    assert_exact_output(bootstrap, topics, inputs, isolation="read_committed")
    # The failed transaction's records are in the log, aborted: only read_committed hides them.
    visible_to_all = read_topic(bootstrap, topics.sink, isolation="read_uncommitted") + read_topic(
        bootstrap, topics.dlq, isolation="read_uncommitted"
    )
    assert len(visible_to_all) == len(inputs) + made[0].doomed
    assert (made[0].doomed > 0) == (fault != "retriable")


def test_a_newer_instance_fences_the_older_which_stops_without_duplicates(
    bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(bootstrap, topics.source, tmp_path / "ledger.jsonl", 1000, seed=8)
    # Same group, same (default) transactional.id: two incarnations of one instance.
    config = exactly_once(bootstrap, topics, group_id, batch_size=100)
    newer = Processor(config)

    class StartsTheNewerOne(Producer):
        """The older instance's producer: just before its second commit, the newer instance starts
        (its init_transactions fences this producer and aborts the open transaction)."""

        commits = 0

        def commit_transaction(self, *args: Any) -> None:
            StartsTheNewerOne.commits += 1
            if StartsTheNewerOne.commits == 2:
                assert self.flush(30) == 0  # the doomed batch is in the log
                newer.open()
            super().commit_transaction(*args)

    older = Processor(
        config,
        producer_factory=lambda conf: StartsTheNewerOne(
            {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **conf}
        ),
    )
    old = older.run(idle_timeout_s=10)
    assert old.stopped == "fenced", old
    assert "fenced" in old.detail.lower()
    assert (old.stats.transactions_committed, old.stats.producer_restarts) == (1, 0)

    new = newer.run(idle_timeout_s=2)
    assert new.stopped == "idle"
    assert old.stats.consumed + new.stats.consumed == len(inputs)
    assert_exact_output(bootstrap, topics, inputs, isolation="read_committed")
    # The older one's second batch reached the log and was aborted by the fence.
    uncommitted = read_topic(bootstrap, topics.sink, isolation="read_uncommitted")
    assert len(uncommitted) > len(inputs)


# -- the command -----------------------------------------------------------------------------------
def test_the_command_processes_and_prints_one_summary_line(
    bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(
        bootstrap, topics.source, tmp_path / "ledger.jsonl", 104, seed=9, malformed_fraction=0.04
    )
    run = pipelines(
        "process", "orders-to-shipments", "--guarantee", "exactly-once",
        "--source-topic", topics.source, "--sink-topic", topics.sink, "--group", group_id,
        "--batch-size", "50", "--idle-timeout-s", "2", bootstrap=bootstrap,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"transactional.id {default_transactional_id(group_id)}" in run.stderr
    assert (
        "consumed 104: 100 shipments, 4 dead letters; transactions committed 3, aborted 0; stopped: idle"
        in (run.stderr)
    )
    assert_exact_output(bootstrap, topics, inputs, isolation="read_committed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sink-topic", "no-such-topic"], "error: sink topic 'no-such-topic' does not exist on"),
        (["--guarantee", "at-least-once", "--transactional-id", "t"], "only for --guarantee exactly-once"),
        (["--guarantee", "twice"], "--guarantee must be one of at-most-once, at-least-once, exactly-once"),
    ],
)
def test_the_command_refuses_what_cannot_work_in_one_line(
    args: list[str], message: str, bootstrap: str, topics: Topics, group_id: str
) -> None:
    run = pipelines(
        "process", "orders-to-shipments", "--source-topic", topics.source,
        "--sink-topic", topics.sink, "--group", group_id, "--idle-timeout-s", "1", *args, bootstrap=bootstrap,
    )  # fmt: skip
    assert run.returncode == 1
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_the_command_stops_cleanly_when_fenced(
    bootstrap: str, topics: Topics, group_id: str, tmp_path: Path
) -> None:
    inputs = publish_orders(bootstrap, topics.source, tmp_path / "ledger.jsonl", 200, seed=10)
    log = tmp_path / "processor.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [PIPELINES, "process", "orders-to-shipments", "--source-topic", topics.source,
             "--sink-topic", topics.sink, "--group", group_id, "--batch-size", "50", "--idle-timeout-s", "60",
             "--bootstrap-servers", bootstrap],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "COLUMNS": "300"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while committed_offsets(bootstrap, group_id, topics.source) != log_end_offsets(
            bootstrap, topics.source
        ):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first 200 orders were not processed in time"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        # A newer incarnation of the same transactional.id: the running one is a zombie from now on.
        newer = Producer(
            {"bootstrap.servers": bootstrap, "transactional.id": default_transactional_id(group_id)}
        )
        newer.init_transactions(30)
        more = publish_orders(bootstrap, topics.source, tmp_path / "more.jsonl", 20, seed=11)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr_text = log.read_text()
    assert "stopped: fenced" in stderr_text
    assert "error: fenced: another instance with the same transactional.id or instance id took over" in (
        stderr_text
    )
    assert "Traceback" not in stderr_text
    # Only the first 200 were shipped; the zombie's attempt at the next 20 was aborted.
    assert_exact_output(bootstrap, topics, inputs, isolation="read_committed")
    assert more
