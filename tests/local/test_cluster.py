"""The local cluster under failure, with exact accounting: three real KRaft nodes and a real Spark
standalone master with two workers, started once for the module by `pipelines cluster up` (with a
profile on free ports) and stopped by `pipelines broker stop --dir` and `pipelines cluster down`.

- A leader SIGKILLed while 200,000 events are produced with acks=all and idempotence: every
  acknowledged event is in the topic exactly once, at the partition and offset the ledger says,
  offsets dense; restarted, the node's replicas return to every in-sync set.
- Two of three nodes down: an acks=all produce fails, each record with a delivery error, rather
  than being acknowledged and lost.
- spark-submit runs the shipments job on the standalone master against the three brokers: one
  shipment per valid order, every malformed order dead-lettered with its reason.
- spark-submit runs the revenue job on the standalone master against the three brokers; a broker
  and a worker (with its executor) SIGKILLed mid-job do not change a single Delta row.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType
from pyspark.sql import SparkSession

from pipelines.commands.cluster import local_cluster, local_spark
from pipelines.config import load_settings
from pipelines.errors import PipelinesError
from pipelines.generators.events import generate_events
from pipelines.generators.heartbeat import send_heartbeats
from pipelines.generators.ledger import read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.revenue_per_minute import RevenueJob, start_revenue_per_minute
from pipelines.kafka.admin import (
    PartitionInfo,
    admin_client,
    create_topic,
    describe_topic,
    end_offsets,
    read_range,
    wait_for_leaders,
)
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.local.cluster import LocalCluster, wait_for
from pipelines.local.jvm import spark_jars
from pipelines.local.spark_cluster import SparkStandalone
from tests.helpers import (
    OwnSpark,
    Topics,
    assert_pipeline_output,
    expected_windows,
    pipelines,
    publish_orders,
    started,
    topic_size,
    wait_while_running,
    windows_of,
)

EVENTS = 200_000
"""What the issue asks for; about 15 s of producing on this two-core machine."""
KILL_AT = 100_000
"""The leader dies when half the events have been handed to the producer: thousands are in flight
and as many again are still to be sent."""


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the `pipelines` command as a user does, in a terminal 120 columns wide."""
    return pipelines(*args, timeout_s=300, columns=120)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory, jars_dir: Path) -> Path:
    """A cluster profile like conf/cluster.yaml, on free ports and in a temporary folder."""
    folder = tmp_path_factory.mktemp("local-cluster")
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(4)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    settings = {
        "kafka": {"bootstrap_servers": ",".join(f"127.0.0.1:{p}" for p in ports[:3])},
        "broker": {"dir": str(folder / "cluster"), "start_timeout_s": 180},
        "spark": {"master": f"spark://127.0.0.1:{ports[3]}"},
        "paths": {"jars_dir": str(jars_dir)},
    }
    path = folder / "cluster.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def _cluster_up(profile: Path) -> Iterator[tuple[LocalCluster, SparkStandalone]]:
    """`pipelines cluster up` for the module (three brokers, a master, two workers); at the end,
    `pipelines broker stop --dir` stops the brokers and `pipelines cluster down` the Spark cluster."""
    settings = load_settings(profile, {})
    kafka, spark = local_cluster(settings, None), local_spark(settings)
    try:
        up = cli("cluster", "up", "--profile", profile)
        assert up.returncode == 0, up.stderr
        assert up.stdout.splitlines() == [
            f"bootstrap_servers={settings.kafka.bootstrap_servers}",
            f"spark_master={settings.spark.master}",
        ]
        yield kafka, spark
    finally:
        brokers = cli("broker", "stop", "--dir", kafka.directory)
        down = cli("cluster", "down", "--profile", profile)
        kafka.stop()  # reaps the nodes this process restarted
    assert brokers.returncode == 0 and "cluster stopped" in brokers.stderr, brokers.stderr
    assert down.returncode == 0 and "Spark cluster stopped" in down.stderr, down.stderr
    assert kafka.running_nodes() == [] and spark.read_state() is not None
    assert all(d.pid is None for d in spark.read_state().daemons)  # type: ignore[union-attr]


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest) -> LocalCluster:
    """The module's three brokers (started with the Spark cluster by the first test that needs either)."""
    kafka, _ = started(request, "_cluster_up")
    return kafka


