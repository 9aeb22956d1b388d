"""Client security in one place: settings -> librdkafka settings and Spark kafka options.

`KafkaSecurity` is how a client authenticates and encrypts: a security protocol (`PLAINTEXT`, the
default, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`), a SASL mechanism (SCRAM-SHA-512 by default), a
username and password, and the CA certificate that signed the brokers' certificates. It comes from
the `kafka` section of the settings, whose password can only come from the environment
(`PIPELINES_KAFKA__SASL_PASSWORD`; `pipelines.config` refuses one in a profile file), and it turns
into:

* `librdkafka_conf()`: `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
  `ssl.ca.location` for every confluent-kafka client of the project;
* `spark_options()`: `kafka.security.protocol`, `kafka.sasl.mechanism`, `kafka.sasl.jaas.config`
  (a ScramLoginModule line) and a PEM truststore (`kafka.ssl.truststore.type=PEM`) for Spark's
  kafka source and sink.

Entry points (the CLI, the jobs, the processor command, test fixtures) say which credentials to
use for which bootstrap servers with `use_security(servers, security)`; the clients below them
(`pipelines.kafka.*`, `pipelines.sources`, `pipelines.sinks`) look them up with `client_conf` and
`spark_kafka_options` by the servers they were given. Nothing here reads the environment or a
file. A bootstrap string nobody registered gets plaintext, exactly as before security existed.

Secrets never print: `repr` and `describe()` show `***`, and `redact()` replaces every registered
password in a text (progress files and log lines written by the project pass through it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError
from pydantic import SecretStr

from pipelines.errors import PipelinesError

if TYPE_CHECKING:
    from pipelines.config import Settings

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM = "SCRAM-SHA-512"
MASK = "***"
_JAAS_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client connects: protocol, SASL login and the CA to trust. Plaintext by default."""

    protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_MECHANISM
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ca_location: Path | None = None
    """PEM file of the CA that signed the brokers' certificates (None: the system's CAs)."""

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise PipelinesError(
                f"unknown security protocol {self.protocol!r}; use one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.mechanism not in SASL_MECHANISMS:
                raise PipelinesError(
                    f"unknown SASL mechanism {self.mechanism!r}; use one of {', '.join(SASL_MECHANISMS)}"
                )
            if not self.username or self.password is None or not self.password.get_secret_value():
                raise PipelinesError(
                    f"security protocol {self.protocol} needs a username and a password: set "
                    "PIPELINES_KAFKA__SASL_USERNAME and PIPELINES_KAFKA__SASL_PASSWORD in the environment "
                    '(for the local secured broker: eval "$(pipelines broker env)")'
                )
        if self.ca_location is not None and self.uses_tls and not self.ca_location.is_file():
            raise PipelinesError(
                f"the CA certificate {self.ca_location} (PIPELINES_KAFKA__SSL_CA_LOCATION) does not exist"
            )

    def __repr__(self) -> str:
        return f"KafkaSecurity({self.describe()})"

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @property
    def principal(self) -> str:
        """The principal the brokers see (`User:<name>`; `User:ANONYMOUS` without SASL)."""
        return f"User:{self.username}" if self.uses_sasl and self.username else "User:ANONYMOUS"

    def describe(self) -> str:
        """One line for people: never the password."""
        if not self.uses_sasl and not self.uses_tls:
            return "PLAINTEXT (no TLS, no authentication)"
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.mechanism} as {self.principal} (password {MASK})")
        if self.uses_tls:
            parts.append(f"CA {self.ca_location}" if self.ca_location else "system CAs")
        return ", ".join(parts)

    def secrets(self) -> tuple[str, ...]:
        """The secret strings this configuration holds (to keep them out of what is written)."""
        if self.password is None or not self.password.get_secret_value():
            return ()
        return (self.password.get_secret_value(),)

    def librdkafka_conf(self) -> dict[str, str]:
        """confluent-kafka (librdkafka) settings; empty for plaintext."""
        conf: dict[str, str] = {}
        if self.protocol == "PLAINTEXT":
            return conf
        conf["security.protocol"] = self.protocol
        if self.uses_sasl:
            assert self.username is not None and self.password is not None
            conf["sasl.mechanism"] = self.mechanism
            conf["sasl.username"] = self.username
            conf["sasl.password"] = self.password.get_secret_value()
        if self.uses_tls and self.ca_location is not None:
            conf["ssl.ca.location"] = str(self.ca_location)
        return conf

    def jaas_config(self) -> str:
        """The `sasl.jaas.config` line of Kafka's Java clients for this login."""
        assert self.username is not None and self.password is not None
        user, password = _jaas_quote(self.username), _jaas_quote(self.password.get_secret_value())
        return f'{_JAAS_MODULES[self.mechanism]} required username="{user}" password="{password}";'

    def spark_options(self) -> dict[str, str]:
        """Options of Spark's kafka source and sink (`kafka.`-prefixed Java client settings).

        Spark redacts them where it logs options: Kafka's own config logging hides
        `sasl.jaas.config` (a password-type setting), and Spark's redaction
        (`spark.redaction.regex`, matched against keys and values) catches the `password=` inside
        the JAAS line in plans and UI. The CA goes in as a PEM truststore: no JKS to convert.
        """
        options: dict[str, str] = {}
        if self.protocol == "PLAINTEXT":
            return options
        options["kafka.security.protocol"] = self.protocol
        if self.uses_sasl:
            options["kafka.sasl.mechanism"] = self.mechanism
            options["kafka.sasl.jaas.config"] = self.jaas_config()
        if self.uses_tls and self.ca_location is not None:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = str(self.ca_location)
        return options


