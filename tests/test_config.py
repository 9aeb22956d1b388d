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


def test_invalid_override_names_the_field_the_variable_and_the_value() -> None:
    with pytest.raises(PipelinesError) as refused:
        load_settings("local", {"PIPELINES_SPARK__SHUFFLE_PARTITIONS": "many"})
    assert str(refused.value) == (
        "invalid settings: spark.shuffle_partitions = 'many' (from PIPELINES_SPARK__SHUFFLE_PARTITIONS): "
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_an_unknown_key_lists_the_keys_of_its_section(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("spark:\n  shufle_partitions: 8\n")
    with pytest.raises(PipelinesError) as refused:
        load_settings(profile, {"PIPELINES_KAFKA__LINGER": "5"})
    kafka_keys = "bootstrap_servers, producer, replication_factor, sasl_mechanism, sasl_password, "
    kafka_keys += "sasl_username, security_protocol, ssl_ca_location"
    spark_keys = "interpreted_projections, kafka_consumer, log4j_config, master, max_offsets_per_trigger, "
    spark_keys += "shuffle_partitions, ui_enabled"
    assert str(refused.value) == (
        f"invalid settings: unknown key kafka.linger (in PIPELINES_KAFKA__LINGER); kafka takes {kafka_keys}; "
        f"unknown key spark.shufle_partitions (in {profile}); spark takes {spark_keys}"
    )


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(PipelinesError, match=r"profile 'nope' not found.*local"):
        load_settings("nope", {})
