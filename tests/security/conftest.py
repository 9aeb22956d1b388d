"""One secured broker (TLS, SCRAM-SHA-512, StandardAuthorizer) for the security tests, started once.

The least-privilege users and ACLs are set up as `pipelines broker start --secure` does; the topics
the ACLs name (`orders`, `sales`, `shipments`, the dead-letter topics) are created by the admin.
`as_principal(name)` makes every client of this process that connects to the secured broker log
in as that principal (what an entry point does with the PIPELINES_KAFKA__* environment).
Everything the tests write (checkpoints, progress files) goes under `secure_run_dir`, which the
no-leak test searches together with the broker folder and the Spark logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.contracts import ORDERS_TOPIC, REVENUE_TOPIC, SALES_TOPIC, SHIPMENTS_TOPIC, dead_letter_topic
from pipelines.kafka.acls import setup_least_privilege
from pipelines.kafka.admin import create_topic
from pipelines.local.broker import LocalBroker
from pipelines.local.security import ADMIN, principal_security
from pipelines.security import KafkaSecurity, use_security
from tests.helpers import started

TOPICS = {
    ORDERS_TOPIC: 3,
    SALES_TOPIC: 3,
    SHIPMENTS_TOPIC: 3,
    dead_letter_topic(ORDERS_TOPIC): 1,
    dead_letter_topic(SALES_TOPIC): 1,
    REVENUE_TOPIC: 1,
}


@pytest.fixture(scope="session")
def _session_secure_broker(tmp_path_factory: pytest.TempPathFactory, jars_dir: Path) -> Iterator[LocalBroker]:
    with LocalBroker(tmp_path_factory.mktemp("secure-broker"), jars_dir, secure=True) as broker:
        servers = broker.bootstrap_servers
        admin = principal_security(broker.directory, ADMIN)
        setup_least_privilege(servers, {}, security=admin)
        use_security(servers, admin)
        try:
            for name, partitions in TOPICS.items():
                create_topic(servers, name, partitions=partitions, exist_ok=True)
        finally:
            use_security(servers, KafkaSecurity())
        yield broker


@pytest.fixture
def secure_broker(request: pytest.FixtureRequest) -> LocalBroker:
    """The secured broker, a second Kafka JVM, started once by the first test that needs it."""
    broker: LocalBroker = started(request, "_session_secure_broker")
    return broker


@pytest.fixture
def secure_bootstrap(secure_broker: LocalBroker) -> str:
    return secure_broker.bootstrap_servers


@pytest.fixture(scope="session")
def secure_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Checkpoints, tables and progress files of the jobs run on the secured broker."""
    return tmp_path_factory.mktemp("secure-run")


@pytest.fixture
def security_of(secure_broker: LocalBroker) -> Callable[[str], KafkaSecurity]:
    """Factory: the login of a principal (admin, producer, pipeline) of the secured broker."""
    return lambda principal: principal_security(secure_broker.directory, principal)


@pytest.fixture
def as_principal(
    secure_bootstrap: str, security_of: Callable[[str], KafkaSecurity]
) -> Iterator[Callable[[str], KafkaSecurity]]:
    """Factory: `as_principal("producer")` logs this process's clients of the secured broker in as
    that principal, until the next call or the end of the test."""

    def use(principal: str) -> KafkaSecurity:
        sec = security_of(principal)
        use_security(secure_bootstrap, sec)
        return sec

    yield use
    use_security(secure_bootstrap, KafkaSecurity())
