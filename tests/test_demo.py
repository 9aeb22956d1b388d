"""`make run` (`pipelines demo`) as a user runs it, in a folder of its own with a broker of its own.

Run 1 is interrupted the way Ctrl-C at a terminal does it (SIGINT to the whole foreground process
group) once the revenue job has committed its first batch: it exits with 130, says so without a
traceback, stops the broker it started and leaves no process behind. Run 2 continues: it exits 0,
its events follow run 1's in event time (nothing produced twice), it writes the chart and the
report, and the Delta table holds every valid event of both runs' ledgers exactly once — the
interrupted batch was replayed into Delta without a duplicate. Expected values come from the
generator's ledgers, in plain Python. `pipelines demo --live --duration S` is run once too: it
stops by itself, closes every window and reconciles.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

import pytest

from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.local.broker import LocalBroker
from pipelines.paths import PROJECT_ROOT
from tests.helpers import PIPELINES, event_time, expected_windows, windows_of

COUNT = "600"


def demo_env(root: Path) -> dict[str, str]:
    """Everything the demo keeps (broker, tables, checkpoints, logs, report) under `root`."""
    return {
        **os.environ,
        "PIPELINES_BROKER__DIR": str(root / "broker"),
        "PIPELINES_PATHS__DATA_DIR": str(root / "data"),
        "PIPELINES_PATHS__CHECKPOINT_DIR": str(root / "checkpoints"),
    }


def live_processes_in_session(sid: int) -> list[str]:
    """Processes of session `sid` that still run (zombies, already dead, do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(f"{entry.name} {cmdline[:120]}")
    return found


def lines_of(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of `stream` as they come, read by a thread (None at the end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def first_commit(checkpoints: Path) -> bool:
    return any((checkpoints / "revenue_per_minute").glob("*/commits/0"))


def event_times(entries: list[LedgerEntry]) -> list[datetime]:
    return [event_time(e) for e in entries if e.kind == "valid"]


def late_per_window(entries: list[LedgerEntry]) -> dict[tuple[datetime, str], int]:
    late: dict[tuple[datetime, str], int] = defaultdict(int)
    for e in entries:
        if e.kind == "late":
            minute = event_time(e).replace(second=0, microsecond=0)
            late[(minute, json.loads(e.value)["category"])] += 1
    return late


@pytest.mark.usefixtures("own_spark")  # the demo runs its own Spark driver
def test_demo_interrupted_then_run_again_accounts_for_every_event(
    tmp_path: Path, own_broker: Callable[..., LocalBroker]
) -> None:
    from deltalake import DeltaTable

    env = demo_env(tmp_path)
    broker = own_broker(tmp_path / "broker")  # the demo's own, started and stopped by the demo

    # Run 1, interrupted by Ctrl-C once the revenue job has committed a batch.
    run1 = subprocess.Popen(
        [PIPELINES, "demo", "--count", COUNT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT,
        start_new_session=True,  # its own process group, as a terminal gives a foreground command
    )  # fmt: skip
    assert run1.stderr is not None
    lines, seen = lines_of(run1.stderr), []
    deadline = time.monotonic() + 300
    while not ("[5/6]" in "".join(seen) and first_commit(tmp_path / "checkpoints")):
        assert time.monotonic() < deadline, "".join(seen)
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        assert line is not None, f"the demo ended before it could be interrupted:\n{''.join(seen)}"
        seen.append(line)
    os.killpg(run1.pid, signal.SIGINT)  # what Ctrl-C does: SIGINT to the foreground process group
    assert run1.wait(timeout=180) == 130
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    said = "".join(seen)
    assert "interrupted" in said and "stopping the broker this run started" in said, said
    assert "Traceback" not in said, said
    assert live_processes_in_session(run1.pid) == []
    assert broker.running() is None

    # Run 2 continues where run 1 left off and finishes.
    run2 = subprocess.Popen(
        [PIPELINES, "demo", "--count", COUNT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT,
        start_new_session=True,
    )  # fmt: skip
    out, err = run2.communicate(timeout=900)
    assert run2.returncode == 0, err[-4000:]
    assert "Traceback" not in err, err
    assert "Revenue per category per minute" in out
    assert live_processes_in_session(run2.pid) == []
    assert broker.running() is None

    first, second = read_ledger(tmp_path / "demo-run-1.jsonl"), read_ledger(tmp_path / "demo-run-2.jsonl")
    assert len(first) == len(second) == int(COUNT)
    assert all(e.acknowledged for e in [*first, *second])
    assert min(event_times(second)) > max(event_times(first))  # run 2 produced new events only
    assert not {e.key for e in first} & {e.key for e in second}

    report = tmp_path / "report"
    assert (report / "revenue_per_minute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Reconciliation" in (report / "report.md").read_text()

    # Every valid event of both runs in the Delta table exactly once; a late event may be in it
    # (when the watermark had not passed its window yet) or not (dropped as late), never twice.
    rows = DeltaTable(str(tmp_path / "data" / "revenue_per_minute")).to_pyarrow_table().to_pylist()
    got = windows_of(rows)
    assert len(got) == len(rows), "a (window, category) was written twice"
    expected = expected_windows([*first, *second])
    late = late_per_window([*first, *second])
    assert set(expected) <= set(got) <= set(expected) | set(late)
    for key, (revenue, count) in got.items():
        valid_revenue, valid_count = expected.get(key, (Decimal("0.00"), 0))
        assert valid_count <= count <= valid_count + late.get(key, 0), key
        if count == valid_count:
            assert revenue == valid_revenue, key


@pytest.mark.usefixtures("own_spark")  # the live demo runs its own Spark driver
def test_live_demo_runs_for_its_duration_then_closes_every_window_and_reconciles(
    tmp_path: Path, own_broker: Callable[..., LocalBroker]
) -> None:
    """`pipelines demo --live --duration S` as a user runs it: generators at `--rate`, the jobs on
    processing-time triggers; at the end a closing heartbeat, every window written, the
    reconciliation line, the broker it started stopped, no process left. The Delta table holds
    every valid sale of the run's ledger exactly once (a late one may be in or out, never twice)."""
    from deltalake import DeltaTable

    broker = own_broker(tmp_path / "broker")
    live = subprocess.Popen(
        [PIPELINES, "demo", "--live", "--rate", "40", "--duration", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=demo_env(tmp_path),
        cwd=PROJECT_ROOT, start_new_session=True,
    )  # fmt: skip
    out, err = live.communicate(timeout=600)
    assert live.returncode == 0, err[-4000:]
    said = out + err
    assert "reconciles" in said and "DOES NOT RECONCILE" not in said, said[-4000:]
    assert "pipelines dashboard" in said and "Traceback" not in said, said[-4000:]
    assert live_processes_in_session(live.pid) == []
    assert broker.running() is None

    ledger = read_ledger(tmp_path / "demo-run-1.jsonl")
    assert ledger and all(e.acknowledged for e in ledger)
    rows = DeltaTable(str(tmp_path / "data" / "revenue_per_minute")).to_pyarrow_table().to_pylist()
    got = windows_of(rows)
    assert len(got) == len(rows), "a (window, category) was written twice"
    expected, late = expected_windows(ledger), late_per_window(ledger)
    assert set(expected) <= set(got) <= set(expected) | set(late)
    for key, (revenue, count) in got.items():
        valid_revenue, valid_count = expected.get(key, (Decimal("0.00"), 0))
        assert valid_count <= count <= valid_count + late.get(key, 0), key
        if count == valid_count:
            assert revenue == valid_revenue, key
