"""The one place that says which versions of Spark, Scala, Delta and Kafka the project runs on.

`pyproject.toml` pins the Python packages to the same numbers (a test keeps the two in step), and
the Maven manifests under `conf/jvm/` take their versions from here when `pipelines jars --resolve`
runs them.
"""

from __future__ import annotations

SPARK = "4.2.0"
"""Apache Spark, as shipped by the `pyspark` wheel."""

SCALA_BINARY = "2.13"
"""Scala binary version of every JVM artifact: a `_2.12` jar on this Spark fails at run time."""

DELTA_PYTHON = "4.4.1"
"""The `delta-spark` Python package (thin wrappers over the JVM classes)."""

DELTA_JVM = "4.4.0"
"""Delta Lake's JVM artifacts. Maven Central serves no 4.4.1 (HTTP 404 for
`io.delta:delta-spark_4.2_2.13:4.4.1` and `io.delta:delta-storage:4.4.1`); the 4.4.1 Python wheel
differs from 4.4.0 only in its version string, so it drives the 4.4.0 classes unchanged."""

DELTA_SPARK_LINE = "4.2"
"""The Spark line in Delta's artifact name (`delta-spark_<line>_<scala>`)."""

KAFKA_BROKER = "4.4.0"
"""Apache Kafka run as the local broker (KRaft). Runs on Java 17."""

APICURIO_REGISTRY = "3.3.3"
"""Apicurio Registry run as the local schema registry (its Confluent-compatible API at
`/apis/ccompat/v7`). A Quarkus application that needs Java 21+: it runs on its own JDK (Temurin 25
here, `pipelines.registry.local.find_registry_java`), while Spark and the broker keep Java 17."""

CONFLUENT_KAFKA_MIN = "2.6"
"""Oldest confluent-kafka (librdkafka) the Python clients are tested against."""

SPARK_KAFKA_CONNECTOR = f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{SPARK}"
DELTA_SPARK_ARTIFACT = f"io.delta:delta-spark_{DELTA_SPARK_LINE}_{SCALA_BINARY}:{DELTA_JVM}"
DELTA_STORAGE_ARTIFACT = f"io.delta:delta-storage:{DELTA_JVM}"
KAFKA_BROKER_ARTIFACT = f"org.apache.kafka:kafka_{SCALA_BINARY}:{KAFKA_BROKER}"
SPARK_AVRO_ARTIFACT = f"org.apache.spark:spark-avro_{SCALA_BINARY}:{SPARK}"
"""`from_avro`/`to_avro` for the jobs' `--format avro`."""
APICURIO_REGISTRY_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_REGISTRY}:tar.gz:all"
"""The registry's Quarkus fast-jar distribution (`quarkus-run.jar` and its `lib/`), ~160 MB."""

SPARK_PACKAGES: tuple[str, ...] = (
    SPARK_KAFKA_CONNECTOR,
    DELTA_SPARK_ARTIFACT,
    DELTA_STORAGE_ARTIFACT,
    SPARK_AVRO_ARTIFACT,
)
"""Maven coordinates for `spark-submit --packages` on machines that reach Maven Central."""

MAVEN_PROPERTIES: dict[str, str] = {
    "spark.version": SPARK,
    "scala.binary.version": SCALA_BINARY,
    "delta.version": DELTA_JVM,
    "delta.spark.line": DELTA_SPARK_LINE,
    "kafka.version": KAFKA_BROKER,
    "apicurio.version": APICURIO_REGISTRY,
}
"""Passed to `mvn` as `-Dname=value`: the manifests hold no version numbers of their own."""
