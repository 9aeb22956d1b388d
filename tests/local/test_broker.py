"""The local broker launcher: ready means answering, a second start reports the running broker,
and a broker that cannot start says why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.errors import BrokerError
from pipelines.local.broker import BrokerState, LocalBroker, _pid_alive, metadata_answers, server_properties
from tests.helpers import pipelines

OwnBroker = Callable[..., LocalBroker]


def test_single_node_settings_for_internal_topics() -> None:
    props = server_properties(BrokerState("127.0.0.1:1", 1, 2, "x"), Path("/d"))
    for line in (
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "listeners=PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2",
        "controller.quorum.voters=1@127.0.0.1:2",
    ):
        assert line in props.splitlines()


def test_session_broker_answers_on_loopback(kafka_broker: LocalBroker, bootstrap: str) -> None:
    assert bootstrap.startswith("127.0.0.1:")
    assert metadata_answers(bootstrap)
    state = kafka_broker.running()
    assert state is not None and state.bootstrap_servers == bootstrap


def test_second_start_reports_the_running_broker(kafka_broker: LocalBroker, jars_dir: Path) -> None:
    again = LocalBroker(kafka_broker.directory, jars_dir)
    state, started = again.start()
    assert started is False
    assert state.bootstrap_servers == kafka_broker.bootstrap_servers
    assert state.pid == kafka_broker.running().pid  # type: ignore[union-attr]


def test_taken_port_is_reported_before_launching(tmp_path: Path, jars_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        (tmp_path / "broker.json").write_text(
            json.dumps(
                {
                    "bootstrap_servers": f"127.0.0.1:{port}",
                    "port": port,
                    "controller_port": port + 1 if port < 65535 else port - 1,
                    "cluster_id": "MkU3OEVBNTcwNTJENDM2Qg",
                    "pid": None,
                }
            )
        )
        with pytest.raises(BrokerError, match=rf"port {port} on 127.0.0.1 is taken"):
            LocalBroker(tmp_path, jars_dir).start()


def test_corrupt_folder_fails_with_the_broker_log_tail(tmp_path: Path, own_broker: OwnBroker) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # meta.properties of another cluster and node: Kafka refuses to use this log directory.
    (data / "meta.properties").write_text("version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=7\n")
    with pytest.raises(BrokerError) as info:
        own_broker(tmp_path, start_timeout_s=60).start()
    message = str(info.value)
    assert "exited with code" in message
    assert "last lines of" in message
    assert own_broker(tmp_path).running() is None


def test_missing_java_says_how_to_install_it(tmp_path: Path, jars_dir: Path) -> None:
    with pytest.raises(BrokerError, match=r"Java was not found.*openjdk-17"):
        LocalBroker(tmp_path, jars_dir, java="/nonexistent/bin/java").start()


def test_cli_start_start_stop(own_broker: OwnBroker) -> None:
    """`pipelines broker start|stop --dir`, as a user runs it: background broker, pid file."""
    folder = own_broker().directory

    def broker(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return pipelines("broker", command, "--dir", folder, timeout_s=timeout_s, columns=None, env=env)

    first = broker("start", 180)
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:")
    pid = int((folder / "broker.pid").read_text())
    try:
        second = broker("start", 60)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == bootstrap
        assert "already runs" in second.stderr
        assert metadata_answers(bootstrap)
    finally:
        stop = broker("stop", 120)
    assert stop.returncode == 0, stop.stderr
    # Not running any more (possibly a zombie until its parent reaps it, which is not ours).
    assert not _pid_alive(pid)


def test_restarted_broker_keeps_its_topics_and_answers_offsets_at_once(own_broker: OwnBroker) -> None:
    """Right after a restart the broker answers metadata before it leads its partitions again
    (`Not leader for partition` for a moment): end_offsets waits that out instead of failing, which
    is what a second `make run` does first."""
    from pipelines.kafka.admin import create_topic, end_offsets
    from pipelines.kafka.producer import make_producer, produce_all

    broker = own_broker()
    state, _ = broker.start()
    try:
        create_topic(state.bootstrap_servers, "kept", partitions=3)
        report = produce_all(
            make_producer(state.bootstrap_servers), "kept", [(f"k{i}".encode(), b"v") for i in range(30)]
        )
        assert report.acknowledged == 30
        before = end_offsets(state.bootstrap_servers, "kept")
        assert sum(before.values()) == 30
    finally:
        broker.stop()
    again, started = broker.start()
    try:
        assert started and again.bootstrap_servers == state.bootstrap_servers  # same ports
        assert end_offsets(again.bootstrap_servers, "kept") == before
    finally:
        broker.stop()
