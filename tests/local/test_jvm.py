"""The resolved jar sets: the connectors are there, pyspark's own jars are not duplicated, and the
broker's classpath is kept apart from Spark's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.errors import SetupError
from pipelines.local import jvm


@pytest.mark.parametrize(
    ("file_name", "artifact"),
    [
        ("kafka-clients-3.9.2.jar", "kafka-clients"),
        ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("zstd-jni-1.5.7-7.jar", "zstd-jni"),
        ("RoaringBitmap-1.6.10.jar", "RoaringBitmap"),
        ("guava-14.jar", "guava"),
        ("scala-library-2.13.18.jar", "scala-library"),
    ],
)
def test_artifact_id_of_jar_file_names(file_name: str, artifact: str) -> None:
    assert jvm._artifact_id_of(file_name) == artifact


def test_parse_maven_listing() -> None:
    text = (
        "\nThe following files have been resolved:\n"
        "   org.apache.kafka:kafka-clients:jar:3.9.2:compile:/m2/kafka-clients-3.9.2.jar -- module x\n"
        "   io.delta:delta-storage:jar:4.4.0:compile:/m2/delta-storage-4.4.0.jar\n"
    )
    assert jvm._parse_listing(text) == [
        jvm.Artifact("org.apache.kafka", "kafka-clients", "3.9.2", Path("/m2/kafka-clients-3.9.2.jar")),
        jvm.Artifact("io.delta", "delta-storage", "4.4.0", Path("/m2/delta-storage-4.4.0.jar")),
    ]


def test_spark_jars_have_the_connectors_and_nothing_pyspark_ships(jars_dir: Path) -> None:
    names = {p.name for p in jvm.spark_jars(jars_dir)}
    for expected in (
        "spark-sql-kafka-0-10_2.13-4.2.0.jar",
        "spark-token-provider-kafka-0-10_2.13-4.2.0.jar",
        "commons-pool2-2.13.1.jar",
        "delta-spark_4.2_2.13-4.4.0.jar",
        "delta-storage-4.4.0.jar",
    ):
        assert expected in names
    assert any(n.startswith("kafka-clients-") for n in names)
    shipped = jvm.pyspark_jar_names()
    assert {jvm._artifact_id_of(n) for n in names} & shipped == set()
    assert not any(n.startswith(("scala-library", "spark-core", "spark-sql_", "kafka_2.13")) for n in names)


def test_broker_classpath_is_separate_and_complete(jars_dir: Path) -> None:
    entries = jvm.broker_classpath(jars_dir).split(":")
    names = {Path(e).name for e in entries}
    assert "kafka_2.13-4.4.0.jar" in names
    assert "kafka-server-4.4.0.jar" in names
    assert "log4j-slf4j-impl-2.25.5.jar" in names
    assert all(Path(e).is_absolute() and Path(e).is_file() for e in entries)
    assert not names & {p.name for p in jvm.spark_jars(jars_dir)}


def test_a_changed_manifest_marks_the_jars_out_of_date(tmp_path: Path, jars_dir: Path) -> None:
    shutil.copytree(jars_dir / "spark", tmp_path / "spark")
    assert jvm.is_resolved(tmp_path, "spark")
    stamp = tmp_path / "spark" / jvm.STAMP
    data = json.loads(stamp.read_text())
    data["fingerprint"]["spark.version"] = "0.0.1"
    stamp.write_text(json.dumps(data))
    assert not jvm.is_resolved(tmp_path, "spark")
    with pytest.raises(SetupError, match="make setup"):
        jvm.spark_jars(tmp_path)
