"""Is Kafka there? One fast metadata round trip before a command or a job starts its real work.

librdkafka retries an unreachable broker until the caller's timeout, and Spark's Kafka clients
retry for minutes: a wrong `--bootstrap-servers` would show up as a long hang and then a stack
trace. `check_reachable` asks for the cluster's metadata with the client security registered for
the servers (`pipelines.security`) and turns what goes wrong into one line that names the servers
tried and what to do, within `timeout_s`:

* nothing answers (connection refused, unknown host, timeouts): start the local broker or point
  `--bootstrap-servers` / `PIPELINES_BOOTSTRAP_SERVERS` at a running one;
* a broker answers but refuses the client (TLS handshake, SASL authentication): the security
  settings are wrong or missing.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from pipelines.errors import PipelinesError
from pipelines.security import client_conf

REACH_TIMEOUT_S = 10.0
"""How long a command or job waits for a first answer from Kafka before it gives up."""

_REFUSED = {KafkaError._AUTHENTICATION, KafkaError._SSL}
EARLY_GIVE_UP_S = 2.0
"""When every broker refused the connection or did not resolve, give up after this long instead of
the whole timeout (a broker that is restarting gets this long to come back)."""

WHAT_TO_DO = (
    "Start the local broker with `pipelines broker start`, or pass --bootstrap-servers HOST:PORT "
    "(or set PIPELINES_BOOTSTRAP_SERVERS) naming a running broker"
)
SECURITY_HINT = (
    "check the client's security settings (PIPELINES_KAFKA__SECURITY_PROTOCOL, __SASL_USERNAME, "
    '__SASL_PASSWORD, __SSL_CA_LOCATION; for the local secured broker: eval "$(pipelines broker env)" '
    "and --profile secure)"
)


class KafkaUnreachable(PipelinesError):
    """No broker at the bootstrap servers answered, or the one that did refused the client."""


class _Failures(logging.Handler):
    """librdkafka's connection failures (its FAIL log lines) for one probe: they say why, where
    the error callback only says that every broker is down."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check_reachable(bootstrap_servers: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Return once a broker of `bootstrap_servers` answers a metadata request; raise
    KafkaUnreachable (one line: servers, cause, what to do) when none does within `timeout_s` or
    one refuses the client: a TLS or SASL listener for a plaintext client, a failed TLS handshake,
    a refused SASL login."""
    errors: list[KafkaError] = []
    failures = _Failures()
    logger = logging.getLogger("pipelines.kafka.reach")
    logger.addHandler(failures)
    logger.propagate = False  # the probe's failed attempts are its result, not log lines
    logger.setLevel(logging.DEBUG)
    conf: dict[str, Any] = {
        **client_conf(bootstrap_servers),
        "error_cb": errors.append,
        # Try again soon after a refused connection, not after librdkafka's growing backoff.
        "reconnect.backoff.max.ms": 500,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
    }
    admin = AdminClient(conf, logger=logger)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        while True:
            try:
                admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                errors.append(exc.args[0])
            admin.poll(0)  # serves error_cb and the log queue
            texts = [*failures.lines, *(e.str() for e in errors if e.code() in _REFUSED)]
            refused = [t for t in texts if _refused(t)]
            if refused:
                why = _reason(refused[-1])
                raise KafkaUnreachable(
                    f"Kafka at {bootstrap_servers} refused this client ({why}): {SECURITY_HINT}"
                )
            all_down = any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in errors)
            now = time.monotonic()
            if now >= deadline or (all_down and now - started >= min(EARLY_GIVE_UP_S, timeout_s)):
                cause = _reason(failures.lines[-1]) if failures.lines else "no answer"
                raise KafkaUnreachable(
                    f"no Kafka broker answered at {bootstrap_servers} ({cause}). {WHAT_TO_DO}."
                )
    finally:
        logger.removeHandler(failures)


def _refused(text: str) -> bool:
    """A broker answered and refused: it hung up during the first request (a TLS or SASL listener
    and a client that does not speak it), the TLS handshake failed, or the SASL login did."""
    return (
        "in state APIVERSION_QUERY" in text
        or "SSL handshake failed" in text
        or "SASL authentication error" in text
        or "Authentication failed" in text
    )


def _reason(text: str) -> str:
    """librdkafka's message without the client and broker names it starts with and its state
    suffix; a hang-up during the first request is said in words."""
    if "in state APIVERSION_QUERY" in text and "Disconnected" in text:
        return "it closed the connection at the first request: it expects TLS or SASL"
    text = text.split("/bootstrap: ", 1)[-1]
    return re.sub(r" \(after \d+ms in state \w+\)", "", text)
