"""Reads what the jobs leave behind into a Snapshot (`snapshot.py`):

- the append-mode Delta table `revenue_per_minute` (final windows), with delta-rs (`deltalake`):
  no JVM, milliseconds per read, read again only after a new commit appears in `_delta_log`;
- optionally an update-mode (MERGE) table, and the `revenue-per-minute` topic (read_committed,
  the latest update per window and category): windows not final yet;
- the JSON-lines progress files of the queries (`pipelines.monitor.progress`), read incrementally;
- the queries' checkpoints against the topics' log-end offsets: lag per partition, as
  `pipelines status` computes it (`pipelines.monitor.lag`);
- the dead-letter topics: records per `error.reason`.

Kafka is read by one background thread (a plain consumer, assigned, no group, nothing committed);
when no broker answers, the page says so and shows what the files hold.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipelines.contracts import HEADER_REASON
from pipelines.dashboard.snapshot import (
    REVENUE_JOB,
    SHIPMENTS_JOB,
    PartitionLag,
    Snapshot,
    Window,
    parse_time,
    query_statuses,
    revenue_account,
    revenue_windows,
    shipments_account,
)
from pipelines.monitor.lag import find_checkpoints, query_lag, read_query_offsets

log = logging.getLogger("pipelines.dashboard")
_LIBRDKAFKA = logging.getLogger("pipelines.dashboard.librdkafka")
_LIBRDKAFKA.propagate = False  # a broker going away is shown on the page, not logged at every retry
_LIBRDKAFKA.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard looks. Plain values: the command builds them from the profile."""

    table: Path
    """The append-mode Delta table revenue_per_minute (final windows)."""
    checkpoints: tuple[Path, ...]
    """Folders holding query checkpoints and `*.progress.jsonl` files."""
    updates_topic: str | None = "revenue-per-minute"
    """The revenue job's Kafka sink (update mode): windows not final yet. None: not read."""
    updates_table: Path | None = None
    """An update-mode (MERGE) table of revenue_per_minute: windows not final yet."""
    dead_letter_topics: dict[str, str] = field(default_factory=dict)
    """Job -> its dead-letter topic."""
    progress_files: tuple[Path, ...] = ()
    """Progress files besides the ones found under `checkpoints`."""


class ProgressFiles:
    """The progress lines of every `*.progress.jsonl` under the checkpoint folders (and next to
    them, where the jobs put them by default), read incrementally: only whole new lines."""

    def __init__(self, roots: Iterable[Path], extra: Iterable[Path] = ()) -> None:
        self._roots, self._extra = list(roots), list(extra)
        self._read: dict[Path, int] = {}
        self._lines: list[dict[str, Any]] = []

    def files(self) -> list[Path]:
        found = list(self._extra)
        for root in self._roots:
            found += sorted(root.rglob("*.progress.jsonl")) if root.is_dir() else []
            found += sorted(root.parent.glob("*.progress.jsonl")) if root.parent.is_dir() else []
        return list(dict.fromkeys(p for p in found if p.is_file()))

    def lines(self) -> list[dict[str, Any]]:
        for path in self.files():
            done = self._read.get(path, 0)
            if path.stat().st_size < done:  # the file was replaced: read it again
                done = 0
                self._lines = [line for line in self._lines if line.get("_file") != str(path)]
            with path.open("rb") as fh:
                fh.seek(done)
                chunk = fh.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
            for raw in whole.splitlines():
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    self._lines.append({**doc, "_file": str(path)})
            self._read[path] = done + len(whole)
        return self._lines


