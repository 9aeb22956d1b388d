"""A real three-node Apache Kafka cluster (KRaft) on 127.0.0.1, run by the project.

Each node is a child JVM in combined mode (broker and controller), started from the jars that
`make setup` resolved into `.jars/kafka`. The three controllers form one static quorum
(`controller.quorum.voters`), so the cluster keeps working, and keeps its metadata, with any one
node down. One folder holds everything:

    DIR/cluster.json             cluster id, bootstrap servers, each node's ports and pid
    DIR/node-N/server.properties the node's generated configuration
    DIR/node-N/data/             its log directory (formatted on first start, same cluster id)
    DIR/node-N/logs/             its server.log, stdout.log and format.log

Replication is the point of a cluster, so its defaults are the production ones, not the single
broker's: topics created without a replication factor get 3 copies (`default.replication.factor`),
an `acks=all` write needs 2 in-sync copies (`min.insync.replicas`), and the offsets and transaction
state topics are replicated 3 times with a minimum ISR of 2.

Ports are free loopback ports chosen on the first start (or given), recorded in `cluster.json` and
kept across restarts of the same folder. Ready means a metadata request lists every node as a
broker. For failure tests: `kill(node)` (SIGKILL), `start_node(node)`, `stop_node(node)`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipelines.errors import BrokerError
from pipelines.local import jvm
from pipelines.local.broker import (
    _new_cluster_id,
    check_formatted,
    find_java,
    format_command,
    kafka_command,
    kraft_properties,
    listed_brokers,
    log_tail,
    probe_client,
)
from pipelines.local.process import (
    HOST,
    Launcher,
    PortPicker,
    ask_until,
    first_taken,
    poll_until,
    runs,
    sigkill,
    wait_for_exit,
    write_atomically,
)
from pipelines.paths import CONF_DIR

STATE_FILE = "cluster.json"
DEFAULT_BROKERS = 3
QUORUMLESS_SHUTDOWN_S = 10.0
"""How long a node may take to stop once a majority of the nodes is gone, before SIGKILL."""
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


@dataclass(frozen=True)
class NodeState:
    """One node of the cluster: its id, its client and controller ports, its pid when running."""

    node_id: int
    port: int
    controller_port: int
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class ClusterState:
    """What `DIR/cluster.json` records of a cluster."""

    cluster_id: str
    nodes: tuple[NodeState, ...]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated: clients reach the cluster through any."""
        return ",".join(n.address for n in self.nodes)

    def node(self, node_id: int) -> NodeState:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise BrokerError(f"the cluster has no node {node_id} (nodes: {[n.node_id for n in self.nodes]})")

    def with_node(self, node: NodeState) -> ClusterState:
        return replace(self, nodes=tuple(node if n.node_id == node.node_id else n for n in self.nodes))

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster_id": self.cluster_id,
                "bootstrap_servers": self.bootstrap_servers,
                "nodes": [asdict(n) for n in self.nodes],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        doc = json.loads(text)
        return cls(doc["cluster_id"], tuple(NodeState(**n) for n in doc["nodes"]))


def node_properties(state: ClusterState, node_id: int, data_dir: Path) -> str:
    """The configuration of node `node_id`: combined broker and controller, one of a static
    three-voter quorum, with replicated defaults for every topic the cluster creates."""
    node = state.node(node_id)
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in state.nodes)
    replicas = len(state.nodes)
    min_isr = min(MIN_INSYNC_REPLICAS, replicas)
    replicated: dict[str, object] = {
        # What a replicated cluster is for: every topic created without an explicit factor has a
        # copy on each node, and an acks=all write is acknowledged only once two copies have it,
        # so losing any one node loses no acknowledged record.
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        # Never elect an out-of-sync replica: that would silently drop acknowledged records.
        "unclean.leader.election.enable": "false",
        # A node that stops heartbeating is fenced after this long, which moves its leaderships
        # and removes it from the in-sync replicas. 9 s by default; 6 s keeps failover quick
        # here while staying far above any pause of a healthy JVM on a busy two-core machine.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 6000,
    }
    return kraft_properties(
        node_id,
        voters,
        node.port,
        node.controller_port,
        data_dir,
        replicas=replicas,
        min_isr=min_isr,
        extra=replicated,
    )


