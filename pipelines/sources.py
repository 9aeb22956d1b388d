"""Reading Kafka with Spark's kafka source (offsets live in the query's checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from pipelines.config import SparkSettings
from pipelines.security import spark_kafka_options


def read_kafka_stream(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    extra_options: dict[str, str] | None = None,
    consumer: Mapping[str, str | int | bool] | None = None,
) -> DataFrame:
    """A streaming DataFrame of `topic` with the kafka source's columns (key, value, topic,
    partition, offset, timestamp, timestampType).

    `max_offsets_per_trigger` bounds each micro-batch so a backlog is not read in one batch.
    `failOnDataLoss` stays true: offsets lost to retention fail the query instead of skipping data.
    The security options registered for `bootstrap_servers` (`pipelines.security`) are added, and
    the Kafka `consumer` properties as `kafka.<name>` options (default: the profile default,
    `SparkSettings.kafka_consumer`).
    """
    reader = spark.readStream.format("kafka")
    properties = consumer if consumer is not None else SparkSettings().kafka_consumer
    for key, value in properties.items():
        reader = reader.option(f"kafka.{key}", str(value).lower() if isinstance(value, bool) else str(value))
    for key, value in spark_kafka_options(bootstrap_servers).items():
        reader = reader.option(key, value)
    reader = (
        reader.option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", "true")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    for key, value in (extra_options or {}).items():
        reader = reader.option(key, value)
    return reader.load()


@dataclass(frozen=True)
class KafkaSource:
    """Where and how a job reads a topic. Each query of a job calls `read()` for a source of its
    own: a query owns its source's offsets in its own checkpoint, so two queries never share one."""

    spark: SparkSession
    bootstrap_servers: str
    topic: str
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    extra_options: dict[str, str] | None = None
    settings: SparkSettings | None = None
    """The profile's `spark` section, for the source's Kafka consumer properties
    (`SparkSettings.kafka_consumer`); None: the profile defaults."""

    def read(self) -> DataFrame:
        """A new streaming DataFrame of the topic (`read_kafka_stream`)."""
        return read_kafka_stream(
            self.spark,
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            starting_offsets=self.starting_offsets,
            max_offsets_per_trigger=self.max_offsets_per_trigger,
            extra_options=self.extra_options,
            consumer=self.settings.kafka_consumer if self.settings is not None else None,
        )
