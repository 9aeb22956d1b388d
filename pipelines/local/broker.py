"""A real Apache Kafka broker (KRaft, combined broker + controller) run by the project.

The broker is a child JVM started from the jars that `make setup` resolved into `.jars/kafka`, with
its storage, configuration, pid file and logs in one folder:

    DIR/server.properties   generated configuration (single-node settings for internal topics)
    DIR/broker.json         bootstrap servers, ports, cluster id, pid of the running broker
    DIR/data/               the log directory (formatted on first start)
    DIR/logs/server.log     the broker's log; DIR/logs/stdout.log what the JVM printed

A secured broker (`secure=True`, `pipelines broker start --secure`) listens with SASL_SSL
(SCRAM-SHA-512 over TLS) for clients and itself, SSL with client certificates for its controller,
authorizes every request with KRaft's StandardAuthorizer (nothing is allowed without an ACL), and
keeps its certificates and the 0600 credentials file in the same folder (`pipelines.local.security`).

It listens on free ports of 127.0.0.1 only, is ready only once it answers a metadata request, and
keeps its ports across restarts of the same folder. Use it as a context manager, through
`pipelines broker start|stop`, or as the session-scoped pytest fixture in `tests/conftest.py`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from pipelines.errors import BrokerError
from pipelines.local import jvm, security
from pipelines.local.process import (
    HOST,
    Launcher,
    PortPicker,
    ask_until,
    last_lines,
    pid_alive,
    runs,
    terminate,
)
from pipelines.local.process import wait_for_exit as wait_for_exit
from pipelines.paths import CONF_DIR

NODE_ID = 1
_quiet = logging.getLogger("pipelines.local.broker.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class BrokerState:
    """What `DIR/broker.json` records of a broker."""

    bootstrap_servers: str
    port: int
    controller_port: int
    cluster_id: str
    pid: int | None = None
    secure: bool = False
    """TLS + SCRAM + ACLs (the client listener speaks SASL_SSL)."""


def kraft_properties(
    node_id: int,
    voters: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    *,
    replicas: int = 1,
    min_isr: int = 1,
    secure: bool = False,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The configuration of node `node_id`, a combined broker and controller of the static quorum
    `voters` (`id@host:port,...`), listening on HOST: `port` for clients (SASL_SSL when `secure`)
    and `controller_port` for the controllers (SSL when `secure`). Every internal topic gets
    `replicas` copies and `min_isr` in-sync ones; `extra` adds or overrides properties."""
    client, controller = ("SASL_SSL", "SSL") if secure else ("PLAINTEXT", "PLAINTEXT")
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"{client}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"{client}://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:{controller}",
        "log.dirs": str(data_dir),
        "num.partitions": 3,
        # Topics are created on purpose (`pipelines topics create`), never by a typo in a job.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Without this every new consumer group waits 3 s before its first assignment.
        "group.initial.rebalance.delay.ms": 0,
        "log.retention.hours": 168,
        "log.segment.bytes": 64 * 1024 * 1024,
        **(extra or {}),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def server_properties(state: BrokerState, data_dir: Path, security: Mapping[str, str] | None = None) -> str:
    """The broker's configuration. Single-node values for every internal topic, or consumer groups
    and transactional producers would wait forever for replicas that do not exist. A secured
    broker (`state.secure`) gets SASL_SSL and SSL listeners and the `security` properties
    (`pipelines.local.security.secure_properties`)."""
    voters = f"{NODE_ID}@{HOST}:{state.controller_port}"
    return kraft_properties(
        NODE_ID, voters, state.port, state.controller_port, data_dir, secure=state.secure, extra=security
    )


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    # Never one that starts with "-": the storage tool would read it as an option (1 start in 64).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


_pid_alive = pid_alive
"""Kept under its old name for the code that imports it from here."""