@pytest.fixture
def spark_cluster(request: pytest.FixtureRequest) -> SparkStandalone:
    """The module's Spark standalone cluster: a master and two workers."""
    _, spark = started(request, "_cluster_up")
    return spark


@pytest.fixture
def servers(kafka_cluster: LocalCluster) -> str:
    """The cluster's bootstrap servers, with every node running and listed in the metadata,
    whatever an earlier test left down."""
    state, _ = kafka_cluster.start()
    return state.bootstrap_servers


def _topic(name: str) -> str:
    return f"{name}-{os.urandom(4).hex()}"


def partitions(servers: str, topic: str) -> tuple[PartitionInfo, ...] | None:
    """The topic's partitions, or None while the admin client cannot tell (it may still be asking a
    node that died a moment ago)."""
    try:
        return describe_topic(servers, topic, timeout_s=5).partitions
    except PipelinesError:
        return None


def wait_partitions(
    servers: str,
    topic: str,
    ok: Callable[[tuple[PartitionInfo, ...]], bool],
    what: str,
    timeout_s: float = 60.0,
) -> tuple[PartitionInfo, ...]:
    """Describe `topic` until `ok` holds (deadline `timeout_s`); the partitions that satisfied it."""
    seen: list[tuple[PartitionInfo, ...]] = []

    def check() -> bool:
        found = partitions(servers, topic)
        if found is not None and ok(found):
            seen.append(found)
            return True
        return False

    wait_for(check, timeout_s, what)
    return seen[-1]


def settled(servers: str, topic: str, count: int = 6) -> tuple[PartitionInfo, ...]:
    """The partitions of a new topic once every broker knows it and each partition has a leader
    and all three replicas in sync (brokers learn of a topic from the controller one by one)."""
    return wait_partitions(
        servers,
        topic,
        lambda ps: len(ps) == count and all(p.leader is not None and sorted(p.isr) == [1, 2, 3] for p in ps),
        f"topic {topic} settled on every broker",
    )


