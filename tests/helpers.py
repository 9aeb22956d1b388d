"""What more than one test module needs, in one place: test modules import helpers from here (and
fixtures from the conftest files), never from each other.

Expected values are built here in plain Python from literal inputs, the generator's ledger or the
contract's words, never by the code under test. Topic names, dead-letter header names and the
shipment's fixed words come from `pipelines.contracts`; the tests' literal expectations (a header
list, a shipment's bytes) stay literal in the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from typer.testing import CliRunner

from pipelines.contracts import (
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    SHIPMENT_ID_PREFIX,
    SHIPMENT_STATUS,
    dead_letter_topic,
)
from pipelines.generators.events import generate_events
from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.generators.publish import publish_events
from pipelines.kafka.admin import create_topic
from pipelines.kafka.producer import make_producer
from pipelines.paths import PROJECT_ROOT
from pipelines.queries import QueryGroup
from pipelines.security import client_conf
from pipelines.sinks import delta_row_count

# -- markers from fixtures (tests/conftest.py applies them) ----------------------------------------
FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "kafka_broker": ("kafka",),  # the test run's broker (also through bootstrap, new_topic, ...)
    # tests/registry/conftest.py: the run's schema registry, a JVM like the broker (`make test-fast`
    # deselects it with the broker's marker)
    "schema_registry": ("kafka",),
    "spark": ("spark",),  # the test run's SparkSession
    "own_broker": ("kafka", "slow"),  # a broker of the test's own
    "own_spark": ("spark", "slow"),  # a Spark driver of the test's own
    "secure_broker": ("kafka", "slow"),  # tests/security/conftest.py: the secured broker
    "kafka_cluster": ("kafka", "spark", "slow"),  # tests/local/test_cluster.py: three brokers and
    "spark_cluster": ("kafka", "spark", "slow"),  # a Spark standalone cluster, started together
}
"""Fixture -> the markers of every test that uses it: what it starts (a Kafka or a Spark JVM), and
`slow` when that is more than the test run's one broker and one session."""


# -- side-by-side groups (`make test` runs pytest-xdist with --dist loadgroup) -------------------
SPARK_SESSION_GROUP = "spark-session"
CLUSTER_GROUP = "cluster"


def xdist_group(item: pytest.Item) -> str:
    """The group a test runs in when the suite runs on several workers: a group runs on one worker,
    in collection order.

    - every test that uses the run's SparkSession, and every test of tests/security (the no-leak
      test searches what the secured jobs wrote, so it runs after them), in one group: one
      SparkSession per run, however many workers;
    - the 3-broker cluster's tests in one group: one cluster per run;
    - any other test with the rest of its module: a module's shared topics and fixtures are made
      once, and modules are balanced across the workers, the largest first.
    """
    used = set(getattr(item, "fixturenames", ()))
    if used & {"kafka_cluster", "spark_cluster"}:
        return CLUSTER_GROUP
    if "spark" in used or "security" in item.path.parts or "schema_registry" in used:
        # The schema registry's tests join the SparkSession's group: one registry per run, too.
        return SPARK_SESSION_GROUP
    return item.path.relative_to(PROJECT_ROOT).as_posix()


def require_markers(request: pytest.FixtureRequest) -> None:
    """Fail the requesting test unless it carries the markers of the requesting fixture (in
    FIXTURE_MARKERS), before the fixture starts anything: else `make test-fast` could start a JVM
    it promised not to start."""
    fixture = request.fixturename
    assert fixture is not None
    missing = [m for m in FIXTURE_MARKERS[fixture] if request.node.get_closest_marker(m) is None]
    if missing:
        pytest.fail(
            f"{request.node.nodeid} uses `{fixture}` without the marker(s) {', '.join(missing)}: ask for "
            "the fixture as a test argument (or in a fixture's), so that conftest marks the test",
            pytrace=False,
        )


def started(request: pytest.FixtureRequest, fixture: str) -> Any:
    """The value of `fixture` (a session or module fixture that starts JVMs) for the requesting
    fixture; first fails the test unless it carries the requesting fixture's markers."""
    require_markers(request)
    return request.getfixturevalue(fixture)