def cluster_metadata(bootstrap_servers: str, timeout_s: float = 2.0) -> set[int] | None:
    """The ids of the brokers a metadata request at `bootstrap_servers` lists, or None when no
    broker answers within `timeout_s`. A KRaft broker is listed once the controller has unfenced
    it, and dropped once fenced."""
    return listed_brokers(probe_client(bootstrap_servers), timeout_s)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.25) -> None:
    """Check `condition` until it holds, at most every `every_s`, for up to `timeout_s`;
    BrokerError naming `what` when the deadline passes. (A pacing interval, not a sleep that
    guesses how long something takes: the condition decides.)"""
    if poll_until(lambda: condition() or None, timeout_s, every_s) is None:
        raise BrokerError(f"{what} did not happen within {timeout_s:.0f} s")


class LocalCluster(Launcher[int, ClusterState]):
    """A local Kafka cluster of `brokers` nodes in `directory` (None: as many as the folder's
    cluster has, 3 for a new one).

    `start()` brings every node up (starting only the ones not running) and waits until all are
    brokers in the metadata; `stop()` stops them all. The ports are `ports` (client ports, one per
    node) on the first start, free ports when None, and those recorded in `cluster.json` after.
    """

    STATE_FILE = STATE_FILE
    KIND = "cluster"
    ERROR = BrokerError

    def __init__(
        self,
        directory: Path,
        jars_dir: Path,
        *,
        brokers: int | None = None,
        ports: Sequence[int] | None = None,
        heap: str = "512m",
        start_timeout_s: float = 120.0,
        java: str | None = None,
        log4j_config: Path = CONF_DIR / "broker-log4j2.yaml",
    ) -> None:
        if brokers is not None and brokers < 1:
            raise BrokerError("a cluster needs at least one broker")
        if ports is not None and brokers is not None and len(ports) != brokers:
            raise BrokerError(f"{len(ports)} ports given for {brokers} brokers; give one per broker")
        if brokers is None and ports is not None:
            brokers = len(ports)
        super().__init__(directory)
        self.jars_dir = jars_dir
        self.brokers = brokers
        self.ports = tuple(ports) if ports is not None else None
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.java = java
        self.log4j_config = log4j_config

    # -- paths ------------------------------------------------------------------------------
    def node_dir(self, node_id: int) -> Path:
        return self.directory / f"node-{node_id}"

    def data_dir(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "data"

    def log_dir(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "logs"

    # -- state ------------------------------------------------------------------------------
    def _parse_state(self, text: str) -> ClusterState:
        return ClusterState.from_json(text)

    def _unreadable(self, exc: Exception) -> str:
        return (
            f"{self.state_file} is unreadable ({exc!r}); the folder looks corrupt. "
            f"Stop any broker using it and remove {self.directory} to start afresh."
        )

    def _write_state(self, state: ClusterState) -> None:
        write_atomically(self.state_file, state.to_json() + "\n")

    def _set_pid(self, node_id: int, pid: int | None) -> ClusterState:
        state = self._recorded_state()
        state = state.with_node(replace(state.node(node_id), pid=pid))
        self._write_state(state)
        return state

    def _node_running(self, node: NodeState) -> bool:
        return runs(node.pid, "kafka.Kafka", str(self.node_dir(node.node_id)))

    def running_nodes(self) -> list[NodeState]:
        """The nodes whose process runs (whether or not they answer yet)."""
        state = self.read_state()
        return [] if state is None else [n for n in state.nodes if self._node_running(n)]

    def running(self) -> ClusterState | None:
        """The cluster's state when every one of its nodes runs, else None."""
        state = self.read_state()
        if state is None or len(self.running_nodes()) != len(state.nodes):
            return None
        return state

    @property
    def bootstrap_servers(self) -> str:
        return self._recorded_state().bootstrap_servers

    def brokers_in_metadata(self, timeout_s: float = 2.0) -> set[int] | None:
        """The node ids the cluster's metadata lists as brokers (None when no node answers)."""
        return cluster_metadata(self.bootstrap_servers, timeout_s)

    # -- lifecycle --------------------------------------------------------------------------
    def _new_state(self) -> ClusterState:
        pick = PortPicker()
        wanted = self.ports or (None,) * (self.brokers or DEFAULT_BROKERS)
        nodes = tuple(NodeState(node_id=i + 1, port=pick(w), controller_port=0) for i, w in enumerate(wanted))
        nodes = tuple(replace(n, controller_port=pick()) for n in nodes)
        return ClusterState(_new_cluster_id(), nodes)

    def _prepare(self) -> ClusterState:
        """The state to start from: the recorded one (pids of stopped nodes cleared), or a new one."""
        previous = self.read_state()
        if previous is None:
            if (self.directory / "broker.json").is_file():
                raise BrokerError(
                    f"{self.directory} holds a single broker (broker.json), not a cluster. Stop it and "
                    "use another folder for the cluster (--dir), or remove this one to start afresh."
                )
            state = self._new_state()
        else:
            if self.brokers is not None and len(previous.nodes) != self.brokers:
                raise BrokerError(
                    f"the cluster in {self.directory} has {len(previous.nodes)} nodes, not {self.brokers}; "
                    "use another folder, or remove this one to start afresh"
                )
            if self.ports is not None and tuple(n.port for n in previous.nodes) != self.ports:
                raise BrokerError(
                    f"the cluster in {self.directory} was set up on ports "
                    f"{previous.bootstrap_servers}, not on the ports asked for now "
                    f"({', '.join(map(str, self.ports))}); remove {self.state_file} to move it"
                )
            state = ClusterState(
                previous.cluster_id,
                tuple(n if self._node_running(n) else replace(n, pid=None) for n in previous.nodes),
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_state(state)
        return state

    def start(self) -> tuple[ClusterState, bool]:
        """Start every node that is not running and wait until all are brokers in the metadata;
        returns (state, started_now). With every node already running and answering, returns the
        state and False. BrokerError (with the logs' last lines) when a node cannot start."""
        state = self._prepare()
        stopped = [n for n in state.nodes if n.pid is None]
        if not stopped:
            if self.brokers_in_metadata(timeout_s=10) != {n.node_id for n in state.nodes}:
                raise BrokerError(
                    f"the cluster's processes run from {self.directory} but its metadata does not list "
                    f"every node at {state.bootstrap_servers}. Stop it with "
                    f"`pipelines broker stop --dir {self.directory}`.\n" + self._log_tails(state)
                )
            return state, False
        runtime = self._jvm()
        for node in stopped:
            self._require_free(
                (node.port, node.controller_port),
                f"node {node.node_id} of the cluster in {self.directory}",
                f"remove {self.state_file} (and the node folders) to start a new cluster on free ports",
            )
        state = self._bring_up(runtime, state, stopped)
        self._started_here = True
        return state, True

    def _jvm(self) -> tuple[str, str]:
        """The java executable and the classpath the nodes run with."""
        return find_java(self.java), jvm.broker_classpath(self.jars_dir)

    def _bring_up(
        self, runtime: tuple[str, str], state: ClusterState, nodes: list[NodeState]
    ) -> ClusterState:
        """Format and launch `nodes` (with `runtime`: java and classpath), and wait until they
        are brokers again; stops them when that fails."""
        self._format(*runtime, state, nodes)
        node_ids = [n.node_id for n in nodes]
        try:
            for node in nodes:
                state = self._launch(*runtime, node)
            self.wait_ready(state, node_ids)
        except BaseException:
            # Never leave half a cluster behind: orphaned nodes would keep talking to ports that
            # the next cluster may be given.
            self._stop_nodes(node_ids, timeout_s=30)
            raise
        return state

    def _write_config(self, state: ClusterState, node_id: int) -> Path:
        self.log_dir(node_id).mkdir(parents=True, exist_ok=True)
        config = self.node_dir(node_id) / "server.properties"
        config.write_text(node_properties(state, node_id, self.data_dir(node_id)))
        return config

    def _format(self, java: str, classpath: str, state: ClusterState, nodes: list[NodeState]) -> None:
        """Format the log directories that are not formatted yet, all at once (a JVM each)."""
        pending = {}
        for node in nodes:
            config = self._write_config(state, node.node_id)
            if not (self.data_dir(node.node_id) / "meta.properties").is_file():
                cmd = format_command(
                    java, classpath, state.cluster_id, config, self.log_dir(node.node_id), self.log4j_config
                )
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                pending[node.node_id] = (cmd, proc)
        for node_id, (cmd, proc) in pending.items():
            out, errors = proc.communicate(timeout=120)
            done = subprocess.CompletedProcess(cmd, proc.returncode, out, errors)
            check_formatted(done, self.data_dir(node_id), self.log_dir(node_id))

    def _launch(self, java: str, classpath: str, node: NodeState) -> ClusterState:
        log_dir = self.log_dir(node.node_id)
        config = self.node_dir(node.node_id) / "server.properties"
        cmd = kafka_command(java, classpath, config, log_dir, self.log4j_config, self.heap)
        proc = self._spawn(node.node_id, cmd, log_dir / "stdout.log", self.node_dir(node.node_id))
        return self._set_pid(node.node_id, proc.pid)

    def wait_ready(self, state: ClusterState | None = None, fresh: Sequence[int] = ()) -> None:
        """Wait until the metadata lists every node as a broker, and each node in `fresh` (just
        started) answers on its own port listing every node: a node killed moments ago can still be
        listed until it is fenced, so the cluster's word alone does not prove a restarted node is up.
        BrokerError with the logs' last lines when a node exits or the deadline passes."""
        current = state or self.read_state()
        assert current is not None
        want = {n.node_id for n in current.nodes}
        deadline = time.monotonic() + self.start_timeout_s

        def lists_every_node(servers: str, timeout_s: float) -> bool:
            return cluster_metadata(servers, timeout_s) == want

        for node_id in [None, *fresh]:
            servers = current.bootstrap_servers if node_id is None else current.node(node_id).address
            # Each metadata request blocks until a broker answers or its timeout passes.
            if not ask_until(
                functools.partial(lists_every_node, servers), deadline, lambda: self._check_alive(current)
            ):
                raise BrokerError(
                    f"the Kafka cluster in {self.directory} did not list all {len(want)} brokers "
                    f"within {self.start_timeout_s:.0f} s; the nodes just started were stopped.\n"
                    + self._log_tails(current)
                )

    def _check_alive(self, state: ClusterState) -> None:
        for node_id, proc, code in self._exited():
            if state.node(node_id).pid == proc.pid:
                self._set_pid(node_id, None)
                raise BrokerError(
                    f"node {node_id} of the Kafka cluster in {self.directory} exited with code {code}.\n"
                    + log_tail(self.log_dir(node_id))
                )

    def _log_tails(self, state: ClusterState) -> str:
        return "\n".join(f"node {n.node_id}:\n{log_tail(self.log_dir(n.node_id), 10)}" for n in state.nodes)

    def kill(self, node_id: int) -> None:
        """SIGKILL node `node_id` (no controlled shutdown, as in a crash) and wait until it is gone.
        Its replicas drop out of the in-sync sets once the controller fences it
        (`broker.session.timeout.ms`)."""
        node = self._recorded_state().node(node_id)
        if not self._node_running(node) or node.pid is None:
            raise BrokerError(f"node {node_id} of the cluster in {self.directory} is not running")
        if not sigkill(node.pid):
            raise BrokerError(f"node {node_id} (pid {node.pid}) did not exit after SIGKILL")
        self._reap(node_id)
        self._set_pid(node_id, None)

    def stop_node(self, node_id: int, timeout_s: float = 60.0) -> bool:
        """Stop node `node_id` gracefully (SIGTERM: controlled shutdown, leaderships handed over),
        SIGKILL after `timeout_s`; True if it was running."""
        return self._stop_nodes([node_id], timeout_s)

    def start_node(self, node_id: int) -> ClusterState:
        """Start node `node_id` again (after `kill` or `stop_node`) and wait until it is a broker
        again, listed by itself and by the cluster."""
        state = self._prepare()
        node = state.node(node_id)
        if node.pid is not None:
            raise BrokerError(f"node {node_id} of the cluster in {self.directory} is already running")
        if first_taken((node.port, node.controller_port)) is not None:
            raise BrokerError(f"a port of node {node_id} ({node.port} or {node.controller_port}) is taken")
        return self._bring_up(self._jvm(), state, [node])

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop every running node (SIGTERM, then SIGKILL after `timeout_s`); True if any ran.
        The data stays for the next start."""
        state = self.read_state()
        if state is None:
            return False
        return self._stop_nodes([n.node_id for n in state.nodes], timeout_s)

    def _stop_nodes(self, node_ids: Sequence[int], timeout_s: float) -> bool:
        state = self.read_state()
        if state is None:
            return False
        targets = [state.node(i) for i in node_ids]
        running = [n for n in targets if self._node_running(n)]
        others_running = len([n for n in state.nodes if n not in targets and self._node_running(n)])
        majority = len(state.nodes) // 2 + 1
        # All at once: each node's controlled shutdown needs the controller quorum, which goes
        # away if the nodes are stopped one after another.
        pidfds: dict[int, NodeState] = {}
        for node in running:
            assert node.pid is not None
            with contextlib.suppress(ProcessLookupError):
                pidfds[os.pidfd_open(node.pid)] = node
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        quorum_lost_at: float | None = None
        try:
            while pidfds:
                now = time.monotonic()
                limit = deadline
                if quorum_lost_at is not None:
                    # Fewer than a majority of nodes are left: the quorum cannot come back, and a
                    # node still waiting on it to finish its shutdown would wait until SIGKILL.
                    limit = min(deadline, quorum_lost_at + QUORUMLESS_SHUTDOWN_S)
                readable, _, _ = select.select(list(pidfds), [], [], max(0.0, limit - now))
                if not readable:
                    for node in pidfds.values():
                        assert node.pid is not None
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(node.pid, signal.SIGKILL)
                        wait_for_exit(node.pid, 10)
                    readable = list(pidfds)
                for fd in readable:
                    node = pidfds.pop(fd)
                    os.close(fd)
                    assert node.pid is not None
                    wait_for_exit(node.pid, 10)  # reaps it when it is our child
                    self._reap(node.node_id)
                if quorum_lost_at is None and len(pidfds) + others_running < majority:
                    quorum_lost_at = time.monotonic()
        finally:
            for fd in pidfds:
                os.close(fd)
        for node in targets:
            if node.pid is not None:
                self._set_pid(node.node_id, None)
        # Nodes this object started that were stopped by someone else: reap them too.
        for node_id, _, _ in self._exited():
            self._reap(node_id)
        return bool(running)


def is_cluster_dir(directory: Path) -> bool:
    """True when `directory` holds a cluster (`cluster.json`) rather than a single broker."""
    return (directory / STATE_FILE).is_file()


def loopback_ports(bootstrap_servers: str, brokers: int) -> list[int]:
    """The ports of `bootstrap_servers` (`127.0.0.1:P1,127.0.0.1:P2,...`), one per broker of a
    local cluster; BrokerError when they are not `brokers` loopback addresses."""
    ports = []
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        if host not in (HOST, "localhost") or not port.isdigit():
            raise BrokerError(
                f"{address!r} is not a {HOST}:PORT address; a local cluster listens on {HOST} only"
            )
        ports.append(int(port))
    if len(ports) != brokers or len(set(ports)) != brokers:
        raise BrokerError(f"{bootstrap_servers!r} must name {brokers} different ports, one per broker")
    return ports