def written_windows(spark: SparkSession, table: Path, job: RevenueJob) -> set[datetime]:
    """The window starts in the revenue table so far (UTC); fails if the job's query died."""
    if job.main.exception() is not None:
        raise AssertionError(f"the revenue job failed: {job.main.exception()}")
    if not (table / "_delta_log").is_dir():
        return set()
    rows = spark.read.format("delta").load(str(table)).select("window_start").distinct().collect()
    return {r["window_start"].replace(tzinfo=UTC) for r in rows}


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: hex, each 32-bit word in host (little-endian) order."""
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8)]
    packed = b"".join(words)
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host, port = local.split(":")
                found.add((str(_address(host)), int(port, 16)))
    return found


def test_three_nodes_form_one_replicated_cluster_on_loopback(
    kafka_cluster: LocalCluster, servers: str
) -> None:
    state = kafka_cluster.read_state()
    assert state is not None
    assert kafka_cluster.brokers_in_metadata() == {1, 2, 3}
    for node in state.nodes:
        meta = (kafka_cluster.data_dir(node.node_id) / "meta.properties").read_text()
        assert f"cluster.id={state.cluster_id}" in meta.splitlines()
        assert f"node.id={node.node_id}" in meta.splitlines()
        assert (kafka_cluster.log_dir(node.node_id) / "server.log").stat().st_size > 0
        assert node.pid is not None
        listening = listening_addresses(node.pid)
        assert {(node.address.split(":")[0], node.port), ("127.0.0.1", node.controller_port)} <= listening
        assert {host for host, _ in listening} == {"127.0.0.1"}, listening

    # The running brokers have the replicated defaults (asked of the broker, not of our file).
    admin = admin_client(servers)
    resource = ConfigResource(ResourceType.BROKER, "2")
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    replicated = {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
    }
    assert {k: configs[k].value for k in replicated} == replicated

    # A topic created without a replication factor gets 3 copies, and leaders on every broker.
    topic = _topic("defaults")
    admin.create_topics([NewTopic(topic, num_partitions=6)])[topic].result(timeout=30)
    wait_for_leaders(admin, topic, 6, 30)
    spread = settled(servers, topic)
    assert [(len(p.replicas), sorted(p.isr)) for p in spread] == [(3, [1, 2, 3])] * 6
    assert {p.leader for p in spread} == {1, 2, 3}
    assert describe_topic(servers, topic).configs["min.insync.replicas"] == "2"

    # `pipelines topics describe` shows the spread: partition, leader, replicas, in-sync replicas.
    described = pipelines("topics", "describe", topic, "-b", servers, timeout_s=60, columns=120)
    assert described.returncode == 0, described.stderr
    rows = re.findall(
        r"^\W+(\d)\W+([123])\W+([123],[123],[123])\W+([123],[123],[123])\W+$", described.stdout, re.M
    )
    assert len(rows) == 6, described.stdout
    assert {leader for _, leader, _, _ in rows} == {"1", "2", "3"}
    assert "replication factor 3" in described.stdout


def test_cli_reports_the_running_cluster(kafka_cluster: LocalCluster, servers: str, profile: Path) -> None:
    again = cli("broker", "start", "--brokers", "3", "--profile", profile)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == servers
    assert "already runs" in again.stderr
    status = cli("broker", "status", "--dir", kafka_cluster.directory)
    assert status.returncode == 0 and status.stdout.strip() == servers
    overview = cli("cluster", "status", "--profile", profile)
    assert overview.returncode == 0, overview.stdout + overview.stderr
    assert overview.stdout.count("ALIVE") == 3  # the master and both workers
    assert overview.stdout.count("running") == 3  # every broker
    # Without --replication-factor a topic gets the cluster's default: a copy on every node.
    topic = _topic("cli-default-rf")
    created = cli("topics", "create", topic, "--partitions", "3", "--profile", profile)
    assert created.returncode == 0, created.stderr
    assert {(len(p.replicas), len(p.isr)) for p in settled(servers, topic, count=3)} == {(3, 3)}


def test_leader_killed_mid_produce_loses_and_duplicates_nothing_then_rejoins(
    kafka_cluster: LocalCluster,
    servers: str,
    spark: SparkSession,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """While the revenue job reads the topic (processing-time micro-batches in the test's
    SparkSession), the leader of some partitions is SIGKILLed half-way through 200,000 acks=all
    idempotent events: the topic equals the ledger exactly, the job finishes every window with
    the ledger's exact totals, and the node rejoins every in-sync set."""
    topic, dlq = _topic("kill"), _topic("kill.dlq")
    create_topic(servers, topic, partitions=6, replication_factor=3)
    create_topic(servers, dlq, partitions=1, replication_factor=3)
    before = settled(servers, topic)
    settled(servers, dlq, count=1)
    # The job reads while the events arrive. Its watermark is generous: one partition may run
    # ahead of another by a producer batch while events are written, which must not make events
    # of the slower partition late (the watermark is the latest event time seen on any partition).
    job = start_revenue_per_minute(
        spark, bootstrap_servers=servers, topic=topic, dlq_topic=dlq, checkpoint=tmp_path / "checkpoint",
        delta_path=tmp_path / "revenue", trigger="processing-time=2 seconds", watermark="10 minutes",
        max_offsets_per_trigger=60_000,
    )  # fmt: skip
    request.addfinalizer(job.stop)  # also when an assertion fails: the session is shared
    victim = before[0].leader
    assert victim is not None
    led = sorted(p.partition for p in before if p.leader == victim)
    killed: list[int] = []

    def kill_midway(sent: int) -> None:
        if sent == KILL_AT:
            kafka_cluster.kill(victim)  # SIGKILL: no controlled shutdown, no handing over of leaderships
            killed.append(sent)

    ledger = tmp_path / "ledger.jsonl"
    began = time.monotonic()
    report = publish_events(
        make_producer(servers),  # the project's defaults: acks=all, enable.idempotence=true
        topic,
        generate_events("sales", EVENTS, seed=61),
        ledger=ledger,
        on_progress=kill_midway,
        flush_timeout_s=180,
    )
    produce_s = time.monotonic() - began
    assert killed == [KILL_AT]
    assert report.produce.failed == [], report.produce.failed[:3]
    assert report.produce.acknowledged == EVENTS, f"{report.summary()} ({produce_s:.1f} s)"

    # The victim's partitions have new leaders, and it is in no in-sync set while it is down.
    after = wait_partitions(
        servers,
        topic,
        lambda ps: all(p.leader not in (None, victim) and victim not in p.isr for p in ps),
        f"node {victim} out of every leadership and ISR",
    )
    assert all(after[i].leader != victim for i in led)

    # Exactly once: what the topic holds is what the ledger says the broker acknowledged.
    entries = read_ledger(ledger)
    assert [e.seq for e in entries] == list(range(EVENTS)) and all(e.acknowledged for e in entries)
    ends = end_offsets(servers, topic)
    records = read_range(servers, topic, {}, ends, timeout_s=120)
    in_topic = {(m.partition(), m.offset()): (m.key(), m.value()) for m in records}
    assert len(records) == len(in_topic) == sum(ends.values()) == EVENTS
    for partition, end in ends.items():
        assert sorted(o for p, o in in_topic if p == partition) == list(range(end)), partition  # dense
    assert in_topic == {(e.partition, e.offset): (e.key, e.value) for e in entries}
    assert len({key for key, _ in in_topic.values()}) == EVENTS  # no event twice, under any offset

    # The job read through the failover: heartbeats 15 minutes of event time ahead close every
    # window, and the Delta table equals the ledger's totals, computed here in plain Python.
    expected = expected_windows(entries)
    last = max(minute for minute, _ in expected)
    send_heartbeats(make_producer(servers), topic, last + timedelta(minutes=15))
    try:
        wait_for(lambda: last in written_windows(spark, tmp_path / "revenue", job), 300, "the last window")
    finally:
        job.stop()
    rows = spark.read.format("delta").load(str(tmp_path / "revenue")).collect()
    got = windows_of(rows)
    assert len(rows) == len(got) == len(expected)  # no (window, category) written twice
    assert got == expected
    summary = job.summary()
    assert (summary.aggregated, summary.late, summary.dead_lettered) == (EVENTS, 0, 0), summary

    # Restarted, the node catches up and is back in the in-sync set of every partition.
    kafka_cluster.start_node(victim)
    rejoined = wait_partitions(
        servers,
        topic,
        lambda ps: all(sorted(p.isr) == [1, 2, 3] for p in ps),
        f"node {victim} back in every ISR",
        timeout_s=120,
    )
    assert all(victim in p.isr for p in rejoined)
    print(f"\n{EVENTS:,} events, leader {victim} SIGKILLed at {KILL_AT:,}: {report.summary()}")


