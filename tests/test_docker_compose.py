"""docker/compose.yaml: three KRaft brokers with a full configuration, a Spark master and two
workers of the project's Spark version, the Kafka UI and the submit image; every published port on
127.0.0.1. No Docker engine runs here, so the file is checked as data and, where the Compose plugin
is installed, by `docker compose config` (which needs no engine)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import versions
from pipelines.paths import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker" / "compose.yaml"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
REPLICATION = {
    "KAFKA_DEFAULT_REPLICATION_FACTOR": 3,
    "KAFKA_MIN_INSYNC_REPLICAS": 2,
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": 3,
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": 3,
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": 2,
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": 3,
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": 2,
    "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
}
SERVICES = {
    *BROKERS, "spark-master", "spark-worker-1", "spark-worker-2", "kafka-ui", "submit",
    "dashboard", "prometheus", "grafana", "registry",
}  # fmt: skip
DOCKER = PROJECT_ROOT / "docker"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())  # resolves the file's anchors and `<<` merges
    result: dict[str, Any] = doc["services"]
    return result


def test_services_and_versions(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    assert {services[b]["image"] for b in BROKERS} == {f"apache/kafka:{versions.KAFKA_BROKER}"}
    assert services["spark-master"]["image"] == f"apache/spark:{versions.SPARK}"
    # The workers run the project's image, whose pyspark is the same Spark release (its Python
    # has confluent-kafka for the exactly-once sink's executor tasks).
    assert {services[w]["image"] for w in ("spark-worker-1", "spark-worker-2", "submit")} == {
        "pipelines-submit:latest"
    }
    assert f"pyspark=={versions.SPARK}" in (PROJECT_ROOT / "pyproject.toml").read_text()
    assert services["kafka-ui"]["image"].startswith("kafbat/kafka-ui:")


def test_brokers_form_one_kraft_quorum_with_listeners_for_containers_and_host(
    services: dict[str, Any],
) -> None:
    envs = [services[b]["environment"] for b in BROKERS]
    assert [e["KAFKA_NODE_ID"] for e in envs] == [1, 2, 3]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    voters = "1@kafka-1:29093,2@kafka-2:29093,3@kafka-3:29093"
    for name, env in zip(BROKERS, envs, strict=True):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(listeners) == set(protocols) == {"INTERNAL", "EXTERNAL", "CONTROLLER"}
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        assert advertised["INTERNAL"] == f"{name}:19092"
        host_port = listeners["EXTERNAL"].removeprefix(":")
        # Host clients reach the broker where it says it is: the port published on loopback.
        assert advertised["EXTERNAL"] == f"127.0.0.1:{host_port}"
        assert services[name]["ports"] == [f"127.0.0.1:{host_port}:{host_port}"]
        assert {k: env.get(k) for k in REPLICATION} == REPLICATION
    ui = services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
    assert ui == "kafka-1:19092,kafka-2:19092,kafka-3:19092"


def test_spark_master_two_workers_and_a_way_to_submit_with_the_jars(services: dict[str, Any]) -> None:
    master = services["spark-master"]["command"]
    assert master[:2] == ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.master.Master"]
    assert master[master.index("--port") + 1] == "7077"
    for worker in ("spark-worker-1", "spark-worker-2"):
        command = services[worker]["command"]
        assert command[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
        assert services[worker]["build"]["dockerfile"] == "docker/submit.Dockerfile"
        assert command[-1] == "spark://spark-master:7077"
        assert "pipelines-data:/data" in services[worker]["volumes"]
    submit = services["submit"]
    assert "../.jars/spark:/opt/pipelines/.jars/spark:ro" in submit["volumes"]
    assert "pipelines-data:/data" in submit["volumes"]
    assert (PROJECT_ROOT / submit["build"]["dockerfile"]).is_file()
    script = (PROJECT_ROOT / "docker" / "submit-job.sh").read_text()
    assert '--jars "$(pipelines jars)"' in script and "spark-submit" in script


def test_every_published_port_is_on_loopback(services: dict[str, Any]) -> None:
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_file() -> None:
    compose = _docker_compose()
    if compose is None:
        missing = (
            "the Docker Compose plugin is not installed (`docker compose version` fails); "
            "`bash .ci/install-compose` builds it"
        )
        if os.environ.get("PIPELINES_REQUIRE_COMPOSE") == "1":
            pytest.fail(missing)  # CI installs it, so there it must run
        pytest.skip(missing)
    proc = subprocess.run(
        [*compose, "-f", str(COMPOSE), "--profile", "tools", "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["services"]) == SERVICES
    ports = [p for s in doc["services"].values() for p in s.get("ports", [])]
    assert len(ports) == 9 and {p["host_ip"] for p in ports} == {"127.0.0.1"}
    assert doc["services"]["submit"]["volumes"][0]["source"] == str(Path(PROJECT_ROOT, ".jars", "spark"))


def test_prometheus_scrapes_the_dashboard_and_grafana_has_the_board_provisioned(
    services: dict[str, Any],
) -> None:
    dashboard = services["dashboard"]
    command = dashboard["command"]
    assert command[:2] == ["pipelines", "dashboard"]
    metrics_port = command[command.index("--metrics-port") + 1]
    assert command[command.index("--address") + 1] == "0.0.0.0"  # inside the container; published on loopback
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]
    assert dashboard["environment"]["PIPELINES_PATHS__DATA_DIR"] == "/data"
    assert "pipelines-data:/data:ro" in dashboard["volumes"]

    mounts = {m.split(":")[1]: DOCKER / m.split(":")[0] for m in services["prometheus"]["volumes"]}
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    [scrape] = config["scrape_configs"]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["static_configs"] == [{"targets": [f"dashboard:{metrics_port}"]}]

    mounts = {m.split(":")[1]: DOCKER / m.split(":")[0] for m in services["grafana"]["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "pipelines.yaml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    board = json.loads((mounts[provider["options"]["path"]] / "pipelines.json").read_text())

    # Every query of the board asks for metrics the dashboard exports, from the provisioned source.
    from pipelines.metrics import METRICS

    exported = {name + ("_total" if kind == "counter" else "") for name, (kind, _) in METRICS.items()}
    targets = [t for panel in board["panels"] for t in panel["targets"]]
    assert targets and {t["datasource"]["uid"] for t in targets} == {source["uid"]}
    asked = {m for t in targets for m in re.findall(r"pipelines_[a-z_]+", t["expr"])}
    assert asked and asked <= exported, asked - exported


def test_the_schema_registry_is_the_projects_version_stored_on_the_brokers(services: dict[str, Any]) -> None:
    registry = services["registry"]
    assert registry["image"] == f"apicurio/apicurio-registry:{versions.APICURIO_REGISTRY}"
    assert registry["environment"]["APICURIO_STORAGE_KIND"] == "kafkasql"
    servers = registry["environment"]["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"].split(",")
    assert servers == [f"{b}:19092" for b in BROKERS]
    assert registry["ports"] == ["127.0.0.1:8081:8080"]
