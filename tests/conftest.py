"""Shared fixtures: one real Kafka broker and one SparkSession for the whole test run.

Broker tests get a fresh topic (and consumer group) per test; streaming queries get their own
checkpoint under `tmp_path`. Nothing here is mocked: `kafka` tests talk to a real Apache Kafka
broker in KRaft mode that the project starts from its resolved jars.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipelines.config import Settings, load_settings
from pipelines.kafka.admin import create_topic
from pipelines.local.broker import LocalBroker
from pipelines.local.jvm import spark_jars
from pipelines.spark import build_session

# Spark hands timestamps to Python as naive local datetimes; the contract is UTC, so the test
# process runs in UTC whatever the machine's zone.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def settings() -> Settings:
    # No environment overrides: tests run on the local profile exactly as committed.
    return load_settings("local", {})


@pytest.fixture(scope="session")
def jars_dir(settings: Settings) -> Path:
    return settings.resolve_path(settings.paths.jars_dir)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory, jars_dir: Path) -> Iterator[LocalBroker]:
    """A real single-node Kafka broker (KRaft) for the whole run, stopped at the end."""
    with LocalBroker(tmp_path_factory.mktemp("broker"), jars_dir) as broker:
        yield broker


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: LocalBroker) -> str:
    return kafka_broker.bootstrap_servers


def _unique(prefix: str, request: pytest.FixtureRequest) -> str:
    test = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:60]
    return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: `new_topic(partitions=3)` creates a topic no other test uses and returns its name."""

    def make(partitions: int = 3, **config: str) -> str:
        name = _unique("t", request)
        create_topic(bootstrap, name, partitions=partitions, config=config)
        return name

    return make


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test uses."""
    return _unique("g", request)


@pytest.fixture(scope="session")
def spark(
    jars_dir: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkSession]:
    """The test run's one SparkSession: local[2], 2 shuffle partitions, UI off, UTC, local jars."""
    session = build_session(
        "pipelines-tests",
        master="local[2]",
        jars=spark_jars(jars_dir),
        shuffle_partitions=2,
        ui_enabled=False,
        log4j_config=settings.resolve_path(Path("conf/log4j2.properties")),
        log_dir=tmp_path_factory.mktemp("spark-logs"),
    )
    yield session
    session.stop()
