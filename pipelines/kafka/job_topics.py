"""The topics of a job, checked before it starts: the same rules for the Spark jobs and the Python
processor.

* A **source** topic must exist: a job that would read nothing stops with one line instead.
* A **dead-letter** topic is created on demand with its source's partition count and the
  profile's replication factor (`kafka.replication_factor`; unset: the cluster's
  `default.replication.factor`), the way Kafka Connect creates its dead-letter queue; the job says
  so once.
* A **sink** topic must exist, unless the job was asked to create its topics (`--create-topics`):
  then it is created like a dead-letter topic, with its source's partition count.

Without these checks Spark waits for a missing topic's metadata for a minute
(`max.block.ms`) and then fails inside a Java stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipelines.errors import PipelinesError
from pipelines.kafka.admin import create_topic, list_topics


@dataclass(frozen=True)
class JobTopics:
    """What a job reads and writes: `sources`, `sinks`, and `dead_letters` as (dead-letter topic,
    the source whose bad records it takes)."""

    sources: Sequence[str]
    sinks: Sequence[str] = ()
    dead_letters: Sequence[tuple[str, str]] = field(default_factory=tuple)


class MissingTopic(PipelinesError):
    """A source topic, or a sink topic the job may not create, does not exist."""


def prepare_topics(
    bootstrap_servers: str,
    topics: JobTopics,
    *,
    create_sinks: bool = False,
    replication_factor: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> list[str]:
    """Check (and where allowed create) the topics of a job; returns the topics it created, each
    also reported once through `say`. Raises MissingTopic with one line saying what to do."""
    existing = list_topics(bootstrap_servers, internal=True)
    for source in topics.sources:
        if source not in existing:
            raise MissingTopic(
                f"source topic {source!r} does not exist on {bootstrap_servers}: check the topic option, "
                f"or create it (`pipelines topics create {source} --partitions 3`) and produce to it"
            )
    partitions_of_first_source = existing[topics.sources[0]] if topics.sources else 1
    created: list[str] = []

    def create(name: str, partitions: int, what: str) -> None:
        # exist_ok: another instance of the job may create it at the same moment.
        if create_topic(
            bootstrap_servers,
            name,
            partitions=partitions,
            replication_factor=replication_factor,
            exist_ok=True,
        ):
            factor = replication_factor or "the cluster's default"
            say(f"created {what} topic {name!r}: {partitions} partitions, replication factor {factor}")
            created.append(name)
        existing[name] = partitions

    for dlq, source in topics.dead_letters:
        if dlq not in existing:
            create(dlq, existing.get(source, partitions_of_first_source), "dead-letter")
    for sink in topics.sinks:
        if sink in existing:
            continue
        if not create_sinks:
            raise MissingTopic(
                f"sink topic {sink!r} does not exist on {bootstrap_servers}: create it "
                f"(`pipelines topics create {sink} --partitions {partitions_of_first_source}`) or let the "
                "job create it with --create-topics"
            )
        create(sink, partitions_of_first_source, "sink")
    return created