class DeltaWindows:
    """(window, category) -> (revenue, sales count) of a revenue_per_minute Delta table, read with
    delta-rs again only when a new commit appears in its `_delta_log`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: str | None = None
        self._windows: dict[Window, tuple[Decimal, int]] = {}

    def exists(self) -> bool:
        return (self.path / "_delta_log").is_dir()

    def read(self) -> dict[Window, tuple[Decimal, int]]:
        latest = max((p.name for p in (self.path / "_delta_log").glob("*.json")), default=None)
        if latest is None or latest == self._seen:
            return self._windows
        from deltalake import DeltaTable

        columns = ["window_start", "category", "revenue", "sales_count"]
        rows = DeltaTable(str(self.path)).to_pyarrow_table(columns=columns).to_pylist()
        self._windows = {
            (_utc(r["window_start"]), r["category"]): (r["revenue"], r["sales_count"]) for r in rows
        }
        self._seen = latest
        return self._windows


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class KafkaTopics:
    """A background reader of the dead-letter topics (records per reason) and the revenue updates
    topic (the latest update per window and category), from the beginning, read_committed, with no
    consumer group. Topics that do not exist yet are looked for again every few seconds."""

    LOOK_AGAIN_S = 3.0

    def __init__(self, servers: str, dead_letter_topics: Iterable[str], updates_topic: str | None) -> None:
        from confluent_kafka import Consumer

        from pipelines.security import client_conf

        self.servers = servers
        self._dlq = list(dict.fromkeys(dead_letter_topics))
        self._updates = updates_topic
        self._lock = threading.Lock()
        self._reasons: dict[str, dict[str, int]] = {t: {} for t in self._dlq}
        self._latest: dict[Window, tuple[Decimal, int]] = {}
        self.updates_seen = False
        """True once the updates topic exists: open windows are known (none, or those it holds)."""
        self.error: str | None = None
        self._errors: list[Any] = []
        conf = {
            **client_conf(servers),
            "group.id": "pipelines-dashboard",  # never joined: partitions are assigned, nothing committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self._errors.append,
        }
        self._consumer = Consumer(conf, logger=_LIBRDKAFKA)
        self._offsets = Consumer({**conf, "error_cb": lambda _e: None}, logger=_LIBRDKAFKA)
        self._offsets_lock = threading.Lock()
        self._assigned: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-kafka", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._offsets_lock:
            self._offsets.close()

    def dead_letters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {t: dict(r) for t, r in self._reasons.items()}

    def updates(self) -> dict[Window, tuple[Decimal, int]]:
        with self._lock:
            return dict(self._latest)

    def end_offsets(self, topics: Iterable[str], timeout_s: float = 5.0) -> dict[str, dict[int, int]]:
        """Topic -> partition -> log-end offset; a topic the broker does not know is left out."""
        from confluent_kafka import TopicPartition

        ends: dict[str, dict[int, int]] = {}
        with self._offsets_lock:
            for topic in topics:
                md = self._offsets.list_topics(topic, timeout=timeout_s).topics.get(topic)
                if md is None or md.error is not None:
                    continue
                ends[topic] = {
                    p: int(
                        self._offsets.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                    )
                    for p in sorted(md.partitions)
                }
        return ends

    def _run(self) -> None:
        from confluent_kafka import KafkaException

        looked = 0.0
        try:
            while not self._stop.is_set():
                wanted = [t for t in [*self._dlq, self._updates] if t and t not in self._assigned]
                if wanted and time.monotonic() - looked >= self.LOOK_AGAIN_S:
                    looked = time.monotonic()
                    try:
                        self._assign(wanted)
                    except KafkaException as exc:
                        self.error = exc.args[0].str() if exc.args else str(exc)
                if not self._assigned:
                    self._stop.wait(0.5)
                    continue
                for msg in self._consumer.consume(500, 0.5):
                    if msg.error() is None:
                        self._take(msg)
                if self._errors:
                    self.error = self._errors[-1].str()
                    self._errors.clear()
        finally:
            self._consumer.close()

    def _assign(self, topics: list[str]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        md = self._consumer.list_topics(timeout=5)
        self.error = None
        found = [t for t in topics if t in md.topics and md.topics[t].error is None]
        if not found:
            return
        self._consumer.incremental_assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in found for p in sorted(md.topics[t].partitions)]
        )
        self._assigned.update(found)
        if self._updates in found:
            self.updates_seen = True

    def _take(self, msg: Any) -> None:
        topic = msg.topic()
        with self._lock:
            if topic == self._updates:
                try:
                    doc = json.loads(msg.value() or b"", parse_float=Decimal)
                    at = parse_time(doc["window_start"])
                    if at is not None:
                        self._latest[(at, doc["category"])] = (
                            Decimal(doc["revenue"]),
                            int(doc["sales_count"]),
                        )
                except (ValueError, KeyError, TypeError):
                    log.warning("not a revenue update at %s [%s] %s", topic, msg.partition(), msg.offset())
                return
            headers = dict(msg.headers() or [])
            reason = (headers.get(HEADER_REASON) or b"(no reason header)").decode(errors="replace")
            counts = self._reasons.setdefault(topic, {})
            counts[reason] = counts.get(reason, 0) + 1


class Monitor:
    """Builds Snapshots for the page and for `/metrics` (at most one per `max_age_s`: a scrape
    and a page refresh at the same moment share one). `find_servers` returns the Kafka bootstrap
    servers, or None while no broker runs; it is asked again until one does."""

    def __init__(self, config: DashboardConfig, find_servers: Callable[[], str | None]) -> None:
        self.config = config
        self._find_servers = find_servers
        self._progress = ProgressFiles(config.checkpoints, config.progress_files)
        self._table = DeltaWindows(config.table)
        self._updates_table = DeltaWindows(config.updates_table) if config.updates_table else None
        self._kafka: KafkaTopics | None = None
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._last_at = 0.0
        self._refresher: threading.Thread | None = None
        self._done = threading.Event()

    def start(self, every_s: float) -> None:
        """Take a snapshot every `every_s` seconds from a thread of its own, so that the page
        (`latest()`) never waits for Kafka or the table while it renders."""
        self._done = threading.Event()

        def refresh() -> None:
            while True:
                try:
                    self.snapshot(max_age_s=0)
                except Exception:  # shown on the page as soon as a later one works
                    log.exception("taking a snapshot failed")
                if self._done.wait(every_s):
                    return

        self._refresher = threading.Thread(target=refresh, name="dashboard-refresh", daemon=True)
        self._refresher.start()

    def latest(self) -> Snapshot:
        """The latest snapshot, without waiting for a new one (one is taken if there is none yet)."""
        last = self._last
        return last if last is not None else self.snapshot()

    def close(self) -> None:
        if self._refresher is not None:
            self._done.set()
            self._refresher.join(timeout=30)
        if self._kafka is not None:
            self._kafka.close()

    def snapshot(self, max_age_s: float = 1.0) -> Snapshot:
        with self._lock:
            if self._last is None or time.monotonic() - self._last_at >= max_age_s:
                self._last = self._take()
                self._last_at = time.monotonic()
            return self._last

    def _connect(self, notes: list[str]) -> KafkaTopics | None:
        if self._kafka is None:
            try:
                servers = self._find_servers()
            except Exception as exc:  # a broker folder in a bad state, say: shown, asked again later
                notes.append(str(exc))
                return None
            if servers is None:
                return None
            self._kafka = KafkaTopics(
                servers, self.config.dead_letter_topics.values(), self.config.updates_topic
            )
        return self._kafka

    def _take(self) -> Snapshot:
        notes: list[str] = []
        final: dict[Window, tuple[Decimal, int]] = {}
        if self._table.exists():
            final = self._table.read()
        else:
            notes.append(f"no Delta table at {self._table.path} yet: run `pipelines demo` or the revenue job")
        updates: dict[Window, tuple[Decimal, int]] = {}
        open_known = False
        if self._updates_table is not None and self._updates_table.exists():
            updates.update(self._updates_table.read())
            open_known = True
        kafka = self._connect(notes)
        if kafka is not None:
            updates.update(kafka.updates())
            open_known = open_known or kafka.updates_seen
        windows = revenue_windows(final, updates)
        queries = query_statuses(self._progress.lines())
        lags: list[PartitionLag] = []
        servers: str | None = None
        if kafka is not None:
            try:
                lags = self._lags(kafka)
                servers = kafka.servers
            except Exception as exc:
                notes.append(f"Kafka at {kafka.servers} did not answer ({_first_line(exc)}): lag unknown")
            if kafka.error and servers is None:
                notes.append(f"Kafka at {kafka.servers}: {kafka.error}")
        else:
            notes.append(
                "no Kafka broker is running: lag and dead-letter reasons need it "
                "(start it with `pipelines broker start`, or pass --bootstrap-servers)"
            )
        snapshot = Snapshot(
            taken_at=datetime.now(UTC),
            windows=windows,
            queries=queries,
            lags=lags,
            revenue=None,
            shipments=None,
            dead_letters=kafka.dead_letters() if kafka is not None else {},
            dead_letter_topics=dict(self.config.dead_letter_topics),
            kafka=servers,
            notes=notes,
        )
        main = snapshot.main_query(REVENUE_JOB)
        # An append-mode aggregation whose latest batch kept no state has no open window: exact.
        open_known = open_known or (
            main is not None and main.query.endswith("_delta") and main.state_rows == 0
        )
        if main is not None and not main.observed_complete:
            notes.append(
                "some progress lines carry no observed metrics (written by an older version): "
                "the reconciliation needs every batch's; `make clean` starts afresh"
            )
        return Snapshot(
            **{
                **snapshot.__dict__,
                "revenue": revenue_account(main, windows, open_known),
                "shipments": shipments_account(snapshot.main_query(SHIPMENTS_JOB)),
            }
        )

    def _lags(self, kafka: KafkaTopics) -> list[PartitionLag]:
        checkpoints = [(root, cp) for root in self.config.checkpoints for cp in find_checkpoints(root)]
        offsets = [(root, read_query_offsets(cp)) for root, cp in checkpoints]
        topics = sorted({t for _, o in offsets for t in o.offsets})
        ends = kafka.end_offsets(topics) if topics else {}
        lags = []
        for root, o in offsets:
            name = "_".join(o.checkpoint.relative_to(root).parts) if o.checkpoint != root else root.name
            known = {t: ends[t] for t in o.offsets if t in ends}
            for lag in query_lag(o, known):
                for partition, (done, end, _) in sorted(lag.per_partition.items()):
                    lags.append(PartitionLag(name, lag.topic, partition, done, end))
        return lags


def _first_line(exc: BaseException) -> str:
    text = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    return (text.splitlines() or [type(exc).__name__])[0]
