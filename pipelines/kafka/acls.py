"""Principals, SCRAM users and least-privilege ACLs, through the AdminClient.

Three principals, each allowed what its job needs and nothing else (`LEAST_PRIVILEGE`):

* `admin`: a super user of the cluster (broker `super.users`); creates topics, users and ACLs;
* `producer`: the generators; may write `orders` and `sales`, nothing else (not even read them);
* `pipeline`: the Spark jobs and the Python processor; may read `orders` and `sales`, write
  `shipments`, `revenue-per-minute`, `customer-order-counts` and the dead-letter topics, use its
  consumer groups and transactional ids (prefixes, since each run names its own).

Read and Write imply Describe in Kafka's ACL model, so no Describe grant is needed for metadata.
Every call waits on the broker's answer and turns a refusal into a PipelinesError that says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from pipelines.contracts import (
    CUSTOMER_COUNTS_TOPIC,
    ORDERS_TOPIC,
    REVENUE_TOPIC,
    SALES_TOPIC,
    SHIPMENTS_TOPIC,
    dead_letter_topic,
)
from pipelines.errors import PipelinesError
from pipelines.kafka.producer import LIBRDKAFKA_LOGGER
from pipelines.security import AuthorizationError, KafkaSecurity, client_conf, security_for

T = TypeVar("T")

ADMIN, PRODUCER, PIPELINE = "admin", "producer", "pipeline"
SCRAM_ITERATIONS = 8192
CLUSTER = "kafka-cluster"
RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.BROKER,
}
OPERATIONS = {
    op.name.lower().replace("_", "-"): op for op in AclOperation if op.value > AclOperation.ANY.value
}


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may `operation` the `resource_type` resource `name` (or every
    resource whose name starts with `name`, when `prefixed`), from any host."""

    principal: str
    resource_type: str
    name: str
    operation: str
    prefixed: bool = False

    def binding(self) -> AclBinding:
        return AclBinding(
            RESOURCE_TYPES[self.resource_type],
            self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            self.principal,
            "*",
            OPERATIONS[self.operation],
            AclPermissionType.ALLOW,
        )

    def describe(self) -> str:
        pattern = f"{self.name}*" if self.prefixed else self.name
        return f"{self.principal} {self.operation} {self.resource_type} {pattern}"


def least_privilege(producer: str = PRODUCER, pipeline: str = PIPELINE) -> tuple[Grant, ...]:
    """The ACLs of the producer and pipeline principals (the admin is a super user instead)."""
    p, q = f"User:{producer}", f"User:{pipeline}"
    sources = (ORDERS_TOPIC, SALES_TOPIC)
    grants = [Grant(p, "topic", t, "write") for t in sources]
    grants += [Grant(q, "topic", t, "read") for t in sources]
    sinks = (SHIPMENTS_TOPIC, REVENUE_TOPIC, CUSTOMER_COUNTS_TOPIC, *map(dead_letter_topic, sources))
    grants += [Grant(q, "topic", t, "write") for t in sinks]
    # Spark's kafka source names its groups spark-kafka-source-<uuid>-...; the Python processor's
    # default group is orders-to-shipments (a run may add a suffix); the project's readers pipelines-.
    group_prefixes = ("spark-kafka-source-", "orders-to-shipments", "pipelines-")
    grants += [Grant(q, "group", g, "read", prefixed=True) for g in group_prefixes]
    # The processor's transactional ids are <group>-shipper[-<instance>]; the Spark jobs'
    # exactly-once sinks' pipelines-<query>-<checkpoint digest> (their marker groups pipelines-…,
    # above; the marker offset is kept on the job's source topic, which it may read).
    grants += [Grant(q, "transactional-id", "orders-to-shipments", "write", prefixed=True)]
    grants += [Grant(q, "transactional-id", "pipelines-", "write", prefixed=True)]
    return tuple(grants)


LEAST_PRIVILEGE = least_privilege()


def _admin(
    bootstrap_servers: str, security: KafkaSecurity | None, needs: AclOperation, timeout_s: float
) -> AdminClient:
    """An AdminClient, once the cluster says this principal may `needs` (DESCRIBE or ALTER) it.

    Asked first because the broker's refusal is otherwise unreadable, or worse: confluent-kafka
    2.12 aborts the process (munmap_chunk) on a refused DescribeUserScramCredentials, and a refused
    DescribeAcls looks like an empty list.
    """
    admin = AdminClient(client_conf(bootstrap_servers, security), logger=LIBRDKAFKA_LOGGER)
    cluster = _ask(
        "describing the cluster",
        lambda: admin.describe_cluster(
            include_authorized_operations=True, request_timeout=timeout_s
        ).result(),
    )
    if needs not in (cluster.authorized_operations or []):
        principal = (security or security_for(bootstrap_servers)).principal
        operation = needs.name.capitalize()
        raise AuthorizationError(principal, operation, "cluster", CLUSTER, "CLUSTER_AUTHORIZATION_FAILED")
    return admin


