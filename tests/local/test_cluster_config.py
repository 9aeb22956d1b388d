"""The local cluster's configuration, without starting anything: each node's properties, the
cluster profile, and how the commands read ports from it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from pipelines.commands.cluster import local_cluster, local_spark, master_port
from pipelines.config import load_settings
from pipelines.errors import BrokerError, PipelinesError
from pipelines.local.cluster import ClusterState, LocalCluster, NodeState, loopback_ports, node_properties

STATE = ClusterState(
    "MkU3OEVBNTcwNTJENDM2Qg",
    (NodeState(1, 9101, 9201, 11), NodeState(2, 9102, 9202), NodeState(3, 9103, 9203, 13)),
)


def _props(node_id: int) -> dict[str, str]:
    lines = node_properties(STATE, node_id, Path("/d")).splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_each_node_is_broker_and_controller_of_one_three_voter_quorum() -> None:
    for node_id in (1, 2, 3):
        props = _props(node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["node.id"] == str(node_id)
        assert props["controller.quorum.voters"] == "1@127.0.0.1:9201,2@127.0.0.1:9202,3@127.0.0.1:9203"
        port, controller = 9100 + node_id, 9200 + node_id
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
        assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"


def test_replicated_defaults_for_every_topic() -> None:
    expected = {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "unclean.leader.election.enable": "false",
        "auto.create.topics.enable": "false",
    }
    props = _props(2)
    assert {k: props.get(k) for k in expected} == expected


def test_state_round_trips_through_json() -> None:
    again = ClusterState.from_json(STATE.to_json())
    assert again == STATE
    assert again.bootstrap_servers == "127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103"


def test_loopback_ports_accepts_only_one_loopback_address_per_broker() -> None:
    assert loopback_ports("127.0.0.1:1,localhost:2,127.0.0.1:3", 3) == [1, 2, 3]
    with pytest.raises(BrokerError, match=re.escape("listens on 127.0.0.1 only")):
        loopback_ports("10.0.0.1:1,127.0.0.1:2,127.0.0.1:3", 3)
    with pytest.raises(BrokerError, match="must name 3 different ports"):
        loopback_ports("127.0.0.1:1,127.0.0.1:1,127.0.0.1:3", 3)


def test_master_port_needs_a_loopback_standalone_master() -> None:
    assert master_port("spark://127.0.0.1:7077") == 7077
    with pytest.raises(PipelinesError, match=re.escape("needs spark://127.0.0.1:PORT")):
        master_port("local[*]")


def test_cluster_profile_points_jobs_at_both_clusters() -> None:
    settings = load_settings("cluster", {})
    kafka = local_cluster(settings, None)
    spark = local_spark(settings)
    assert kafka.ports == (19092, 19093, 19094)
    assert kafka.directory == settings.resolve_path(Path(".pipelines/cluster")).resolve()
    assert spark.master_port == 7077 and spark.workers == 2
    assert spark.directory == kafka.directory / "spark"
    assert settings.topics["sales"].replication_factor == 3
    assert settings.kafka.producer["acks"] == "all"
    # Another folder: free ports, so a second cluster never fights the profile's for them.
    assert local_cluster(settings, Path("/tmp/elsewhere")).ports is None


def test_broker_start_refuses_other_counts_and_mixing_a_cluster_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    two = runner.invoke(app, ["broker", "start", "--brokers", "2", "--dir", str(tmp_path)])
    assert isinstance(two.exception, PipelinesError)
    assert "takes 1 (a single broker) or 3" in str(two.exception)
    (tmp_path / "cluster.json").write_text(STATE.to_json())
    single = runner.invoke(app, ["broker", "start", "--dir", str(tmp_path)])
    assert isinstance(single.exception, PipelinesError)
    assert "holds a 3-broker cluster" in str(single.exception)
    assert not (tmp_path / "broker.json").exists()


def test_taken_port_is_reported_before_any_node_starts(tmp_path: Path, jars_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        state = ClusterState(
            "MkU3OEVBNTcwNTJENDM2Qg", (NodeState(1, taken, 1), NodeState(2, 2, 3), NodeState(3, 4, 5))
        )
        (tmp_path / "cluster.json").write_text(state.to_json())
        with pytest.raises(BrokerError, match=rf"port {taken} on 127\.0\.0\.1 is taken"):
            LocalCluster(tmp_path, jars_dir).start()
    assert not (tmp_path / "node-1" / "data").exists()  # nothing was formatted or launched
