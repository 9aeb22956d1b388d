"""The secured broker refuses what it must: plaintext clients, wrong passwords, and any principal
outside its ACLs, with an error that names the principal, the operation and the topic. The CLI
takes its credentials from the environment only."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from pipelines.kafka.acls import LEAST_PRIVILEGE, list_acls, list_users
from pipelines.kafka.admin import end_offsets, read_range
from pipelines.kafka.consumer import assign_all
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.kafka.reach import SECURITY_HINT, KafkaUnreachable, check_reachable
from pipelines.local.broker import LocalBroker
from pipelines.local.security import CREDENTIALS_FILE
from pipelines.security import AuthorizationError, KafkaSecurity, client_conf, use_security
from tests.helpers import pipelines

Principal = Callable[[str], KafkaSecurity]


def wait_for_error(errors: list[KafkaError], client: AdminClient, timeout_s: float = 30.0) -> KafkaError:
    """The first error librdkafka reports through `error_cb`, served by polling with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not errors and time.monotonic() < deadline:
        client.poll(0.5)
    assert errors, f"no client error within {timeout_s} s"
    return errors[0]


def test_broker_configuration(secure_broker: LocalBroker) -> None:
    props = dict(
        line.split("=", 1)
        for line in (secure_broker.directory / "server.properties").read_text().splitlines()
    )
    port = secure_broker.read_state().port  # type: ignore[union-attr]
    assert props["listeners"].startswith(f"SASL_SSL://127.0.0.1:{port},CONTROLLER://")
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["super.users"] == "User:admin;User:CN=broker"
    credentials = secure_broker.directory / CREDENTIALS_FILE
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert props["ssl.keystore.password"] == f"${{file:{credentials}:store.password}}"


def test_plaintext_client_is_refused(secure_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": secure_bootstrap})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_a_refused_client_is_one_line_pointing_at_the_security_settings(
    secure_bootstrap: str, security_of: Principal
) -> None:
    with pytest.raises(KafkaUnreachable) as plaintext:
        check_reachable(secure_bootstrap)  # no security registered: PLAINTEXT to a TLS listener
    good = security_of("producer")
    wrong = KafkaSecurity(
        "SASL_SSL", username="producer", password=SecretStr("wrong"), ca_location=good.ca_location
    )
    use_security(secure_bootstrap, wrong)
    try:
        with pytest.raises(KafkaUnreachable) as bad_password:
            check_reachable(secure_bootstrap)
    finally:
        use_security(secure_bootstrap, KafkaSecurity())
    for refused in (plaintext, bad_password):
        assert str(refused.value).startswith(f"Kafka at {secure_bootstrap} refused this client (")
        assert str(refused.value).endswith(SECURITY_HINT)
    assert "Invalid username or password" in str(bad_password.value) or "invalid credentials" in str(
        bad_password.value
    )


def test_wrong_password_is_refused(secure_bootstrap: str, security_of: Principal) -> None:
    good = security_of("producer")
    wrong = KafkaSecurity(
        "SASL_SSL", username="producer", password=SecretStr("wrong"), ca_location=good.ca_location
    )
    errors: list[KafkaError] = []
    admin = AdminClient({**client_conf(secure_bootstrap, wrong), "error_cb": errors.append})
    err = wait_for_error(errors, admin)
    assert err.code() == KafkaError._AUTHENTICATION
    assert "invalid credentials" in err.str()
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=2)


def test_untrusted_certificate_is_refused(
    secure_bootstrap: str, security_of: Principal, tmp_path: Path
) -> None:
    good = security_of("producer")
    errors: list[KafkaError] = []
    # The system CAs do not know the broker's local CA: the TLS handshake fails before SASL.
    untrusted = KafkaSecurity("SASL_SSL", username="producer", password=good.password, ca_location=None)
    admin = AdminClient({**client_conf(secure_bootstrap, untrusted), "error_cb": errors.append})
    err = wait_for_error(errors, admin)
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)