def log_tail(log_dir: Path, lines: int = 25) -> str:
    """The last lines of the broker's logs, for error messages."""
    paths = [log_dir / name for name in ("stdout.log", "server.log")]
    parts = [last_lines(p, lines) for p in paths if p.is_file() and p.stat().st_size]
    return "\n".join(parts) or f"(no broker logs in {log_dir})"


def find_java(java: str | None = None) -> str:
    """The java executable: `java` if given, else $JAVA_HOME/bin/java, else `java` on PATH.

    Raises BrokerError saying how to install Java when none is found.
    """
    candidates = [java] if java else []
    if not candidates:
        java_home = os.environ.get("JAVA_HOME")
        if java_home:
            candidates.append(str(Path(java_home) / "bin" / "java"))
        candidates.append("java")
    for c in candidates:
        found = shutil.which(c)
        if found:
            return found
    raise BrokerError(
        f"Java was not found (tried {', '.join(candidates)}). The Kafka broker needs Java 17 or "
        "newer: install it (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
    )


def kafka_command(
    java: str, classpath: str, config: Path, log_dir: Path, log4j_config: Path, heap: str
) -> list[str]:
    """The command line of a Kafka server (`kafka.Kafka`) reading `config` and logging to `log_dir`."""
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={log_dir}",
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(config),
    ]


