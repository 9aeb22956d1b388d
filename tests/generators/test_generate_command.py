"""`pipelines generate` on the real broker: the topic holds exactly what the ledger says, and the
same seed and arguments give the same ledger even with other producer settings."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.cli import app
from pipelines.errors import PipelinesError
from pipelines.generators.events import GeneratedEvent, generate_events
from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.generators.publish import publish_events
from pipelines.kafka.producer import make_producer
from tests.helpers import Record, pipelines, read_topic, runner


def assert_dense(records: list[Record]) -> None:
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r.offset)
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))


def placed(entries: list[LedgerEntry]) -> set[tuple[int | None, int | None, bytes | None, bytes]]:
    """(partition, offset, key, value) of every ledger entry: where the broker said it put what."""
    return {(e.partition, e.offset, e.key, e.value) for e in entries}


def test_generate_orders_the_topic_holds_exactly_the_ledger(
    bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    ledger = tmp_path / "ledger.jsonl"
    args = ["--count", "3000", "--seed", "11", "--late-fraction", "0.05", "--malformed-fraction", "0.1"]
    result = runner.invoke(
        app, ["generate", "orders", *args, "--ledger", str(ledger), "--topic", topic, "-b", bootstrap]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "sent 3,000 (late 150, malformed 300), acknowledged 3,000, failed 0 in " in result.stderr

    entries = read_ledger(ledger)
    assert [e.seq for e in entries] == list(range(3000))
    assert all(e.acknowledged for e in entries)
    assert Counter(e.kind for e in entries) == {"valid": 2550, "late": 150, "malformed": 300}
    # The ledger holds the generator's events, marks included, byte for byte ...
    expected = generate_events("orders", 3000, seed=11, late_fraction=0.05, malformed_fraction=0.1)
    assert [(e.key, e.value, e.kind, e.reason, e.late_by_ms) for e in entries] == [
        (e.key, e.value, e.kind, e.reason, e.late_by_ms) for e in expected
    ]
    # ... and the topic holds exactly the ledger: same records at the same partitions and offsets.
    records = read_topic(bootstrap, topic)
    assert len(records) == 3000
    assert {r.placed for r in records} == placed(entries)
    assert_dense(records)
    assert {e.partition for e in entries} == {0, 1, 2}


def test_same_seed_same_ledger_whatever_the_producer_settings(
    bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Through the installed `pipelines` script, as a user runs it."""
    ledgers = []
    for run, knobs in enumerate(
        [
            [],
            [
                "--compression",
                "zstd",
                "--linger-ms",
                "0",
                "--batch-size",
                "2048",
                "-X",
                "batch.num.messages=7",
            ],
        ]
    ):
        topic = new_topic(partitions=3)
        ledger = tmp_path / f"ledger-{run}.jsonl"
        done = pipelines(
            *("generate", "sales", "--count", "800", "--seed", "3", "--malformed-fraction", "0.02"),
            *("--ledger", str(ledger), "--topic", topic, *knobs),
            bootstrap=bootstrap,
            columns=None,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert lines[0] == f"producing 800 sales to '{topic}' (seed 3, late 0, malformed 16)"
        assert re.fullmatch(
            r"sent 800 \(late 0, malformed 16\), acknowledged 800, failed 0 "
            rf"in \d+\.\d\d s \([\d,]+ events/s\); ledger {re.escape(str(ledger))}",
            lines[1],
        )
        assert len(lines) == 2  # no progress bar when stderr is not a terminal
        assert done.stdout == ""
        ledgers.append(ledger.read_bytes())
    # Partitions follow the keys and offsets the order of sending: a fresh topic gets the same ledger.
    assert ledgers[0] == ledgers[1]
    assert ledgers[0].count(b"\n") == 800


def test_rate_paces_the_command(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    result = runner.invoke(
        app, ["generate", "orders", "--count", "21", "--rate", "100", "--topic", topic, "-b", bootstrap]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    seconds = float(re.search(r"failed 0 in (\d+\.\d+) s", result.stderr)[1])  # type: ignore[index]
    assert seconds >= 0.2  # 21 events at 100/s: the last leaves 0.2 s after the first


def test_a_missing_topic_is_a_one_line_error_before_anything_is_sent(bootstrap: str) -> None:
    result = runner.invoke(app, ["generate", "sales", "--topic", "no-such-topic", "-b", bootstrap])
    assert result.exit_code == 1
    assert isinstance(result.exception, PipelinesError)
    assert str(result.exception) == (
        f"topic 'no-such-topic' does not exist on {bootstrap}; "
        "create it with `pipelines topics create no-such-topic --partitions 3`"
    )


def test_an_interrupted_run_leaves_a_true_ledger(
    bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    ledger = tmp_path / "ledger.jsonl"

    def interrupted() -> Iterator[GeneratedEvent]:
        for event in generate_events("orders", 1000, seed=2, malformed_fraction=0.1):
            if event.seq == 250:
                raise KeyboardInterrupt  # Ctrl-C in the middle of a run
            yield event

    with pytest.raises(KeyboardInterrupt):
        publish_events(make_producer(bootstrap), topic, interrupted(), ledger=ledger)
    entries = read_ledger(ledger)
    assert [e.seq for e in entries] == list(range(250))
    assert all(e.acknowledged for e in entries)
    assert {r.placed for r in read_topic(bootstrap, topic)} == placed(entries)


def test_undeliverable_events_are_in_the_ledger_with_their_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        servers = f"127.0.0.1:{s.getsockname()[1]}"
    ledger = tmp_path / "ledger.jsonl"
    events = list(generate_events("sales", 4, seed=1, malformed_fraction=0.5))
    report = publish_events(
        make_producer(servers, {"message.timeout.ms": 1000}), "sales", events, ledger=ledger
    )
    assert (report.produce.sent, report.produce.acknowledged, len(report.produce.failed)) == (4, 0, 4)
    entries = read_ledger(ledger)
    assert [(e.seq, e.key, e.value, e.kind, e.reason) for e in entries] == [
        (e.seq, e.key, e.value, e.kind, e.reason) for e in events
    ]
    assert {(e.partition, e.offset, e.error) for e in entries} == {(None, None, "Local: Message timed out")}
    assert report.summary().startswith("sent 4 (late 0, malformed 2), acknowledged 0, failed 4 in ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--malformed-fraction", "2"], "--malformed-fraction must be between 0 and 1, not 2"),
        (["--late-fraction", "-0.5"], "--late-fraction must be between 0 and 1, not -0.5"),
        (
            ["--late-fraction", "0.7", "--malformed-fraction", "0.4"],
            "--late-fraction and --malformed-fraction add up to 1.1; "
            "at most 1 (an event is late or malformed, not both)",
        ),
        (["--rate", "0"], "--rate must be a positive number of events per second, not 0"),
        (["--count", "-3"], "--count must not be negative, not -3"),
        (["--late-by", "0.5"], "--late-by must be more than the normal disorder of 0.5 s, not 0.5"),
        (["--acks", "2"], "--acks must be all, 1 or 0, not '2'"),
        (
            ["--compression", "brotli"],
            "--compression must be one of lz4, zstd, snappy, gzip, none, not 'brotli'",
        ),
        (["-X", "linger.ms"], "--producer-config 'linger.ms' is not key=value"),
        (
            ["--ledger", "/no/such/dir/l.jsonl"],
            "--ledger /no/such/dir/l.jsonl: the folder /no/such/dir does not exist",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["generate", "orders", *args])
    assert result.exit_code == 1
    assert isinstance(result.exception, PipelinesError)
    assert str(result.exception) == message


def test_the_console_script_prints_bad_arguments_on_one_line_without_a_traceback() -> None:
    done = pipelines("generate", "sales", "--late-fraction", "1.5", timeout_s=60, columns=None)
    assert done.returncode == 1
    assert done.stderr == "error: --late-fraction must be between 0 and 1, not 1.5\n"
