"""pyproject.toml pins, the installed packages and pipelines/versions.py say the same thing."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pyspark

from pipelines import versions
from pipelines.paths import PROJECT_ROOT


def _pins() -> dict[str, str]:
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m.group(1): m.group(2) for d in deps if (m := re.match(r"^([\w-]+)==([\w.]+)$", d))}


def test_pyproject_pins_match_versions_module() -> None:
    assert _pins() == {"pyspark": versions.SPARK, "delta-spark": versions.DELTA_PYTHON}


def test_installed_pyspark_and_delta_are_the_pinned_ones() -> None:
    assert pyspark.__version__ == versions.SPARK
    assert version("delta-spark") == versions.DELTA_PYTHON


def test_every_jvm_artifact_is_scala_2_13() -> None:
    assert versions.SPARK_PACKAGES == (
        "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
        "io.delta:delta-spark_4.2_2.13:4.4.0",
        "io.delta:delta-storage:4.4.0",
        "org.apache.spark:spark-avro_2.13:4.2.0",
    )
    assert versions.KAFKA_BROKER_ARTIFACT == "org.apache.kafka:kafka_2.13:4.4.0"