def format_command(
    java: str,
    classpath: str,
    cluster_id: str,
    config: Path,
    log_dir: Path,
    log4j_config: Path,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command that formats the log directory of `config` for `cluster_id` (a no-op when it
    already is formatted); `extra_args` such as `--add-scram ...` go to the storage tool."""
    return [
        java,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={log4j_config}",
        f"-Dkafka.logs.dir={log_dir}",
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(config),
        "--ignore-formatted",
        *extra_args,
    ]


def check_formatted(proc: subprocess.CompletedProcess[str], data_dir: Path, log_dir: Path) -> None:
    """Keep the format command's output in `log_dir/format.log`; BrokerError if it failed."""

    # The storage tool prints the SCRAM records it adds (salts and derived keys): keep them out.
    # A failing format may echo its `--add-scram` arguments: mask their passwords too.
    def masked(text: str) -> str:
        text = re.sub(r"(salt|storedKey|serverKey)=\[[^\]]*\]", r"\1=[***]", text)
        return re.sub(r"(password=)[^,\]\s]+", r"\1***", text)

    (log_dir / "format.log").write_text(masked(proc.stdout + proc.stderr))
    if proc.returncode != 0:
        raise BrokerError(
            f"formatting the broker storage in {data_dir} failed (exit {proc.returncode}); its output "
            f"is in {log_dir / 'format.log'}:\n" + masked(proc.stderr or proc.stdout).strip()[-2000:]
        )


def format_storage(
    java: str,
    classpath: str,
    cluster_id: str,
    config: Path,
    data_dir: Path,
    log_dir: Path,
    log4j_config: Path,
    extra_args: Sequence[str] = (),
) -> None:
    """Format `data_dir` (the `log.dirs` of `config`) for `cluster_id`; BrokerError if that fails."""
    cmd = format_command(java, classpath, cluster_id, config, log_dir, log4j_config, extra_args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    check_formatted(proc, data_dir, log_dir)


PROBE_CONF = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 250}
"""Client settings of the readiness probes: while a starting broker still refuses connections,
librdkafka doubles its reconnect backoff up to `reconnect.backoff.max.ms` (10 s by default), so a
probe could miss the port opening by seconds; a starting broker is retried every 250 ms at most."""


def probe_client(
    bootstrap_servers: str, client_conf: Mapping[str, str | int | float | bool] | None = None
) -> AdminClient:
    """An admin client for readiness probes (PROBE_CONF), with `client_conf` (security) on top."""
    return AdminClient(
        {"bootstrap.servers": bootstrap_servers, **PROBE_CONF, **(client_conf or {})}, logger=_quiet
    )


def listed_brokers(admin: AdminClient, timeout_s: float) -> set[int] | None:
    """The ids of the brokers a metadata request through `admin` lists, or None when no broker
    answers within `timeout_s`."""
    try:
        md = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException on timeout or transport failure: no answer (yet)
        return None
    return set(md.brokers)


def metadata_answers(
    bootstrap_servers: str, timeout_s: float = 2.0, client_conf: Mapping[str, str] | None = None
) -> bool:
    """True when a broker at `bootstrap_servers` answers a metadata request within `timeout_s`
    (`client_conf`: the security settings a secured broker needs)."""
    return bool(listed_brokers(probe_client(bootstrap_servers, client_conf), timeout_s))


class LocalBroker(Launcher[int, BrokerState]):
    """One local Kafka broker in `directory`. Starting an already running one reports it instead."""

    STATE_FILE = "broker.json"
    KIND = "broker"
    ERROR = BrokerError

    def __init__(
        self,
        directory: Path,
        jars_dir: Path,
        *,
        heap: str = "512m",
        start_timeout_s: float = 90.0,
        java: str | None = None,
        log4j_config: Path = CONF_DIR / "broker-log4j2.yaml",
        secure: bool = False,
    ) -> None:
        super().__init__(directory)
        self.secure = secure
        self.jars_dir = jars_dir
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.java = java
        self.log4j_config = log4j_config

    # -- paths ------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def pid_file(self) -> Path:
        return self.directory / "broker.pid"

    @property
    def credentials_file(self) -> Path:
        """The 0600 file with the secured broker's passwords (the only file holding them)."""
        return self.directory / security.CREDENTIALS_FILE

    @property
    def ca_file(self) -> Path:
        """The secured broker's CA certificate (PEM), for clients' `ssl.ca.location`."""
        return security.tls_files(self.directory).ca_pem

    def credentials(self) -> security.LocalCredentials:
        """The secured broker's credentials; BrokerError if it has none (never started secured)."""
        if not self.credentials_file.is_file():
            raise BrokerError(f"no secured broker has been started in {self.directory}")
        return security.load_or_create_credentials(self.directory)[0]

    def client_conf(self, principal: str = security.ADMIN) -> dict[str, str]:
        """librdkafka settings to reach this broker as `principal` (empty for a plaintext broker)."""
        state = self.read_state()
        if state is None or not state.secure:
            return {}
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": security.SCRAM_MECHANISM,
            "sasl.username": principal,
            "sasl.password": self.credentials().password(principal),
            "ssl.ca.location": str(self.ca_file),
        }

    # -- state ------------------------------------------------------------------------------
    def _parse_state(self, text: str) -> BrokerState:
        return BrokerState(**json.loads(text))

    def _unreadable(self, exc: Exception) -> str:
        return (
            f"{self.state_file} is unreadable ({exc}); the folder looks corrupt. "
            f"Stop any broker using it and remove {self.directory} to start afresh."
        )

    def _write_state(self, state: BrokerState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        if state.pid is not None:
            self.pid_file.write_text(f"{state.pid}\n")
        else:
            self.pid_file.unlink(missing_ok=True)

    def _set_pid(self, state: BrokerState, pid: int | None) -> BrokerState:
        state = replace(state, pid=pid)
        self._write_state(state)
        return state

    def running(self) -> BrokerState | None:
        """The state of the broker running from this folder, or None."""
        state = self.read_state()
        # A reused pid belongs to another program, whose command line is not a Kafka server's.
        if state is None or not runs(state.pid, "kafka.Kafka"):
            return None
        return state

    @property
    def bootstrap_servers(self) -> str:
        return self._recorded_state().bootstrap_servers

    # -- lifecycle --------------------------------------------------------------------------
    def _java(self) -> str:
        return find_java(self.java)

    def start(self) -> tuple[BrokerState, bool]:
        """Start the broker and wait until it answers; returns (state, started_now).

        When a broker already runs from this folder, returns its state and False.
        """
        existing = self.running()
        if existing is not None:
            if existing.secure != self.secure:
                raise BrokerError(self._mode_mismatch(existing.secure))
            if not metadata_answers(existing.bootstrap_servers, timeout_s=10, client_conf=self.client_conf()):
                raise BrokerError(
                    f"a broker process (pid {existing.pid}) runs from {self.directory} but does not "
                    f"answer at {existing.bootstrap_servers}. Stop it with "
                    f"`pipelines broker stop --dir {self.directory}`.\n{log_tail(self.log_dir)}"
                )
            return existing, False
        java = self._java()
        classpath = jvm.broker_classpath(self.jars_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)

        previous = self.read_state()
        if previous is None:
            pick = PortPicker()
            port, controller_port = pick(), pick()
            state = BrokerState(
                f"{HOST}:{port}", port, controller_port, _new_cluster_id(), secure=self.secure
            )
        else:
            if previous.secure != self.secure:
                raise BrokerError(self._mode_mismatch(previous.secure))
            state = replace(previous, pid=None)
        self._require_free(
            (state.port, state.controller_port),
            f"the broker in {self.directory}",
            f"remove {self.state_file} to let the broker choose new free ports",
        )
        secure_props: dict[str, str] | None = None
        scram_args: list[str] = []
        if self.secure:
            creds, _ = security.load_or_create_credentials(self.directory)
            tls = security.ensure_certificates(self.directory, creds, java)
            secure_props = security.secure_properties(creds, tls)
            scram_args = security.add_scram_args(creds)
        config = self.directory / "server.properties"
        config.write_text(server_properties(state, self.data_dir, secure_props))
        self._write_state(state)

        if not (self.data_dir / "meta.properties").is_file():
            # The SCRAM users are created with the storage: the broker needs its own (admin) login
            # for inter-broker traffic before any client could create one.
            format_storage(
                java,
                classpath,
                state.cluster_id,
                config,
                self.data_dir,
                self.log_dir,
                self.log4j_config,
                scram_args,
            )

        cmd = kafka_command(java, classpath, config, self.log_dir, self.log4j_config, self.heap)
        proc = self._spawn(NODE_ID, cmd, self.log_dir / "stdout.log", self.directory)
        state = self._set_pid(state, proc.pid)
        self._started_here = True
        self._wait_ready(state)
        return state, True

    def _mode_mismatch(self, existing_secure: bool) -> str:
        if existing_secure:
            return (
                f"the broker in {self.directory} is a secured one (TLS, SCRAM, ACLs): start it with "
                "--secure (or --profile secure), or give a plaintext broker another --dir"
            )
        return (
            f"the broker in {self.directory} is a plaintext one: start it without --secure, or give "
            "the secured broker another --dir (the secure profile uses .pipelines/broker-secure)"
        )

    def _wait_ready(self, state: BrokerState) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        admin = probe_client(state.bootstrap_servers, self.client_conf())

        def check_running() -> None:
            for _, _, code in self._exited():
                self._set_pid(state, None)
                raise BrokerError(
                    f"the Kafka broker in {self.directory} exited with code {code} while starting.\n"
                    + log_tail(self.log_dir)
                )

        # Each metadata request blocks until the broker answers or its timeout passes.
        if not ask_until(lambda timeout_s: bool(listed_brokers(admin, timeout_s)), deadline, check_running):
            self.stop()
            raise BrokerError(
                f"the Kafka broker did not answer at {state.bootstrap_servers} within "
                f"{self.start_timeout_s:.0f} s; it was stopped.\n" + log_tail(self.log_dir)
            )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout_s`); True if one was running."""
        state = self.running()
        if state is None or state.pid is None:
            if self.state_file.is_file():
                previous = self.read_state()
                if previous is not None and previous.pid is not None:
                    self._set_pid(previous, None)
            return False
        terminate([state.pid], timeout_s)
        self._reap(NODE_ID)
        self._set_pid(state, None)
        return True