def test_two_nodes_down_acks_all_fails_instead_of_losing_silently(
    kafka_cluster: LocalCluster, servers: str
) -> None:
    topic = _topic("two-down")
    create_topic(servers, topic, partitions=6, replication_factor=3)
    leaders = [p.leader for p in settled(servers, topic)]
    first = leaders[0]
    second = next(n for n in [*leaders, 1, 2, 3] if n not in (None, first))
    assert first is not None and second is not None
    kafka_cluster.kill(first)
    # With two nodes left the quorum still decides: the dead node leaves every in-sync set.
    wait_partitions(servers, topic, lambda ps: all(first not in p.isr for p in ps), f"node {first} fenced")
    kafka_cluster.kill(second)

    producer = make_producer(servers, {"message.timeout.ms": 8000})
    report = produce_all(producer, topic, [(f"k{i}".encode(), b"v") for i in range(50)], flush_timeout_s=30)
    assert report.acknowledged == 0
    errors = Counter(error for _, error in report.failed)
    assert sum(errors.values()) == 50
    # A partition whose leader is gone times out; one whose only in-sync copy is left says so.
    assert set(errors) <= {"Local: Message timed out", "Broker: Not enough in-sync replicas"}, errors

    kafka_cluster.start()  # both back: the cluster takes acks=all writes again
    again = produce_all(make_producer(servers), topic, [(b"after", b"v")], flush_timeout_s=60)
    assert again.failed == [] and again.acknowledged == 1
    print(f"\nacks=all with nodes {first} and {second} down: {dict(errors)}")


