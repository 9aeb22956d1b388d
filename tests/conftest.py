"""Shared fixtures: one real Kafka broker and one SparkSession for the whole test run (per worker
when `make test` runs the suite on pytest-xdist workers; every test that uses the SparkSession runs
on the same worker, tests.helpers.xdist_group).

Broker tests get a fresh topic (and consumer group) per test; streaming queries get their own
checkpoint under `tmp_path`. Nothing here is mocked: `kafka` tests talk to a real Apache Kafka
broker in KRaft mode that the project starts from its resolved jars.

Markers come from fixtures: every fixture that starts JVMs is in tests.helpers.FIXTURE_MARKERS,
and a test that uses one (directly or through other fixtures) gets its markers at collection, so
`-m "not kafka and not spark"` (`make test-fast`) deselects every test that would start a JVM. Such
a fixture fails the test before it starts anything when the test lacks its markers (it was reached
through `request.getfixturevalue`). A test that starts JVMs some other way asks for `own_broker` (a
broker of its own) or `own_spark` (a Spark driver of its own: spark-submit, `python jobs/<job>.py`,
`pipelines demo`). Only `slow` is still written by hand, where a test is long without a JVM of its
own (tests/kafka/test_processor_kill.py).
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
from tests.helpers import FIXTURE_MARKERS, OwnSpark, require_markers, started, xdist_group

# Spark hands timestamps to Python as naive local datetimes; the contract is UTC, so the test
# process runs in UTC whatever the machine's zone.
os.environ["TZ"] = "UTC"
time.tzset()

# Every JVM the tests start (brokers, SparkSessions, spark-submit, the standalone cluster, through
# `java`, which reads JDK_JAVA_OPTIONS and says so on its stderr) compiles with C1 only: each
# lives for seconds to minutes on a few thousand records, where C2's optimising compiler costs more
# CPU than it saves; on two cores, that CPU is what the other worker waits for. Semantics are the
# same (it is the JIT tier, not a Spark or Kafka setting); users' JVMs keep the default. With C1
# alone the JVM reserves only 48 MB for compiled code, which a Spark driver fills within a minute
# ("CodeCache is full. Compiler has been disabled."), after which it interprets: 240 MB, the
# tiered default, keeps it compiling.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test the markers of the fixtures it uses (`fixturenames` includes the fixtures of
    its fixtures), and its side-by-side group (tests.helpers.xdist_group; pytest-xdist reads the
    `xdist_group` marker after this hook)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
        used = set(getattr(item, "fixturenames", ()))
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in used:
                for marker in markers:
                    if item.get_closest_marker(marker) is None:
                        item.add_marker(marker)


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Under `--dist loadgroup`, stop at once unless pytest-xdist took the tests' groups (it marks
    each test id with `@group`): else two workers could each start a SparkSession and tests that
    must run in order on one worker could run on two."""
    if ids and node.config.getvalue("dist") == "loadgroup" and "@" not in ids[0]:  # type: ignore[attr-defined]
        pytest.exit(
            "pytest-xdist ignored the tests' xdist_group marks (pytest-dev/pytest-xdist#1386, pytest "
            "9.2): install the versions pyproject.toml pins (`make setup`)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def settings() -> Settings:
    # No environment overrides: tests run on the local profile exactly as committed.
    return load_settings("local", {})


@pytest.fixture(scope="session")
def jars_dir(settings: Settings) -> Path:
    return settings.resolve_path(settings.paths.jars_dir)


@pytest.fixture(scope="session")
def _session_broker(tmp_path_factory: pytest.TempPathFactory, jars_dir: Path) -> Iterator[LocalBroker]:
    with LocalBroker(tmp_path_factory.mktemp("broker"), jars_dir) as broker:
        yield broker


@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest) -> LocalBroker:
    """A real single-node Kafka broker (KRaft) for the whole run, started by the first test that
    needs it and stopped at the end."""
    broker: LocalBroker = started(request, "_session_broker")
    return broker


@pytest.fixture
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
def _session_spark(
    jars_dir: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkSession]:
    session = build_session(
        "pipelines-tests",
        # Two task slots, and a failed task is retried once (local[N] alone never retries), as on a
        # cluster: the exactly-once sink's task-failure test needs the retry.
        master="local[2,2]",
        jars=spark_jars(jars_dir),
        shuffle_partitions=2,
        ui_enabled=False,
        log4j_config=settings.resolve_path(Path("conf/log4j2.properties")),
        log_dir=tmp_path_factory.mktemp("spark-logs"),
    )
    yield session
    session.stop()


@pytest.fixture
def spark(request: pytest.FixtureRequest) -> SparkSession:
    """The test run's one SparkSession: local[2,2] (one task retry), 2 shuffle partitions, UI off,
    UTC, local jars; started by the first test that needs it and stopped at the end."""
    session: SparkSession = started(request, "_session_spark")
    return session


@pytest.fixture
def own_broker(
    request: pytest.FixtureRequest, tmp_path: Path, jars_dir: Path
) -> Iterator[Callable[..., LocalBroker]]:
    """Factory: `own_broker(directory=tmp_path / "broker", **options)` is a LocalBroker of the
    test's own, besides the run's broker (starting it, or a `pipelines` command on its folder,
    starts another Kafka JVM). Any of them still running at the end is stopped."""
    require_markers(request)
    made: list[LocalBroker] = []

    def make(directory: Path | None = None, **options: object) -> LocalBroker:
        made.append(LocalBroker(directory or tmp_path / "broker", jars_dir, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for broker in made:
        if broker.running() is not None:
            broker.stop()


@pytest.fixture
def own_spark(request: pytest.FixtureRequest) -> OwnSpark:
    """For a test that starts a Spark driver of its own (spark-submit, `python jobs/<job>.py`,
    `pipelines demo`): the command lines (tests.helpers.OwnSpark)."""
    require_markers(request)
    return OwnSpark()