PLAINTEXT = KafkaSecurity()


def _jaas_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def security_from_settings(settings: Settings) -> KafkaSecurity:
    """The client security the settings describe (relative CA paths resolve from the project root)."""
    kafka = settings.kafka
    ca = settings.resolve_path(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
    return KafkaSecurity(
        protocol=kafka.security_protocol.upper(),
        mechanism=kafka.sasl_mechanism.upper(),
        username=kafka.sasl_username,
        password=kafka.sasl_password,
        ca_location=ca,
    )


# -- which credentials for which servers ----------------------------------------------------------------
_lock = threading.Lock()
_registry: dict[frozenset[str], KafkaSecurity] = {}


def _servers_key(bootstrap_servers: str) -> frozenset[str]:
    return frozenset(s.strip().lower() for s in bootstrap_servers.split(",") if s.strip())


def use_security(bootstrap_servers: str, security: KafkaSecurity) -> None:
    """Make every client of this process that connects to `bootstrap_servers` use `security`.

    Called by entry points once they know the servers and the settings; plaintext unregisters.
    """
    key = _servers_key(bootstrap_servers)
    with _lock:
        if security.protocol == "PLAINTEXT":
            _registry.pop(key, None)
        else:
            _registry[key] = security


def security_for(bootstrap_servers: str) -> KafkaSecurity:
    """The security registered for `bootstrap_servers` (for any one of its addresses), or plaintext."""
    key = _servers_key(bootstrap_servers)
    with _lock:
        found = _registry.get(key)
        if found is None:
            found = next((sec for k, sec in _registry.items() if k & key), None)
    return found or PLAINTEXT


def client_conf(bootstrap_servers: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """`bootstrap.servers` plus the librdkafka security settings for them (`security`, else the
    registered ones). The base of every confluent-kafka client's configuration in the project."""
    sec = security if security is not None else security_for(bootstrap_servers)
    return {"bootstrap.servers": bootstrap_servers, **sec.librdkafka_conf()}


def spark_kafka_options(bootstrap_servers: str, security: KafkaSecurity | None = None) -> dict[str, str]:
    """`kafka.bootstrap.servers` plus the security options for Spark's kafka source or sink."""
    sec = security if security is not None else security_for(bootstrap_servers)
    return {"kafka.bootstrap.servers": bootstrap_servers, **sec.spark_options()}


def known_secrets() -> list[str]:
    """Every password registered in this process."""
    with _lock:
        return [s for sec in _registry.values() for s in sec.secrets()]


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with each of `secrets` (default: every registered password) replaced by `***`."""
    for secret in sorted(set(secrets if secrets is not None else known_secrets()), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


# -- clear errors -----------------------------------------------------------------------------------------
AUTHORIZATION_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: ("topic", "TOPIC_AUTHORIZATION_FAILED"),
    KafkaError.GROUP_AUTHORIZATION_FAILED: ("group", "GROUP_AUTHORIZATION_FAILED"),
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: (
        "transactional-id",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    ),
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: ("cluster", "CLUSTER_AUTHORIZATION_FAILED"),
}


class AuthorizationError(PipelinesError):
    """The broker refused an operation: says who, what, on which resource, and how to grant it."""

    def __init__(self, principal: str, operation: str, resource_type: str, name: str, code: str) -> None:
        self.principal = principal
        self.operation = operation
        self.resource_type = resource_type
        self.name = name
        self.code = code
        target = "--cluster" if resource_type == "cluster" else f"--{resource_type} {name}"
        grant = f"pipelines acls grant {principal} {operation.lower()} {target}"
        super().__init__(
            f"principal {principal} is not allowed to {operation} {resource_type} {name} ({code}); "
            f"grant it with `{grant}` (as an admin principal), or use a principal that may"
        )


def is_authorization_error(err: KafkaError | None) -> bool:
    return err is not None and err.code() in AUTHORIZATION_CODES


def authorization_error(
    err: KafkaError | None, *, bootstrap_servers: str, operation: str, name: str, group: str | None = None
) -> AuthorizationError:
    """The AuthorizationError for a broker's `*_AUTHORIZATION_FAILED` answer: about topic `name`
    (`operation` on it), or about consumer group `group` (Read), or the cluster."""
    assert err is not None, "call it for an error is_authorization_error() accepted"
    resource_type, code = AUTHORIZATION_CODES[err.code()]
    principal = security_for(bootstrap_servers).principal
    if resource_type == "group":
        return AuthorizationError(principal, "Read", "group", group or "?", code)
    if resource_type == "cluster":
        return AuthorizationError(principal, operation, "cluster", "kafka-cluster", code)
    return AuthorizationError(principal, operation, resource_type, name, code)


AUTHENTICATION_HINT = (
    "check PIPELINES_KAFKA__SECURITY_PROTOCOL, PIPELINES_KAFKA__SASL_USERNAME, "
    "PIPELINES_KAFKA__SASL_PASSWORD and PIPELINES_KAFKA__SSL_CA_LOCATION (for the local secured "
    'broker: eval "$(pipelines broker env)")'
)
