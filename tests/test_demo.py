"""`make run` (`pipelines demo`) as a user runs it, in a folder of its own with a broker of its own.

Run 1 is interrupted the way Ctrl-C at a terminal does it (SIGINT to the whole foreground process
group) once the revenue job has committed its first batch: it exits with 130, says so without a
traceback, stops the broker it started and leaves no process behind. Run 2 continues: it exits 0,
its events follow run 1's in event time (nothing produced twice), it writes the chart and the
report, and the Delta table holds every valid event of both runs' ledgers exactly once — the
interrupted batch was replayed into Delta without a duplicate. Expected values come from the
generator's ledgers, in plain Python. `pipelines demo --live --duration S` is run once too: it
stops by itself, closes every window and reconciles.

In Avro (`make run FORMAT=avro`), with a schema registry of its own: Ctrl-C while the registry
starts stops it and the broker; the next run's report accounts for every event of its ledger, whose
Avro records are decoded here with fastavro, and the Delta tables equal them exactly. A run in the
other format after an interrupted one is refused before it starts anything.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import queue
import re
import select
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import fastavro
import pytest

from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.local.broker import LocalBroker
from pipelines.paths import PROJECT_ROOT
from pipelines.registry.local import LocalRegistry
from pipelines.registry.schemas import SCHEMA_DIR
from tests.helpers import PIPELINES, event_time, expected_windows, pipelines, windows_of

COUNT = "600"


def demo_env(root: Path) -> dict[str, str]:
    """Everything the demo keeps (broker, tables, checkpoints, logs, report) under `root`."""
    return {
        **os.environ,
        "PIPELINES_BROKER__DIR": str(root / "broker"),
        "PIPELINES_PATHS__DATA_DIR": str(root / "data"),
        "PIPELINES_PATHS__CHECKPOINT_DIR": str(root / "checkpoints"),
    }


def live_processes_in_session(sid: int, within_s: float = 15.0) -> list[str]:
    """Processes of session `sid` still running `within_s` seconds after asked (zombies, already
    dead, do not count). The wait is for Spark's Python daemon: it stops its workers (SIGHUP) when
    it sees the driver's JVM gone, up to a second after the demo itself has exited."""
    deadline = time.monotonic() + within_s
    for entry in _processes_in_session(sid):
        try:
            pidfd = os.pidfd_open(int(entry.split()[0]))
        except ProcessLookupError:
            continue  # ended since the scan
        try:  # a pidfd turns readable when its process ends
            select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)
    return _processes_in_session(sid)


def _processes_in_session(sid: int) -> list[str]:
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


# -- `make run FORMAT=avro` -------------------------------------------------------------------------
def avro_demo_env(root: Path) -> dict[str, str]:
    """`demo_env`, the local schema registry under `root` too, and no registry URL or format from
    the environment the tests run in."""
    env = {**demo_env(root), "PIPELINES_REGISTRY_DIR": str(root / "registry")}
    for name in ("PIPELINES_SCHEMA_REGISTRY_URL", "PIPELINES_FORMAT"):
        env.pop(name, None)
    return env


def avro_records(entries: list[LedgerEntry], schema_file: str, schema_id: int) -> dict[int, dict[str, Any]]:
    """seq -> the record of every valid and late entry, decoded from its wire-format bytes with the
    contract's schema by fastavro (not the project's reader)."""
    schema = fastavro.parse_schema(json.loads((SCHEMA_DIR / schema_file).read_text()))
    records = {}
    for e in entries:
        if e.kind == "malformed":
            continue
        assert e.value[:5] == b"\x00" + schema_id.to_bytes(4, "big"), e
        records[e.seq] = fastavro.schemaless_reader(io.BytesIO(e.value[5:]), schema, schema)
    return records


