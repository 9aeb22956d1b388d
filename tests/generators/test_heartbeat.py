"""`pipelines generate sales --heartbeat S`: one heartbeat per partition, S seconds of event time
after the latest valid event, after every event (so a windowed job can close its last windows)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pipelines.cli import app
from pipelines.generators.ledger import read_ledger
from tests.helpers import contract_timestamp, event_time, read_topic, runner


def test_heartbeats_follow_the_events_on_every_partition(
    bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    ledger = tmp_path / "ledger.jsonl"
    result = runner.invoke(
        app,
        ["generate", "sales", "--count", "500", "--late-fraction", "0.1", "--heartbeat", "90",
         "--ledger", str(ledger), "--topic", topic, "-b", bootstrap],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert "sent 3 heartbeat(s)" in result.stderr

    latest = max(event_time(e) for e in read_ledger(ledger) if e.kind == "valid")
    beat_at = contract_timestamp(latest + timedelta(seconds=90))
    records = read_topic(bootstrap, topic)
    assert len(records) == 503
    heartbeats = sorted((r.partition, r.value) for r in records if r.key == b"heartbeat")
    expected_value = f'{{"heartbeat":true,"timestamp":"{beat_at}"}}'.encode()
    assert heartbeats == [(0, expected_value), (1, expected_value), (2, expected_value)]
    # Each heartbeat is the last record of its partition.
    last = {p: max(r.offset for r in records if r.partition == p) for p in (0, 1, 2)}
    assert all(r.key == b"heartbeat" for r in records if r.offset == last[r.partition])


def test_heartbeat_is_refused_for_orders(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    result = runner.invoke(
        app, ["generate", "orders", "--heartbeat", "60", "--topic", topic, "-b", bootstrap]
    )
    assert result.exit_code != 0
