"""What each delivery guarantee gives you, measured: SIGKILL the processor mid-stream, again and again.

For each guarantee, 10,000 valid orders (and 20 malformed ones) go to a fresh topic; the processor
runs as its own OS process (`python -m pipelines.cli process orders-to-shipments`, its own session
so the kill reaches everything it started) and is SIGKILLed 4 times, each time once the sink holds
a seeded-random number of records (and then a random moment later), so the kill lands wherever the
processor happens to be: polling, producing, committing, inside a transaction. Each time it is
restarted with the same group, instance id and (exactly-once) transactional.id; a final run goes on
until it is idle.

Then every input is matched with its outputs (a shipment for an order, a dead letter for a bad
record): `lost` counts inputs without one, `duplicated` outputs beyond one per input. The sink is
read with `read_committed` for exactly-once, since that is the consumer the guarantee is for (the
aborted transactions' records are in the log); at-most-once and at-least-once write no
transactions, so a plain `read_uncommitted` consumer (the default of Java clients and Spark) sees
exactly what they wrote. The last column shows what a `read_uncommitted` consumer would see of the
exactly-once output, which is why its consumers must read committed.

Asserted: at-most-once never duplicates, at-least-once never loses, exactly-once does neither.
Each test prints its row; the last of the three prints the whole table (and writes it to
`what-each-guarantee-gives.md` in its tmp_path), whatever pytest's capture mode.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipelines.contracts import HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION
from pipelines.processor.processor import Guarantee
from tests.helpers import (
    PIPELINES,
    Record,
    Sent,
    Topics,
    committed_offsets,
    log_end_offsets,
    publish_orders,
    read_topic,
    shipment_value,
    wait_while_running,
)

pytestmark = pytest.mark.slow  # thousands of records, and a process started and killed again and again

ORDERS = 10_000
MALFORMED = 20
KILLS = 4
BATCH = 200
KILL_SPAN = (0.10, 0.65)
"""Kill `i` comes once the sink holds a seeded-random share of the orders, drawn from the i-th of
KILLS equal slices of this span (10-24%, 24-38%, 38-51%, 51-65% for four kills) and at least one
batch more than when the run started. Kill points are absolute, not relative to the run, so a run
that overshoots its point does not push the later ones past the end: the processor gets through
thousands of records a second, faster than the test can react, and the last kill still has a
third of the input ahead of it."""
KILL_DELAY_S = (0.0, 0.05)
"""After its point is reached, the kill waits a seeded-random moment of about one batch's time, so
kills fall in every phase of a batch (collecting, producing, waiting for acks, committing)."""


@dataclass(frozen=True)
class Measured:
    guarantee: str
    kills: int
    inputs: int
    outputs: int
    lost: int
    duplicated: int
    duplicated_read_uncommitted: int


MEASURED: dict[str, Measured] = {}


def table(rows: list[Measured]) -> str:
    lines = [
        "| guarantee | kills | inputs | outputs read | lost | duplicated "
        "| duplicated as read_uncommitted sees it |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {m.guarantee} | {m.kills} | {m.inputs:,} | {m.outputs:,} | {m.lost:,} | {m.duplicated:,} "
        f"| {m.duplicated_read_uncommitted:,} |"
        for m in rows
    ]
    return "\n".join(lines)


def show(measured: Measured, capsys: pytest.CaptureFixture[str], out_dir: Path) -> None:
    """The test's row on the terminal, whatever the capture mode; once every guarantee has been
    measured, the whole table too (and in a file)."""
    MEASURED[measured.guarantee] = measured
    with capsys.disabled():
        m = measured
        print(f"\n{m.guarantee}: {m.kills} kills, lost {m.lost:,}, duplicated {m.duplicated:,}")
        if set(MEASURED) == {g.value for g in Guarantee}:
            text = table([MEASURED[g.value] for g in Guarantee])
            path = out_dir / "what-each-guarantee-gives.md"
            path.write_text(text + "\n")
            print(f"\nWhat each guarantee gives you, measured ({path}):\n{text}")


class SinkWatcher:
    """How many records the sink's log holds (the sum of its log-end offsets), to time the kills."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "watcher", "enable.auto.commit": False}
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in sorted(partitions)]

    def total(self) -> int:
        return sum(
            self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self._partitions
        )

    def holds_at_least(self, records: int) -> bool:
        return self.total() >= records

    def close(self) -> None:
        self._consumer.close()