def submit(
    own_spark: OwnSpark, master_url: str, jars_dir: Path, log_dir: Path, job: str, *args: str
) -> list[str]:
    """The spark-submit command line a user types for a job on the standalone cluster."""
    jars = ",".join(str(p) for p in spark_jars(jars_dir))
    return own_spark.submit(
        job, *args, master=master_url, jars=jars, log_dir=log_dir, conf={"spark.executor.memory": "512m"}
    )


SUBMIT_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
"""The driver too listens on loopback only; executors run the project's Python."""


def test_spark_submit_ships_every_order_once_on_the_cluster_through_a_driver_kill(
    servers: str, spark_cluster: SparkStandalone, own_spark: OwnSpark, jars_dir: Path, tmp_path: Path
) -> None:
    """orders_to_shipments.py submitted to the standalone master, exactly-once (its default: each
    partition of each batch in one Kafka transaction, written by its task in an executor on a
    worker, on brokers whose transaction log has three replicas). The driver (spark-submit and its
    JVM) is SIGKILLed while the executors write, at a seeded-random amount of output, then
    submitted again to run to the end: a read_committed reader of the shipments topic sees one
    shipment per valid order of the ledger (key, value, partition and headers as the contract
    says) and the dead-letter topic every malformed order with its reason."""
    state = spark_cluster.running()
    assert state is not None
    src, out, dlq = _topic("orders"), _topic("shipments"), _topic("orders.dlq")
    for name, count in ((src, 6), (out, 6), (dlq, 1)):
        create_topic(servers, name, partitions=count, replication_factor=3)
        settled(servers, name, count=count)
    sent = publish_orders(
        servers,
        src,
        tmp_path / "ledger.jsonl",
        3000,
        79,
        late_fraction=0.02,
        malformed_fraction=0.03,
        headers=2,
    )
    cmd = submit(
        own_spark, state.master_url, jars_dir, tmp_path, "orders_to_shipments.py",
        *("--bootstrap-servers", servers, "--source-topic", src, "--sink-topic", out, "--dlq-topic", dlq),
        *("--checkpoint", str(tmp_path / "checkpoint"), "--max-offsets-per-trigger", "600"),
    )  # fmt: skip
    env = {**os.environ, **SUBMIT_ENV}
    threshold = random.Random(79).randint(300, 1_500)
    log = tmp_path / "spark-submit-killed.log"
    with log.open("w") as stderr:
        job = subprocess.Popen(
            [*cmd, "--trigger", "processing-time=0s"],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=env,
        )  # fmt: skip
    try:
        wait_while_running(
            lambda: topic_size(servers, out) >= threshold, job, f"{threshold} records on the sink", log, 240
        )
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # spark-submit and the driver's JVM, mid-write
        job.wait(timeout=30)
    assert topic_size(servers, out) < len(sent), "the job finished before the kill"
    with (tmp_path / "spark-submit.log").open("w") as stderr:
        final = subprocess.run(
            [*cmd, "--trigger", "available-now"], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
            timeout=300,
        )  # fmt: skip
    assert final.returncode == 0, (tmp_path / "spark-submit.log").read_text()[-3000:]
    assert_pipeline_output(servers, Topics(src, out, dlq), sent)