def test_producer_writes_orders_and_sales_only(secure_bootstrap: str, as_principal: Principal) -> None:
    as_principal("producer")
    ok = produce_all(make_producer(secure_bootstrap), "sales", [(b"k", b'{"not": "a sale"}')])
    assert (ok.acknowledged, ok.failed) == (1, [])
    refused = produce_all(make_producer(secure_bootstrap), "shipments", [(b"k", b"v")], flush_timeout_s=20)
    assert refused.acknowledged == 0
    assert refused.failed == [(b"k", "Broker: Topic authorization failed")]


def test_producer_cannot_read_shipments(secure_bootstrap: str, as_principal: Principal) -> None:
    as_principal("producer")
    expected = (
        "principal User:producer is not allowed to Read topic shipments (TOPIC_AUTHORIZATION_FAILED); "
        "grant it with `pipelines acls grant User:producer read --topic shipments` (as an admin principal)"
    )
    with pytest.raises(AuthorizationError) as info:
        read_range(secure_bootstrap, "shipments", {}, {0: 1})
    assert str(info.value).startswith(expected)
    assert (info.value.principal, info.value.operation, info.value.name) == (
        "User:producer",
        "Read",
        "shipments",
    )
    with pytest.raises(AuthorizationError, match="User:producer is not allowed to Read topic shipments"):
        assign_all(secure_bootstrap, "shipments", from_beginning=True)


def test_pipeline_reads_orders_but_may_not_write_them(secure_bootstrap: str, as_principal: Principal) -> None:
    as_principal("pipeline")
    assert set(end_offsets(secure_bootstrap, "orders")) == {0, 1, 2}
    refused = produce_all(make_producer(secure_bootstrap), "orders", [(b"k", b"v")], flush_timeout_s=20)
    assert refused.failed == [(b"k", "Broker: Topic authorization failed")]


def test_acls_and_users_are_the_least_privilege_set(secure_bootstrap: str, security_of: Principal) -> None:
    admin = security_of("admin")
    assert list_acls(secure_bootstrap, security=admin) == sorted(LEAST_PRIVILEGE)
    assert set(list_users(secure_bootstrap, security=admin)) == {"admin", "producer", "pipeline"}
    with pytest.raises(AuthorizationError, match="User:pipeline is not allowed to Describe cluster"):
        list_users(secure_bootstrap, security=security_of("pipeline"))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return pipelines(*args, env=env, columns=None)


def test_cli_takes_credentials_from_the_environment(secure_broker: LocalBroker, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINES_")}
    env_out = _cli(
        "broker", "env", "--principal", "producer", "--dir", str(secure_broker.directory), env=base
    )
    assert env_out.returncode == 0, env_out.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in env_out.stdout.splitlines())
    password = secure_broker.credentials().password("producer")
    assert exports["PIPELINES_KAFKA__SASL_PASSWORD"] == password
    assert exports["PIPELINES_KAFKA__SASL_USERNAME"] == "producer"
    assert exports["PIPELINES_BOOTSTRAP_SERVERS"] == secure_broker.bootstrap_servers
    env = {**base, **exports}

    ledger = tmp_path / "ledger.jsonl"
    generated = _cli("generate", "sales", "--count", "25", "--ledger", str(ledger), env=env)
    assert generated.returncode == 0, generated.stderr
    assert len(ledger.read_text().splitlines()) == 25

    status = _cli("status", "--checkpoints", str(tmp_path), env=env)
    assert status.returncode == 0, status.stderr
    assert "SASL_SSL, SCRAM-SHA-512 as User:producer (password ***)" in " ".join(status.stdout.split())
    assert password not in status.stdout + status.stderr

    refused = _cli("consume", "shipments", "--from-beginning", "--count", "1", env=env)
    assert refused.returncode == 1
    assert "User:producer is not allowed to Describe topic shipments" in " ".join(refused.stderr.split())

    no_credentials = {k: v for k, v in env.items() if "SASL" not in k}
    anonymous = _cli("topics", "list", "--profile", "secure", env=no_credentials)
    assert anonymous.returncode == 1
    assert "PIPELINES_KAFKA__SASL_USERNAME and PIPELINES_KAFKA__SASL_PASSWORD" in " ".join(
        anonymous.stderr.split()
    )
