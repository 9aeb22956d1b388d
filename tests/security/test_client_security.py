"""Client security from settings: env -> one KafkaSecurity -> librdkafka settings and Spark kafka
options; secrets only from the environment and never printed; the least-privilege table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from pipelines.config import load_settings
from pipelines.errors import PipelinesError
from pipelines.kafka.acls import LEAST_PRIVILEGE, Grant
from pipelines.paths import CONF_DIR
from pipelines.security import (
    KafkaSecurity,
    client_conf,
    redact,
    security_for,
    security_from_settings,
    spark_kafka_options,
    use_security,
)

PASSWORD = "s3cret-Value-9f8e"


def secure_env(ca: Path) -> dict[str, str]:
    return {
        "PIPELINES_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PIPELINES_KAFKA__SASL_USERNAME": "pipeline",
        "PIPELINES_KAFKA__SASL_PASSWORD": PASSWORD,
        "PIPELINES_KAFKA__SSL_CA_LOCATION": str(ca),
    }


def test_environment_becomes_librdkafka_and_spark_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    sec = security_from_settings(load_settings("local", secure_env(ca)))
    assert sec.librdkafka_conf() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pipeline",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
    }
    assert sec.spark_options() == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="pipeline" password="{PASSWORD}";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(ca),
    }
    assert sec.principal == "User:pipeline"


def test_the_password_never_prints(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = load_settings("local", secure_env(ca))
    sec = security_from_settings(settings)
    for text in (repr(settings), str(settings), repr(sec), sec.describe(), str(settings.kafka.sasl_password)):
        assert PASSWORD not in text
    assert sec.describe() == f"SASL_SSL, SCRAM-SHA-512 as User:pipeline (password ***), CA {ca}"
    assert redact(f"x {PASSWORD} y", [PASSWORD]) == "x *** y"


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    sec = security_from_settings(load_settings("local", {}))
    assert sec == KafkaSecurity()
    assert client_conf("127.0.0.1:1") == {"bootstrap.servers": "127.0.0.1:1"}
    assert spark_kafka_options("127.0.0.1:1") == {"kafka.bootstrap.servers": "127.0.0.1:1"}


def test_registered_security_applies_to_those_servers_only(tmp_path: Path) -> None:
    sec = KafkaSecurity("SASL_PLAINTEXT", username="u", password=SecretStr("p"))
    use_security("10.0.0.1:9092,10.0.0.2:9092", sec)
    try:
        assert security_for("10.0.0.2:9092") is sec
        assert client_conf("10.0.0.1:9092,10.0.0.2:9092")["sasl.username"] == "u"
        assert client_conf("10.0.0.9:9092") == {"bootstrap.servers": "10.0.0.9:9092"}
    finally:
        use_security("10.0.0.1:9092,10.0.0.2:9092", KafkaSecurity())
    assert security_for("10.0.0.2:9092") == KafkaSecurity()


def test_a_password_in_a_profile_file_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "leaky.yaml"
    profile.write_text("kafka:\n  security_protocol: SASL_SSL\n  sasl_password: hunter2\n")
    with pytest.raises(PipelinesError, match="PIPELINES_KAFKA__SASL_PASSWORD") as info:
        load_settings(profile, {})
    assert "hunter2" not in str(info.value)


def test_sasl_without_credentials_says_which_variables_to_set() -> None:
    settings = load_settings("secure", {})
    with pytest.raises(
        PipelinesError, match="PIPELINES_KAFKA__SASL_USERNAME and PIPELINES_KAFKA__SASL_PASSWORD"
    ):
        security_from_settings(settings)


def test_secure_profile_holds_no_secret() -> None:
    text = (CONF_DIR / "secure.yaml").read_text()
    assert "sasl_password" not in text.replace("kafka.sasl_password", "")
    settings = load_settings(
        "secure", {"PIPELINES_KAFKA__SASL_USERNAME": "u", "PIPELINES_KAFKA__SASL_PASSWORD": "p"}
    )
    assert settings.broker.secure and settings.kafka.security_protocol == "SASL_SSL"


def test_least_privilege_is_exactly_what_each_principal_needs() -> None:
    def grants(principal: str) -> set[tuple[str, str, str, bool]]:
        return {
            (g.operation, g.resource_type, g.name, g.prefixed)
            for g in LEAST_PRIVILEGE
            if g.principal == principal
        }

    assert grants("User:producer") == {
        ("write", "topic", "orders", False),
        ("write", "topic", "sales", False),
    }
    assert grants("User:pipeline") == {
        ("read", "topic", "orders", False),
        ("read", "topic", "sales", False),
        *{("write", "topic", t, False) for t in
          ("shipments", "revenue-per-minute", "customer-order-counts", "orders.dlq", "sales.dlq")},
        ("read", "group", "spark-kafka-source-", True),
        ("read", "group", "orders-to-shipments", True),
        ("read", "group", "pipelines-", True),
        ("write", "transactional-id", "orders-to-shipments", True),
        ("write", "transactional-id", "pipelines-", True),
    }  # fmt: skip
    assert {g.principal for g in LEAST_PRIVILEGE} == {"User:producer", "User:pipeline"}
    assert Grant("User:x", "topic", "t", "read", prefixed=True).describe() == "User:x read topic t*"