def test_spark_submit_on_the_standalone_cluster_survives_a_lost_worker_and_broker(
    kafka_cluster: LocalCluster,
    servers: str,
    spark_cluster: SparkStandalone,
    own_spark: OwnSpark,
    jars_dir: Path,
    tmp_path: Path,
) -> None:
    """The revenue job submitted to the standalone master reads the three brokers. Once its first
    batch is committed, the broker leading partition 0 is SIGKILLed, and so is worker 1 (with its
    executor); the job finishes on worker 2 reading from the two brokers left, and the Delta table
    equals the totals computed from the generator's ledger in plain Python."""
    from deltalake import DeltaTable

    state = spark_cluster.running()
    assert state is not None
    for daemon in state.daemons:
        assert daemon.pid is not None
        assert {host for host, _ in listening_addresses(daemon.pid)} == {"127.0.0.1"}

    topic, dlq = _topic("sales"), _topic("sales.dlq")
    create_topic(servers, topic, partitions=6, replication_factor=3)
    create_topic(servers, dlq, partitions=1, replication_factor=3)
    victim = settled(servers, topic)[0].leader
    settled(servers, dlq, count=1)
    producer = make_producer(servers)
    count = 12_000
    published = publish_events(
        producer, topic, generate_events("sales", count, seed=73), ledger=tmp_path / "ledger.jsonl"
    )
    assert published.produce.acknowledged == count
    entries = read_ledger(tmp_path / "ledger.jsonl")
    expected = expected_windows(entries)
    # Heartbeats far ahead close every window, as the quiet end of a real stream would.
    last = max(minute for minute, _ in expected)
    heartbeats = send_heartbeats(producer, topic, last + timedelta(minutes=5))

    progress = tmp_path / "progress.jsonl"
    cmd = submit(
        own_spark, state.master_url, jars_dir, tmp_path, "revenue_per_minute.py",
        *("--bootstrap-servers", servers, "--topic", topic, "--dlq-topic", dlq),
        *("--delta-path", str(tmp_path / "revenue"), "--checkpoint", str(tmp_path / "checkpoint")),
        # Two batches of data (then one that closes the last windows): the worker dies after the
        # first is committed, so the job still has most of its work ahead.
        *("--trigger", "available-now", "--max-offsets-per-trigger", "6500"),
        *("--progress-file", str(progress)),
    )  # fmt: skip
    env = {**os.environ, **SUBMIT_ENV}
    log = (tmp_path / "spark-submit.log").open("w")
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:

        def busy_after_a_batch() -> bool:
            if job.poll() is not None:
                raise AssertionError(f"the job ended before a worker could be killed (exit {job.returncode})")
            doc = spark_cluster.status() or {}
            executors = sum(int(w.get("coresused", 0)) for w in doc.get("workers", []))
            lines = progress.read_text().splitlines() if progress.is_file() else []
            delta_batches = sum('"query": "revenue_per_minute_delta"' in line for line in lines)
            return executors == 2 and delta_batches >= 1

        wait_for(busy_after_a_batch, 180, "the job's first batch with executors on both workers")
        assert victim is not None
        # If the driver plans a batch before the controller has moved the dead node's leaderships,
        # its offset lookup waits for the Kafka admin client's default.api.timeout.ms (60 s) and
        # retries: slow, but nothing is lost.
        kafka_cluster.kill(victim)
        spark_cluster.kill_worker(1)
        killed_after = progress.read_text().count('"query": "revenue_per_minute_delta"')
        out, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
        log.close()
    assert job.returncode == 0, (tmp_path / "spark-submit.log").read_text()[-3000:]
    # The driver's stdout also carries py4j's log lines; the job's summary is its last JSON line.
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert summary["reconciles"] is True, summary
    assert (summary["read"], summary["aggregated"], summary["heartbeats"]) == (
        count + heartbeats,
        count,
        heartbeats,
    )

    delta_batches = progress.read_text().count('"query": "revenue_per_minute_delta"')
    assert delta_batches > killed_after, "the worker was killed after the job's last batch"

    rows = DeltaTable(str(tmp_path / "revenue")).to_pyarrow_table().to_pylist()
    got = windows_of(rows)
    assert len(rows) == len(got) == len(expected)  # no (window, category) written twice
    assert got == expected
