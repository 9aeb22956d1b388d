"""Topic administration through the AdminClient, waiting on results rather than sleeping."""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.errors import PipelinesError


def admin_client(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def create_topic(
    bootstrap_servers: str,
    name: str,
    *,
    partitions: int,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
    timeout_s: float = 30.0,
) -> bool:
    """Create `name` and wait until every partition has a leader; False if it already existed
    (with `exist_ok`). Raises PipelinesError with the broker's reason otherwise."""
    admin = admin_client(bootstrap_servers)
    new = NewTopic(name, partitions, replication_factor, config=dict(config or {}))
    future = admin.create_topics([new], operation_timeout=timeout_s)[name]
    created = True
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0]
        if exist_ok and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            created = False
        else:
            raise PipelinesError(f"cannot create topic {name!r}: {err.str()}") from None
    wait_for_leaders(admin, name, partitions, timeout_s)
    return created


def wait_for_leaders(admin: AdminClient, name: str, partitions: int, timeout_s: float) -> None:
    """Wait until metadata shows `partitions` partitions of `name`, each with a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=max(0.1, deadline - time.monotonic()))
        topic = md.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) >= partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
    raise PipelinesError(f"topic {name!r} has no leader for every partition after {timeout_s} s")
