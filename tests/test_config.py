from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.config import load_settings
from pipelines.errors import PipelinesError
from pipelines.paths import PROJECT_ROOT


def test_local_profile_defaults() -> None:
    s = load_settings("local", {})
    assert s.profile == "local"
    assert s.kafka.bootstrap_servers == "local"
    assert s.spark.master == "local[*]"
    assert s.topics["sales"].partitions == 3
    assert s.resolve_path(s.paths.jars_dir) == PROJECT_ROOT / ".jars"


def test_environment_overrides_short_and_nested_forms() -> None:
    s = load_settings(
        "local",
        {
            "PIPELINES_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
            "PIPELINES_SPARK__SHUFFLE_PARTITIONS": "16",
            "PIPELINES_BROKER__DIR": "/srv/kafka",
            "UNRELATED": "x",
        },
    )
    assert s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.spark.shuffle_partitions == 16
    assert s.broker.dir == Path("/srv/kafka")


def test_settings_are_frozen() -> None:
    s = load_settings("local", {})
    with pytest.raises(ValidationError):
        s.spark.master = "yarn"  # type: ignore[misc]


def test_invalid_override_names_the_field() -> None:
    with pytest.raises(PipelinesError, match=r"spark\.shuffle_partitions"):
        load_settings("local", {"PIPELINES_SPARK__SHUFFLE_PARTITIONS": "many"})


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(PipelinesError, match=r"profile 'nope' not found.*local"):
        load_settings("nope", {})