# -- the command line ---------------------------------------------------------------------------
PIPELINES = str(Path(sys.executable).with_name("pipelines"))
"""The installed `pipelines` console script, as a user runs it."""
JOBS_DIR = PROJECT_ROOT / "jobs"
"""The jobs' entry points (`python jobs/<job>.py`, `spark-submit jobs/<job>.py`)."""
runner = CliRunner()
"""`runner.invoke(app, [...])`: the command line in this process."""


def pipelines(
    *args: str | Path,
    bootstrap: str | None = None,
    timeout_s: float = 120,
    columns: int | None = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `pipelines ARGS [--bootstrap-servers BOOTSTRAP]` in `env` (default: this process's
    environment), with COLUMNS=`columns` (wide enough that no table cell wraps; None: as `env` says)."""
    command = [PIPELINES, *map(str, args)]
    if bootstrap is not None:
        command += ["--bootstrap-servers", bootstrap]
    environ = dict(os.environ if env is None else env)
    if columns is not None:
        environ["COLUMNS"] = str(columns)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environ)


class OwnSpark:
    """Command lines that start a Spark driver of the test's own: a JVM besides the test run's
    SparkSession. Handed out by the `own_spark` fixture, which marks the test `spark` and `slow`."""

    def job(self, job: str, *args: str) -> list[str]:
        """`python jobs/<job> ARGS`: the job as a user starts it without spark-submit."""
        return [sys.executable, str(JOBS_DIR / job), *args]

    def submit(
        self,
        job: str,
        *args: str,
        master: str,
        jars: str,
        log_dir: Path | None = None,
        conf: Mapping[str, str] | None = None,
    ) -> list[str]:
        """`spark-submit --master MASTER --jars JARS [--conf K=V ...] jobs/<job> ARGS`, the driver
        logging with the project's log4j configuration (to `log_dir`/spark.log when given)."""
        java_options = f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT}/conf/log4j2.properties"
        if log_dir is not None:
            java_options += f" -Dpipelines.log.dir={log_dir}"
        settings = {**(conf or {}), "spark.driver.extraJavaOptions": java_options}
        return [
            str(Path(sys.executable).parent / "spark-submit"),
            *("--master", master, "--jars", jars),
            *(arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")),
            str(JOBS_DIR / job),
            *args,
        ]


# -- reading topics ---------------------------------------------------------------------------------
Headers = tuple[tuple[str, bytes | None], ...]


def header_tuple(msg: Message) -> Headers:
    """The record's headers, in order, values as bytes (None stays None)."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)


@dataclass(frozen=True)
class Record:
    """One record as a consumer read it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @classmethod
    def of(cls, msg: Message) -> Record:
        return cls(msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), header_tuple(msg))

    @property
    def placed(self) -> tuple[int, int, bytes | None, bytes | None]:
        """(partition, offset, key, value): where the record is and what it holds, headers aside."""
        return self.partition, self.offset, self.key, self.value


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    start: Mapping[int, int] | None = None,
    isolation: str = "read_committed",
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of `topic` a consumer with `isolation.level=isolation` sees from `start`
    (partition -> offset; default: the beginning) to the end of each partition.

    The end is where each partition reports EOF: the log end for read_uncommitted, the last stable
    offset for read_committed (which skips aborted records and transaction markers, so the last
    record's offset + 1 is not the end there). The consumer is a plain one of this test, outside any
    group's offsets (with the security registered for `bootstrap`, on the secured broker)."""
    consumer = Consumer(
        {
            **client_conf(bootstrap),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign(
            [TopicPartition(topic, p, (start or {}).get(p, OFFSET_BEGINNING)) for p in partitions]
        )
        at_end: set[int] = set()
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is None:
                    records.append(Record.of(msg))
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                else:
                    raise AssertionError(err.str())
        return records
    finally:
        consumer.close()


def log_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> log-end offset of `topic`, asked of the broker by a consumer of this test."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets", "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in `topic`'s log (transaction markers included): the sum of its log-end offsets."""
    return sum(log_end_offsets(bootstrap, topic).values())


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Partition -> the offset `group` committed for it (negative where it committed none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def dead_letter_headers(letter: Record) -> dict[str, str]:
    """A dead letter's headers as text, by name (a name given twice: the last one)."""
    return {name: (value or b"").decode() for name, value in letter.headers}


def letter_reasons(letters: Iterable[Record]) -> dict[bytes | None, str]:
    """Key -> the `error.reason` of each dead letter."""
    return {letter.key: dead_letter_headers(letter)[HEADER_REASON] for letter in letters}


# -- waiting ------------------------------------------------------------------------------------------
def wait_until(
    condition: Callable[[], bool],
    queries: StreamingQuery | QueryGroup,
    what: str,
    timeout_s: float = 60.0,
) -> None:
    """Wait for `condition` with a deadline, pacing the checks on the queries' own termination wait;
    fails when a query stops first."""
    watched = queries.values() if isinstance(queries, QueryGroup) else [queries]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        for query in watched:
            # seconds; pyspark takes a float too (it waits int(timeout * 1000) ms)
            if query.awaitTermination(0.25 / len(watched)):  # type: ignore[arg-type]
                raise AssertionError(f"query {query.name} stopped before {what}: {query.exception()}")


class DeltaRows:
    """`rows()` is the number of rows in the Delta table at `path` (0 before it exists), counted by
    Spark again only after a new commit appears in its `_delta_log`: a wait on it polls a directory
    listing, not a Spark job every quarter second. (A commit file appears whole: Delta writes it
    under a temporary name and renames it.)"""

    def __init__(self, spark: SparkSession, path: Path) -> None:
        self.spark, self.path = spark, path
        self._seen: str | None = None
        self._rows = 0

    def __call__(self) -> int:
        latest = max((p.name for p in (self.path / "_delta_log").glob("*.json")), default=None)
        if latest is not None and latest != self._seen:
            self._seen = latest
            self._rows = delta_row_count(self.spark, self.path)
        return self._rows


def wait_while_running(
    condition: Callable[[], bool],
    proc: subprocess.Popen[Any],
    what: str,
    log: Path,
    timeout_s: float,
    pace_s: float = 0.5,
) -> None:
    """Wait for `condition` while `proc` runs; fails, with the end of its `log`, when it ends first
    or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{what} did not happen in {timeout_s} s:\n{log.read_text()[-3000:]}"
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=pace_s)  # paces the checks; returns at once if the process dies


def run_to_end(queries: QueryGroup) -> None:
    """Wait for every query of an available-now run to finish, then stop them all."""
    try:
        for query in queries.values():
            query.awaitTermination()
    finally:
        queries.stop()


# -- event time ---------------------------------------------------------------------------------------
CONTRACT_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
"""The contract's timestamp text: ISO-8601 UTC with milliseconds and a Z."""


def assert_encoded(key: bytes, value: bytes, event_id: str) -> dict[str, Any]:
    """The checks every encoded event passes: keyed by its id, a contract timestamp, and the amount a
    JSON number with exactly the Decimal's two places (no float artefacts). Returns the JSON."""
    doc: dict[str, Any] = json.loads(value)
    assert key == event_id.encode()
    assert CONTRACT_TIMESTAMP.match(doc["timestamp"])
    assert re.search(rb'"amount":\d+\.\d{2},', value)
    return doc


def t(minute: int, second: int = 0, ms: int = 0) -> datetime:
    """2026-11-27 10:<minute>:<second>.<ms> UTC."""
    return datetime(2026, 11, 27, 10, minute, second, ms * 1000, tzinfo=UTC)


def contract_timestamp(at: datetime) -> str:
    """`at` as the contract writes it: `2026-11-27T10:00:00.123Z`."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def ts(minute: int, second: int = 0, ms: int = 0) -> str:
    """`t(...)` as the contract writes it."""
    return contract_timestamp(t(minute, second, ms))


def parse_timestamp(text: str) -> datetime:
    """A contract timestamp as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class HasValue(Protocol):
    @property
    def value(self) -> bytes: ...


def event_time(event: HasValue) -> datetime:
    """The `timestamp` of an event's (or a ledger entry's) JSON value."""
    return parse_timestamp(json.loads(event.value)["timestamp"])


# -- sales and revenue -------------------------------------------------------------------------------
def sale(sale_id: str, category: str, amount: str, at: str) -> tuple[bytes, bytes]:
    """(key, value) of a sale; `amount` is written as given, a JSON number."""
    value = (
        f'{{"sale_id":"{sale_id}","order_id":"o-{sale_id}","category":"{category}",'
        f'"amount":{amount},"currency":"EUR","timestamp":"{at}"}}'
    )
    return sale_id.encode(), value.encode()


def heartbeat(at: str) -> tuple[bytes, bytes]:
    """(key, value) of a heartbeat at `at`."""
    return b"heartbeat", f'{{"heartbeat":true,"timestamp":"{at}"}}'.encode()


Windows = dict[tuple[datetime, str], tuple[Decimal, int]]
"""(window start, category) -> (revenue, sales count)."""


def expected_windows(entries: list[LedgerEntry]) -> Windows:
    """Revenue and count per (minute, category) of the valid events, in plain Python."""
    revenue: dict[tuple[datetime, str], Decimal] = defaultdict(lambda: Decimal("0.00"))
    count: Counter[tuple[datetime, str]] = Counter()
    for e in entries:
        if e.kind != "valid":
            continue
        doc = json.loads(e.value, parse_float=Decimal)
        window = (parse_timestamp(doc["timestamp"]).replace(second=0, microsecond=0), doc["category"])
        revenue[window] += Decimal(doc["amount"])
        count[window] += 1
    return {window: (revenue[window], count[window]) for window in count}


def heartbeat_after(windows: Windows, minutes: int = 5) -> tuple[bytes, bytes]:
    """A heartbeat `minutes` after the start of the last of `windows`: it closes every one of them,
    as the quiet end of a real stream would."""
    last = max(minute for minute, _ in windows)
    return heartbeat(contract_timestamp(last + timedelta(minutes=minutes)))


def windows_of(rows: Iterable[Any]) -> Windows:
    """The revenue table's rows (Spark rows or delta-rs dicts) as (window start in UTC, category)
    -> (revenue, sales count); a (window, category) written twice counts once here."""
    return {
        (r["window_start"].replace(tzinfo=UTC), r["category"]): (r["revenue"], r["sales_count"]) for r in rows
    }


# -- orders and shipments --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """One record as the broker acknowledged it, and what the pipelines must make of it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    reason: str | None = None
    """The dead-letter reason it must get; None for a valid (or late) order."""


def produce_orders(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes | None, Headers, str | None]]
) -> list[Sent]:
    """Produce (key, value, headers, expected reason) records; return them as acknowledged."""
    producer = make_producer(bootstrap)
    acked: list[Sent] = []
    for key, value, headers, reason in records:

        def on_delivery(
            err: KafkaError | None, msg: Message, h: Headers = headers, r: str | None = reason
        ) -> None:
            assert err is None, err
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            acked.append(Sent(partition, offset, msg.key(), msg.value(), h, r))

        producer.produce(topic, key=key, value=value, headers=list(headers) or None, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return acked


def orders_with_headers(seed: int, count: int) -> list[tuple[bytes, bytes | None, Headers, str | None]]:
    """`count` valid hand-built orders carrying two headers, for `produce_orders`."""
    records: list[tuple[bytes, bytes | None, Headers, str | None]] = []
    for n in range(count):
        key = f"order-h-{seed}-{n}".encode()
        value = json.dumps(
            {"order_id": key.decode(), "customer_id": f"cust-h{n}", "amount": 10.0 + n, "currency": "EUR",
             "timestamp": f"2026-11-27T11:00:0{n % 10}.{n:03d}Z"}
        ).encode()  # fmt: skip
        records.append((key, value, (("trace-id", f"t-{n}".encode()), ("origin", b"web")), None))
    return records


def publish_orders(
    bootstrap: str,
    topic: str,
    ledger: Path,
    count: int,
    seed: int,
    *,
    late_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
    headers: int = 0,
) -> list[Sent]:
    """`count` seeded orders (late and malformed ones as the fractions say) on `topic`, read back
    from the generator's ledger; then `headers` hand-built valid orders carrying headers."""
    events = generate_events(
        "orders", count, seed=seed, late_fraction=late_fraction, malformed_fraction=malformed_fraction
    )
    report = publish_events(make_producer(bootstrap), topic, events, ledger=ledger)
    assert report.produce.failed == [] and report.produce.acknowledged == count
    sent = [
        Sent(e.partition, e.offset, e.key, e.value, reason=e.reason)
        for e in read_ledger(ledger)
        if e.partition is not None and e.offset is not None
    ]
    return sent + produce_orders(bootstrap, topic, orders_with_headers(seed, headers))


class Topics(NamedTuple):
    """A pipeline's topics: source, sink and the source's dead-letter topic."""

    source: str
    sink: str
    dlq: str


def make_topics(bootstrap: str, new_topic: Callable[..., str], partitions: int = 3) -> Topics:
    """A source and a sink with the same partition count (so a preserved key keeps its partition
    number) and the source's `<source>.dlq`."""
    source, sink = new_topic(partitions=partitions), new_topic(partitions=partitions)
    create_topic(bootstrap, dead_letter_topic(source), partitions=1)
    return Topics(source, sink, dead_letter_topic(source))


def shipment_value(order_value: bytes) -> bytes:
    """The contract's shipment for a valid order's value, built here from the order's JSON."""
    order = json.loads(order_value)
    shipment = {
        "shipment_id": SHIPMENT_ID_PREFIX + order["order_id"],
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "status": SHIPMENT_STATUS,
        "created_at": order["timestamp"],
    }
    return json.dumps(shipment, separators=(",", ":"), ensure_ascii=False).encode()


def expected_shipments(sent: list[Sent]) -> dict[tuple[bytes | None, bytes], tuple[int, Headers]]:
    """(key, value) of every valid order's shipment -> (partition, headers) it must have."""
    return {
        (s.key, shipment_value(s.value or b"")): (s.partition, s.headers) for s in sent if s.reason is None
    }


def assert_shipped_exactly_once(records: list[Record], sent: list[Sent]) -> None:
    """The shipments topic holds every valid order's shipment once and nothing else."""
    expected = expected_shipments(sent)
    counts = Counter((r.key, r.value) for r in records)
    missing = [k for k in expected if k not in counts]
    twice = {k: n for k, n in counts.items() if n > 1}
    foreign = [k for k in counts if k not in expected]
    assert not (missing or twice or foreign), (
        f"{len(missing)} shipments missing (first: {missing[:3]}), {len(twice)} written more than once "
        f"(first: {list(twice.items())[:3]}), {len(foreign)} not expected (first: {foreign[:3]})"
    )  # every shipment once, nothing else
    # Same key, same partition (Spark's sink and our producers both hash with murmur2): an order's
    # records stay in order. Headers are the order's, untouched.
    assert {(r.key, r.value): (r.partition, r.headers) for r in records} == expected


def assert_dead_letters(bootstrap: str, dlq: str, sent: list[Sent], source_topic: str) -> None:
    """The dead-letter topic holds every malformed order, with its reason and origin."""
    got = {}
    for letter in read_topic(bootstrap, dlq):
        headers = dead_letter_headers(letter)
        assert headers[HEADER_SOURCE_TOPIC] == source_topic and headers[HEADER_DETAIL]
        got[letter.key] = (
            letter.value,
            headers[HEADER_REASON],
            int(headers[HEADER_SOURCE_PARTITION]),
            int(headers[HEADER_SOURCE_OFFSET]),
        )
    assert got == {s.key: (s.value, s.reason, s.partition, s.offset) for s in sent if s.reason is not None}


def assert_pipeline_output(bootstrap: str, topics: Topics, sent: list[Sent]) -> None:
    """Every valid order shipped once to `topics.sink`, every malformed one in `topics.dlq`."""
    assert_shipped_exactly_once(read_topic(bootstrap, topics.sink), sent)
    assert_dead_letters(bootstrap, topics.dlq, sent, topics.source)


# -- DataFrames shaped like the kafka source's output ---------------------------------------------------
KAFKA_HEADERS = ArrayType(StructType([StructField("key", StringType()), StructField("value", BinaryType())]))
KAFKA_ROWS = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
    ]
)
KAFKA_ROWS_WITH_HEADERS = StructType([*KAFKA_ROWS.fields, StructField("headers", KAFKA_HEADERS)])


def kafka_batch(spark: SparkSession, topic: str, records: Sequence[tuple[Any, ...]]) -> DataFrame:
    """A batch DataFrame like the kafka source reads from partition 0 of `topic`: `records` are
    (key, value) pairs at offsets 0, 1, ..., or (key, value, headers) triples, as read with
    includeHeaders=true."""
    with_headers = any(len(r) == 3 for r in records)
    rows = [(r[0], r[1], topic, 0, offset, *r[2:]) for offset, r in enumerate(records)]
    return spark.createDataFrame(rows, KAFKA_ROWS_WITH_HEADERS if with_headers else KAFKA_ROWS)


def read_kafka_batch(spark: SparkSession, bootstrap: str, topic: str) -> DataFrame:
    """Everything in `topic`, read by Spark's kafka source as a batch."""
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