def markdown_table(text: str, heading: str) -> dict[str, int]:
    """The `| reason | count |` rows under `heading` in the demo's report.md."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {name.strip(): int(count) for name, count in rows[1:]}


@pytest.mark.usefixtures("own_spark")  # the demo runs its own Spark driver
def test_avro_demo_interrupted_while_the_registry_starts_then_run_accounts_for_every_event(
    tmp_path: Path, own_broker: Callable[..., LocalBroker], jars_dir: Path
) -> None:
    """`make run FORMAT=avro` (`pipelines demo --format avro`) as a user runs it, in a folder of
    its own: Ctrl-C while the schema registry it started is starting stops the registry and the
    broker (exit 130, no process left); the next run registers the schemas, produces Avro, and its
    report accounts for every event of the ledger: the Delta tables equal the ledger's records,
    decoded here with fastavro, exactly. The registry and the broker it started are stopped."""
    from deltalake import DeltaTable

    env = avro_demo_env(tmp_path)
    broker = own_broker(tmp_path / "broker")  # the demo's own, started and stopped by the demo
    registry = LocalRegistry(tmp_path / "registry", jars_dir)
    try:
        # Run 1: Ctrl-C once the registry's JVM runs, while the demo waits for it to be ready.
        run1 = subprocess.Popen(
            [PIPELINES, "demo", "--format", "avro", "--count", COUNT],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT,
            start_new_session=True,
        )  # fmt: skip
        assert run1.stderr is not None
        lines, seen = lines_of(run1.stderr), []
        deadline = time.monotonic() + 120
        while not ("[2/7]" in "".join(seen) and (state := registry.read_state()) and state.pid):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                continue
            assert line is not None, f"the demo ended before it could be interrupted:\n{''.join(seen)}"
            seen.append(line)
        os.killpg(run1.pid, signal.SIGINT)
        assert run1.wait(timeout=120) == 130
        while (line := lines.get(timeout=10)) is not None:
            seen.append(line)
        said = "".join(seen)
        assert "interrupted" in said and "stopping the broker this run started" in said, said
        assert "Traceback" not in said, said
        assert live_processes_in_session(run1.pid) == []
        assert registry.running() is None and broker.running() is None

        # Run 2, in Avro to the end.
        run2 = subprocess.run(
            [PIPELINES, "demo", "--format", "avro", "--count", COUNT],
            capture_output=True, text=True, env={**env, "COLUMNS": "200"}, cwd=PROJECT_ROOT, timeout=900,
        )  # fmt: skip
        assert run2.returncode == 0, run2.stderr[-4000:]
        out, err = run2.stdout, run2.stderr
        assert "Traceback" not in err, err
        assert "[7/7]" in err and "stopping the schema registry this run started" in err, err
        assert registry.running() is None and broker.running() is None
    finally:
        registry.stop()
    sales_id = int(re.search(r"producing \d+ sales in Avro \(schema id (\d+)\)", err)[1])  # type: ignore[index]
    assert f"sales-value: version 1, id {sales_id} (BACKWARD)" in err
    orders_id = int(re.search(r"orders-value: version 1, id (\d+)", err)[1])  # type: ignore[index]

    sales = read_ledger(tmp_path / "demo-run-1.jsonl")
    orders = read_ledger(tmp_path / "demo-run-1-orders.jsonl")
    assert len(sales) == int(COUNT) and all(e.acknowledged for e in [*sales, *orders])
    kinds = Counter(e.kind for e in sales)
    sale_records, order_records = (
        avro_records(sales, "sales.avsc", sales_id),
        avro_records(orders, "orders.avsc", orders_id),
    )

    # The reconciliation line, against the ledger: every record read is accounted for.
    found = re.search(
        r"sales: read ([\d,]+) = aggregated ([\d,]+) \+ late ([\d,]+) \+ dead-lettered ([\d,]+) \+ "
        r"heartbeats ([\d,]+) \+ still open ([\d,]+): reconciles",
        out,
    )
    assert found, out
    read, aggregated, late, dead, heartbeats, still_open = (int(g.replace(",", "")) for g in found.groups())
    assert (read, dead, heartbeats, still_open) == (int(COUNT) + 3, kinds["malformed"], 3, 0)

    # The revenue table: each (minute, category) is its valid sales plus some of its late ones,
    # exactly (amounts and counts), and the late ones in it are what the line says was aggregated.
    valid: dict[tuple[datetime, str], list[Decimal]] = defaultdict(list)
    late_sales: dict[tuple[datetime, str], list[Decimal]] = defaultdict(list)
    for e in sales:
        if e.kind != "malformed":
            r = sale_records[e.seq]
            key = (r["timestamp"].replace(second=0, microsecond=0), r["category"])
            (valid if e.kind == "valid" else late_sales)[key].append(r["amount"])
    rows = DeltaTable(str(tmp_path / "data" / "revenue_per_minute")).to_pyarrow_table().to_pylist()
    got = windows_of(rows)
    assert len(got) == len(rows) and set(valid) <= set(got) <= set(valid) | set(late_sales)
    late_in_table = 0
    for key, (revenue, count) in got.items():
        extra = count - len(valid.get(key, []))
        late_amounts = late_sales.get(key, [])
        assert 0 <= extra <= len(late_amounts), key
        assert any(
            revenue == sum(valid.get(key, []), Decimal("0.00")) + sum(chosen, Decimal("0.00"))
            for chosen in itertools.combinations(late_amounts, extra)
        ), key
        late_in_table += extra
    assert aggregated == sum(count for _, count in got.values()) == kinds["valid"] + late_in_table
    assert late == kinds["late"] - late_in_table

    # Orders: shipped and dead-lettered as the ledger says; per-customer counts exact.
    order_kinds = Counter(e.kind for e in orders)
    assert re.search(
        rf"orders -> shipments: read {len(orders):,} = shipped {order_kinds['valid']:,} \+ dead-lettered "
        rf"{order_kinds['malformed']:,}: reconciles; {order_kinds['valid']:,} records on `shipments`",
        out,
    ), out
    per_customer: dict[str, tuple[int, Decimal]] = {}
    for record in order_records.values():
        n, total = per_customer.get(record["customer_id"], (0, Decimal("0.00")))
        per_customer[record["customer_id"]] = (n + 1, total + record["amount"])
    counts = DeltaTable(str(tmp_path / "data" / "customer_order_counts")).to_pyarrow_table().to_pylist()
    assert {r["customer_id"]: (r["order_count"], r["total_amount"]) for r in counts} == per_customer
    assert f"orders -> customer counts: {len(order_records):,} orders added" in out

    # The report's dead letters per reason are the ledger's.
    report = (tmp_path / "report" / "report.md").read_text()
    assert markdown_table(report, "## Dead letters in `sales.dlq`") == Counter(
        e.reason for e in sales if e.kind == "malformed"
    )
    assert markdown_table(report, "## Dead letters in `orders.dlq`") == Counter(
        e.reason for e in orders if e.kind == "malformed"
    )
    assert json.loads((tmp_path / "demo-state.json").read_text())["format"] == "avro"


def test_a_demo_in_the_other_format_is_refused_after_an_interrupted_run(tmp_path: Path) -> None:
    """The events an interrupted run left unread would be read with the other format's parser and
    dead-lettered: the next run in the other format is refused in one line, before it starts
    anything; in the same format it would continue them."""
    state = tmp_path / "demo-state.json"
    env = {**avro_demo_env(tmp_path), "PIPELINES_BROKER__DIR": str(tmp_path / "no-broker")}
    state.write_text(
        json.dumps({"run": 3, "next_start": "2026-11-27T10:20:00.000Z", "format": "json", "finished": False})
    )
    refused = pipelines("demo", "--format", "avro", "--count", "10", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: the previous run (run 3) wrote its events in json and was interrupted: its jobs may not "
        "have read them all, and this run would read them as avro and dead-letter them. Finish it first "
        "with `pipelines demo --format json`, or start afresh with `make clean`"
    ]
    assert not (tmp_path / "no-broker").exists()  # nothing was started
    refused = pipelines("demo", "--count", "10", env={**env, "PIPELINES_FORMAT": "avro"})
    assert "was interrupted" in refused.stderr and refused.returncode == 1


@pytest.mark.parametrize(
    ("variables", "command"),
    [
        ([], "pipelines demo"),
        (["FORMAT=avro"], "pipelines demo --format avro"),
        (["FORMAT=avro", "RUN_ARGS=--count 600"], "pipelines demo --format avro --count 600"),
    ],
)
def test_make_run_passes_the_format_and_the_run_args(variables: list[str], command: str) -> None:
    """`make run FORMAT=avro RUN_ARGS=...` is `pipelines demo --format avro ...`; `make run` alone
    is `pipelines demo` as before (`make -n`: the commands, not run; also under `make test-fast`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "FORMAT")}
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", *variables],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, check=True,
    )  # fmt: skip
    demo = [line.split() for line in shown.stdout.splitlines() if "pipelines demo" in line]
    assert demo == [[".venv/bin/pipelines", *command.split()[1:]]]