def _fail(what: str, exc: KafkaException) -> PipelinesError:
    err = exc.args[0]
    text = err.str() if hasattr(err, "str") else str(exc)
    return PipelinesError(f"{what} failed: {text} (this needs an admin principal)")


def _ask(what: str, request: Callable[[], T]) -> T:
    """`request()`, with the broker's refusal (a KafkaException) turned into a PipelinesError
    saying that `what` failed."""
    try:
        return request()
    except KafkaException as exc:
        raise _fail(what, exc) from None


def upsert_users(
    bootstrap_servers: str,
    passwords: Mapping[str, str],
    *,
    security: KafkaSecurity | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create or update the SCRAM-SHA-512 credential of each user in `passwords`; the names."""
    admin = _admin(bootstrap_servers, security, AclOperation.ALTER, timeout_s)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    changes: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, pw.encode()) for u, pw in sorted(passwords.items())
    ]
    if not changes:
        return []
    for user, future in admin.alter_user_scram_credentials(changes, request_timeout=timeout_s).items():
        _ask(f"creating the SCRAM credential of {user}", future.result)
    return sorted(passwords)


def list_users(
    bootstrap_servers: str, *, security: KafkaSecurity | None = None, timeout_s: float = 30.0
) -> dict[str, list[str]]:
    """User name -> its SCRAM mechanisms (e.g. `SCRAM_SHA_512/8192`)."""
    admin = _admin(bootstrap_servers, security, AclOperation.DESCRIBE, timeout_s)
    try:
        every_user = admin.describe_user_scram_credentials(request_timeout=timeout_s)
        assert isinstance(every_user, Future)  # asked for no user in particular: one future for all
        described = every_user.result()
    except KafkaException as exc:
        raise _fail("listing the SCRAM users", exc) from None
    return {
        user: sorted(f"{i.mechanism.name}/{i.iterations}" for i in desc.scram_credential_infos)
        for user, desc in sorted(described.items())
    }


def create_acls(
    bootstrap_servers: str,
    grants: Iterable[Grant],
    *,
    security: KafkaSecurity | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Create every grant (creating one that exists is a no-op); how many were asked for."""
    bindings = [g.binding() for g in grants]
    if not bindings:
        return 0
    admin = _admin(bootstrap_servers, security, AclOperation.ALTER, timeout_s)
    for binding, future in admin.create_acls(bindings, request_timeout=timeout_s).items():
        _ask(f"creating the ACL {binding}", future.result)
    return len(bindings)


def list_acls(
    bootstrap_servers: str, *, security: KafkaSecurity | None = None, timeout_s: float = 30.0
) -> list[Grant]:
    """Every ALLOW ACL of the cluster, as Grants, sorted (DENY ACLs are not used by the project)."""
    admin = _admin(bootstrap_servers, security, AclOperation.DESCRIBE, timeout_s)
    # None matches any name, principal and host (the stubs type them as str).
    anything = cast(str, None)
    everything = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    bindings = _ask(
        "listing the ACLs", lambda: admin.describe_acls(everything, request_timeout=timeout_s).result()
    )
    types = {v: k for k, v in RESOURCE_TYPES.items()}
    return sorted(
        Grant(
            b.principal,
            types.get(b.restype, b.restype.name.lower()),
            b.name,
            b.operation.name.lower().replace("_", "-"),
            b.resource_pattern_type == ResourcePatternType.PREFIXED,
        )
        for b in bindings
        if b.permission_type == AclPermissionType.ALLOW
    )


def setup_least_privilege(
    bootstrap_servers: str,
    passwords: Mapping[str, str],
    *,
    security: KafkaSecurity | None = None,
    producer: str = PRODUCER,
    pipeline: str = PIPELINE,
) -> tuple[list[str], int]:
    """Create (or update) the users in `passwords` and the least-privilege ACLs; idempotent."""
    users = upsert_users(bootstrap_servers, passwords, security=security)
    count = create_acls(bootstrap_servers, least_privilege(producer, pipeline), security=security)
    return users, count