def count(inputs: list[Sent], sink: list[Record], letters: list[Record]) -> tuple[int, int]:
    """(lost, duplicated): inputs without an output, and outputs beyond one per input. Every output
    must belong to an input and be exactly the output it should be (duplicates are copies)."""
    wanted = {i.key: shipment_value(i.value or b"") for i in inputs if i.reason is None}
    shipped: Counter[bytes | None] = Counter()
    for m in sink:
        assert m.value == wanted.get(m.key), f"a shipment that is not the one for its order: {m.value!r}"
        shipped[m.key] += 1
    bad = {(i.partition, i.offset): i.reason for i in inputs if i.reason is not None}
    lettered: Counter[tuple[int, int]] = Counter()
    for m in letters:
        fields = dict(m.headers)
        origin = (int(fields[HEADER_SOURCE_PARTITION] or b"-1"), int(fields[HEADER_SOURCE_OFFSET] or b"-1"))
        assert bad.get(origin) == (fields[HEADER_REASON] or b"").decode(), (
            f"an unexpected dead letter: {fields}"
        )
        lettered[origin] += 1
    lost = sum(1 for key in wanted if shipped[key] == 0) + sum(1 for origin in bad if lettered[origin] == 0)
    duplicated = sum(n - 1 for n in shipped.values()) + sum(n - 1 for n in lettered.values())
    return lost, duplicated


@pytest.mark.parametrize("guarantee", list(Guarantee))
def test_sigkill_the_processor_again_and_again_and_count_lost_and_duplicated(
    guarantee: Guarantee,
    bootstrap: str,
    topics: Topics,
    group_id: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    total = ORDERS + MALFORMED
    inputs = publish_orders(
        bootstrap,
        topics.source,
        tmp_path / "ledger.jsonl",
        total,
        seed=2026,
        malformed_fraction=MALFORMED / total,
    )
    assert (len(inputs), sum(i.reason is None for i in inputs)) == (total, ORDERS)

    command = [
        PIPELINES, "process", "orders-to-shipments",
        "--guarantee", guarantee.value,
        "--source-topic", topics.source, "--sink-topic", topics.sink, "--group", group_id,
        # Static membership: a restarted instance takes its partitions back at once, instead of
        # waiting for the killed one's session (45 s) to expire.
        "--instance-id", "p0", "--batch-size", str(BATCH), "--commit-interval", "0.2",
        "--idle-timeout-s", "3", "--bootstrap-servers", bootstrap,
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "300"}  # one summary line, not wrapped to a terminal's width
    rng = random.Random(f"kill-points-{guarantee.value}")
    watcher = SinkWatcher(bootstrap, topics.sink)
    kills = 0
    try:
        for run in range(KILLS):
            log = tmp_path / f"run-{run}.log"
            with log.open("w") as stderr:
                proc = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
                )
            try:
                low, high = KILL_SPAN
                share = rng.uniform(low + (high - low) * run / KILLS, low + (high - low) * (run + 1) / KILLS)
                target = max(round(ORDERS * share), watcher.total() + BATCH)
                reached = functools.partial(watcher.holds_at_least, target)
                wait_while_running(reached, proc, f"kill point {target:,}", log, 120, pace_s=0.01)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=rng.uniform(*KILL_DELAY_S))  # the random moment; returns if it dies
                assert proc.poll() is None, (
                    f"run {run} ended before its kill point:\n{log.read_text()[-3000:]}"
                )
                os.killpg(proc.pid, signal.SIGKILL)  # no chance to finish a batch, flush or abort
                proc.wait(timeout=30)
                kills += 1
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        log = tmp_path / "final.log"
        with log.open("w") as stderr:
            final = subprocess.run(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, timeout=300, check=False
            )
        assert final.returncode == 0, log.read_text()[-3000:]
        assert "stopped: idle" in log.read_text()
    finally:
        watcher.close()
    assert committed_offsets(bootstrap, group_id, topics.source) == log_end_offsets(bootstrap, topics.source)

    isolation = "read_committed" if guarantee is Guarantee.EXACTLY_ONCE else "read_uncommitted"
    sink = read_topic(bootstrap, topics.sink, isolation=isolation)
    letters = read_topic(bootstrap, topics.dlq, isolation=isolation)
    lost, duplicated = count(inputs, sink, letters)
    if guarantee is Guarantee.EXACTLY_ONCE:
        everything = read_topic(bootstrap, topics.sink, isolation="read_uncommitted")
        all_letters = read_topic(bootstrap, topics.dlq, isolation="read_uncommitted")
        duplicated_uncommitted = count(inputs, everything, all_letters)[1]
    else:
        duplicated_uncommitted = duplicated
    measured = Measured(
        guarantee.value, kills, total, len(sink) + len(letters), lost, duplicated, duplicated_uncommitted
    )
    show(measured, capsys, tmp_path)

    assert kills == KILLS >= 3
    if guarantee is Guarantee.AT_MOST_ONCE:
        assert duplicated == 0
    elif guarantee is Guarantee.AT_LEAST_ONCE:
        assert lost == 0
    else:
        assert (lost, duplicated) == (0, 0)
