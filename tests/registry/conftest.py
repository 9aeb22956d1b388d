"""The run's schema registry: one real Apicurio Registry, started by the first test that needs it
and stopped at the end (on the SparkSession's worker: tests.helpers.xdist_group puts every test
that uses it there), with the contract's schemas registered under subjects of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from pipelines.registry.local import LocalRegistry
from pipelines.registry.schemas import REQUEST_TIMEOUT_S, SERDE_CONF, SchemaStore
from tests.helpers import started


@pytest.fixture(scope="session")
def _session_registry(tmp_path_factory: pytest.TempPathFactory, jars_dir: Path) -> Iterator[LocalRegistry]:
    with LocalRegistry(
        tmp_path_factory.mktemp("registry"),
        jars_dir,
        java_home=os.environ.get("PIPELINES_REGISTRY_JAVA_HOME"),
    ) as registry:
        yield registry


@pytest.fixture
def schema_registry(request: pytest.FixtureRequest) -> LocalRegistry:
    """A real schema registry (Apicurio, H2 on disk) for the whole run, on 127.0.0.1."""
    registry: LocalRegistry = started(request, "_session_registry")
    return registry


@pytest.fixture
def registry_url(schema_registry: LocalRegistry) -> str:
    """Its Confluent-compatible API, what the commands' --registry-url takes."""
    return schema_registry.ccompat_url


@pytest.fixture
def store(registry_url: str) -> SchemaStore:
    return SchemaStore(registry_url)


@pytest.fixture
def avro_deserializer(registry_url: str) -> AvroDeserializer:
    """confluent-kafka's AvroDeserializer on the run's registry, as a Confluent consumer reads
    (subjects by topic: `pipelines.registry.schemas.SERDE_CONF`)."""
    client = SchemaRegistryClient({"url": registry_url, "timeout": REQUEST_TIMEOUT_S})
    return AvroDeserializer(client, conf=SERDE_CONF)
