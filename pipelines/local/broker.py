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
import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from pipelines.errors import BrokerError
from pipelines.local import jvm, security
from pipelines.paths import CONF_DIR

HOST = "127.0.0.1"
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


def server_properties(state: BrokerState, data_dir: Path, security: Mapping[str, str] | None = None) -> str:
    """The broker's configuration. Single-node values for every internal topic, or consumer groups
    and transactional producers would wait forever for replicas that do not exist. A secured
    broker (`state.secure`) gets SASL_SSL and SSL listeners and the `security` properties
    (`pipelines.local.security.secure_properties`)."""
    client, controller = ("SASL_SSL", "SSL") if state.secure else ("PLAINTEXT", "PLAINTEXT")
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{state.controller_port}",
        "listeners": f"{client}://{HOST}:{state.port},CONTROLLER://{HOST}:{state.controller_port}",
        "advertised.listeners": f"{client}://{HOST}:{state.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:{controller}",
        "log.dirs": str(data_dir),
        "num.partitions": 3,
        # Topics are created on purpose (`pipelines topics create`), never by a typo in a job.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Without this every new consumer group waits 3 s before its first assignment.
        "group.initial.rebalance.delay.ms": 0,
        "log.retention.hours": 168,
        "log.segment.bytes": 64 * 1024 * 1024,
        **(security or {}),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    # Never one that starts with "-": the storage tool would read it as an option (1 start in 64).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not a running broker.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait until process `pid` has exited, up to `timeout_s`; True if it did.

    Uses a pidfd, which becomes readable when the process ends, so nothing polls or sleeps.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        if readable:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return bool(readable) or not _pid_alive(pid)
    finally:
        os.close(fd)


def log_tail(log_dir: Path, lines: int = 25) -> str:
    """The last lines of the broker's logs, for error messages."""
    parts = []
    for name in ("stdout.log", "server.log"):
        path = log_dir / name
        if path.is_file() and path.stat().st_size:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- last lines of {path} ---\n" + "\n".join(text))
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


def metadata_answers(
    bootstrap_servers: str, timeout_s: float = 2.0, client_conf: Mapping[str, str] | None = None
) -> bool:
    """True when a broker at `bootstrap_servers` answers a metadata request within `timeout_s`
    (`client_conf`: the security settings a secured broker needs)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(client_conf or {})}, logger=_quiet)
    try:
        md = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException on timeout or transport failure: not ready (yet)
        return False
    return bool(md.brokers)


class LocalBroker:
    """One local Kafka broker in `directory`. Starting an already running one reports it instead."""

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
        self.directory = directory.resolve()
        self.secure = secure
        self.jars_dir = jars_dir
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.java = java
        self.log4j_config = log4j_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_here = False

    # -- paths ------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.directory / "broker.json"

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
    def read_state(self) -> BrokerState | None:
        if not self.state_file.is_file():
            return None
        try:
            return BrokerState(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError) as exc:
            raise BrokerError(
                f"{self.state_file} is unreadable ({exc}); the folder looks corrupt. "
                f"Stop any broker using it and remove {self.directory} to start afresh."
            ) from None

    def _write_state(self, state: BrokerState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        if state.pid is not None:
            self.pid_file.write_text(f"{state.pid}\n")
        else:
            self.pid_file.unlink(missing_ok=True)

    def running(self) -> BrokerState | None:
        """The state of the broker running from this folder, or None."""
        state = self.read_state()
        if state is None or state.pid is None or not _pid_alive(state.pid):
            return None
        if "kafka.Kafka" not in _cmdline(state.pid):
            return None  # the pid was reused by another program
        return state

    @property
    def bootstrap_servers(self) -> str:
        state = self.read_state()
        if state is None:
            raise BrokerError(f"no broker has been started in {self.directory}")
        return state.bootstrap_servers

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
            port, controller_port = _free_port(), _free_port()
            while controller_port == port:
                controller_port = _free_port()
            state = BrokerState(
                f"{HOST}:{port}", port, controller_port, _new_cluster_id(), secure=self.secure
            )
        else:
            if previous.secure != self.secure:
                raise BrokerError(self._mode_mismatch(previous.secure))
            state = BrokerState(**{**asdict(previous), "pid": None})
        for p in (state.port, state.controller_port):
            if not _port_is_free(p):
                raise BrokerError(
                    f"port {p} on {HOST} is taken by another process, and the broker in "
                    f"{self.directory} was set up to use it. Free the port, or remove "
                    f"{self.state_file} to let the broker choose new free ports."
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
                java, classpath, state.cluster_id, config, self.data_dir, self.log_dir, self.log4j_config,
                scram_args,
            )  # fmt: skip

        stdout = (self.log_dir / "stdout.log").open("ab")
        cmd = kafka_command(java, classpath, config, self.log_dir, self.log4j_config, self.heap)
        # A session of its own: the broker outlives `pipelines broker start` and ignores the
        # terminal's Ctrl-C, which is meant for the foreground command.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.directory,
        )
        stdout.close()
        state = BrokerState(**{**asdict(state), "pid": self._proc.pid})
        self._write_state(state)
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
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": state.bootstrap_servers,
            **self.client_conf(),
        }
        admin = AdminClient(conf, logger=_quiet)
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                self._write_state(BrokerState(**{**asdict(state), "pid": None}))
                raise BrokerError(
                    f"the Kafka broker in {self.directory} exited with code {code} while starting.\n"
                    + log_tail(self.log_dir)
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise BrokerError(
                    f"the Kafka broker did not answer at {state.bootstrap_servers} within "
                    f"{self.start_timeout_s:.0f} s; it was stopped.\n" + log_tail(self.log_dir)
                )
            try:
                # Blocks until the broker answers or the timeout passes: the wait is the request.
                md = admin.list_topics(timeout=min(2.0, max(remaining, 0.1)))
                if md.brokers:
                    return
            except Exception:  # KafkaException: not up yet
                continue

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout_s`); True if one was running."""
        state = self.running()
        if state is None or state.pid is None:
            if self.state_file.is_file():
                previous = self.read_state()
                if previous is not None and previous.pid is not None:
                    self._write_state(BrokerState(**{**asdict(previous), "pid": None}))
            return False
        os.kill(state.pid, signal.SIGTERM)
        if not wait_for_exit(state.pid, timeout_s):
            os.kill(state.pid, signal.SIGKILL)
            wait_for_exit(state.pid, 10)
        if self._proc is not None:
            self._proc.wait(timeout=10)
            self._proc = None
        self._write_state(BrokerState(**{**asdict(state), "pid": None}))
        return True

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()
            self._started_here = False
