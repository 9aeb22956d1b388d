"""A Spark standalone cluster on 127.0.0.1: one master and its workers, run by the project.

pip's pyspark ships `bin/spark-class` but not the `sbin/start-master.sh` / `start-worker.sh`
scripts, so the daemons are started the way those scripts would: `spark-class
org.apache.spark.deploy.master.Master` and `spark-class org.apache.spark.deploy.worker.Worker`,
each a child JVM in a session of its own. One folder holds everything:

    DIR/spark.json        master URL, every daemon's ports and pid
    DIR/logs/             master.log, worker-N.log (what each daemon prints)
    DIR/work/worker-N/    each worker's work dir: the executors' stdout/stderr per application
    DIR/conf/             an empty SPARK_CONF_DIR, so no stray spark-defaults.conf applies

Every daemon binds to 127.0.0.1 only (`SPARK_LOCAL_IP`, `--host`), its RPC port and its web UI
alike; the master listens on 7077 when that port is free. Workers are small (1 core, 1 GiB each
by default) to fit a two-core machine next to the Kafka brokers. Ready means the master's status
(`/json/` on its UI port) says ALIVE with every worker alive.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.errors import PipelinesError
from pipelines.local.process import (
    HOST,
    Launcher,
    PortPicker,
    last_lines,
    poll_until,
    port_is_free,
    runs,
    sigkill,
    terminate,
    write_atomically,
)

STATE_FILE = "spark.json"
DEFAULT_MASTER_PORT = 7077
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class SparkClusterError(PipelinesError):
    """The local Spark standalone cluster could not start, answer or stop."""


def spark_class() -> Path:
    """pyspark's `bin/spark-class`, which builds and execs a Spark daemon's java command."""
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not path.is_file():
        raise SparkClusterError(f"{path} is missing; reinstall pyspark (make setup)")
    return path


@dataclass(frozen=True)
class DaemonState:
    """One daemon (the master or a worker): its RPC and web UI ports, its pid when running."""

    name: str
    port: int
    ui_port: int
    pid: int | None = None


@dataclass(frozen=True)
class SparkClusterState:
    """What `DIR/spark.json` records of the cluster."""

    master: DaemonState
    workers: tuple[DaemonState, ...]

    @property
    def master_url(self) -> str:
        """What `spark-submit --master` and `spark.master` take."""
        return f"spark://{HOST}:{self.master.port}"

    @property
    def master_ui(self) -> str:
        return f"http://{HOST}:{self.master.ui_port}"

    @property
    def daemons(self) -> tuple[DaemonState, ...]:
        return (self.master, *self.workers)

    def with_daemon(self, daemon: DaemonState) -> SparkClusterState:
        if daemon.name == self.master.name:
            return replace(self, master=daemon)
        return replace(self, workers=tuple(daemon if w.name == daemon.name else w for w in self.workers))

    def to_json(self) -> str:
        return json.dumps(
            {
                "master_url": self.master_url,
                "master_ui": self.master_ui,
                "master": asdict(self.master),
                "workers": [asdict(w) for w in self.workers],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SparkClusterState:
        doc = json.loads(text)
        return cls(DaemonState(**doc["master"]), tuple(DaemonState(**w) for w in doc["workers"]))


def master_status(ui_url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The master's status document (`/json/`: status, aliveworkers, workers, activeapps, ...),
    or None when the master does not answer within `timeout_s`."""
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=timeout_s) as response:
            doc = json.loads(response.read())
    except (OSError, ValueError):  # connection refused, timeout, a page that is not JSON yet
        return None
    return doc if isinstance(doc, dict) else None


def alive_workers(status: dict[str, Any]) -> set[str]:
    """The `host:port` of every worker the master's status document says is ALIVE."""
    return {
        f"{w.get('host')}:{w.get('port')}" for w in status.get("workers", []) if w.get("state") == "ALIVE"
    }


class SparkStandalone(Launcher[str, SparkClusterState]):
    """A Spark standalone master with `workers` workers in `directory`.

    `start()` starts the daemons that are not running and waits until the master reports every
    worker alive; `stop()` stops them all. `kill_worker(n)` SIGKILLs worker n with its executors,
    as a lost machine would, and `start_worker(n)` brings it back. The master port is
    `master_port`, else 7077 when free, else a free port; the choice is kept in `spark.json`.
    """

    STATE_FILE = STATE_FILE
    KIND = "Spark cluster"
    ERROR = SparkClusterError

    def __init__(
        self,
        directory: Path,
        *,
        workers: int = 2,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        master_port: int | None = None,
        daemon_memory: str = "256m",
        start_timeout_s: float = 90.0,
        python: str = sys.executable,
        java_home: str | None = None,
    ) -> None:
        if workers < 1:
            raise SparkClusterError("a Spark cluster needs at least one worker")
        super().__init__(directory)
        self.workers = workers
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.master_port = master_port
        self.daemon_memory = daemon_memory
        self.start_timeout_s = start_timeout_s
        self.python = python
        self.java_home = java_home

    # -- paths and state --------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def work_dir(self) -> Path:
        return self.directory / "work"

    def _parse_state(self, text: str) -> SparkClusterState:
        return SparkClusterState.from_json(text)

    def _unreadable(self, exc: Exception) -> str:
        return f"{self.state_file} is unreadable ({exc!r}); stop the cluster's daemons and remove it"

    def _write_state(self, state: SparkClusterState) -> None:
        write_atomically(self.state_file, state.to_json() + "\n")

    def _set_pid(self, name: str, pid: int | None) -> SparkClusterState:
        state = self._recorded_state()
        daemon = next(d for d in state.daemons if d.name == name)
        state = state.with_daemon(replace(daemon, pid=pid))
        self._write_state(state)
        return state

    def _daemon_running(self, daemon: DaemonState) -> bool:
        main_class = MASTER_CLASS if daemon.name == "master" else WORKER_CLASS
        return runs(daemon.pid, main_class, f"--port {daemon.port}")

    def running(self) -> SparkClusterState | None:
        """The state when the master and every worker run, else None."""
        state = self.read_state()
        if state is None or not all(self._daemon_running(d) for d in state.daemons):
            return None
        return state

    def status(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The master's status document, or None when no master answers."""
        state = self.read_state()
        return None if state is None else master_status(state.master_ui, timeout_s)

    @property
    def master_url(self) -> str:
        return self._recorded_state().master_url

    # -- lifecycle --------------------------------------------------------------------------
    def _new_state(self) -> SparkClusterState:
        pick = PortPicker()
        if self.master_port is not None:
            master_port = pick.reserve(self.master_port)
        elif port_is_free(DEFAULT_MASTER_PORT):
            master_port = pick.reserve(DEFAULT_MASTER_PORT)
        else:
            master_port = pick()
        master = DaemonState("master", master_port, pick())
        workers = tuple(DaemonState(f"worker-{i}", pick(), pick()) for i in range(1, self.workers + 1))
        return SparkClusterState(master, workers)

    def _prepare(self) -> SparkClusterState:
        previous = self.read_state()
        if previous is None:
            state = self._new_state()
        else:
            if len(previous.workers) != self.workers:
                raise SparkClusterError(
                    f"the Spark cluster in {self.directory} has {len(previous.workers)} workers, not "
                    f"{self.workers}; stop it and remove {self.state_file} to change that"
                )
            if self.master_port is not None and previous.master.port != self.master_port:
                raise SparkClusterError(
                    f"the Spark cluster in {self.directory} was set up with its master on port "
                    f"{previous.master.port}, not {self.master_port}; remove {self.state_file} to move it"
                )
            state = previous
            for d in previous.daemons:
                if not self._daemon_running(d):
                    state = state.with_daemon(replace(d, pid=None))
        for folder in (self.log_dir, self.work_dir, self.directory / "conf"):
            folder.mkdir(parents=True, exist_ok=True)
        self._write_state(state)
        return state

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                # Every socket of every daemon (RPC, block manager, web UI) on loopback only.
                "SPARK_LOCAL_IP": HOST,
                "SPARK_LOCAL_HOSTNAME": HOST,
                "SPARK_DAEMON_MEMORY": self.daemon_memory,
                "SPARK_CONF_DIR": str(self.directory / "conf"),
                # Jobs are submitted in client mode (`spark-submit --master spark://...`); the
                # master's REST submission server (6066) would only be one more open port.
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                # Executors run Python workers with the project's interpreter and packages.
                "PYSPARK_PYTHON": self.python,
            }
        )
        if self.java_home:
            env["JAVA_HOME"] = self.java_home
        return env

    def _launch(self, daemon: DaemonState, args: list[str]) -> SparkClusterState:
        self._require_free(
            (daemon.port, daemon.ui_port),
            f"the Spark {daemon.name} in {self.directory}",
            f"remove {self.state_file} to let the cluster choose new ports",
        )
        # spark-class execs the JVM, so the pid is the daemon's.
        cmd = [str(spark_class()), *args]
        proc = self._spawn(daemon.name, cmd, self.log_dir / f"{daemon.name}.log", self.directory, self._env())
        return self._set_pid(daemon.name, proc.pid)

    def _launch_master(self, state: SparkClusterState) -> SparkClusterState:
        m = state.master
        args = [MASTER_CLASS, "--host", HOST, "--port", str(m.port), "--webui-port", str(m.ui_port)]
        return self._launch(m, args)

    def _launch_worker(self, state: SparkClusterState, worker: DaemonState) -> SparkClusterState:
        work = self.work_dir / worker.name
        work.mkdir(parents=True, exist_ok=True)
        args = [
            WORKER_CLASS,
            "--host",
            HOST,
            "--port",
            str(worker.port),
            "--webui-port",
            str(worker.ui_port),
            "--cores",
            str(self.worker_cores),
            "--memory",
            self.worker_memory,
            "--work-dir",
            str(work),
            state.master_url,
        ]
        return self._launch(worker, args)

    def start(self) -> tuple[SparkClusterState, bool]:
        """Start the master and the workers that are not running, and wait until the master
        reports ALIVE with every worker alive; returns (state, started_now)."""
        state = self._prepare()
        if all(d.pid is not None for d in state.daemons):
            self.wait_ready(state)
            return state, False
        launched = [d.name for d in state.daemons if d.pid is None]
        try:
            if state.master.pid is None:
                state = self._launch_master(state)
            for worker in state.workers:
                if worker.pid is None:
                    state = self._launch_worker(state, worker)
            self.wait_ready(state)
        except BaseException:
            # Never leave half a cluster behind.
            self._stop_daemons(launched, timeout_s=15)
            raise
        self._started_here = True
        return state, True

    def wait_ready(self, state: SparkClusterState | None = None) -> dict[str, Any]:
        """Wait until the master answers ALIVE with every worker ALIVE; its status document.
        SparkClusterError with the logs' last lines when a daemon exits or the deadline passes."""
        current = state or self.read_state()
        assert current is not None

        def all_alive() -> dict[str, Any] | None:
            for name, _, code in self._exited():
                self._set_pid(name, None)
                raise SparkClusterError(
                    f"the Spark {name} in {self.directory} exited with code {code} while starting.\n"
                    + self.log_tail(name)
                )
            doc = master_status(current.master_ui, timeout_s=2.0)
            if doc is not None and doc.get("status") == "ALIVE":
                alive = alive_workers(doc)
                if all(f"{HOST}:{w.port}" in alive for w in current.workers):
                    return doc
            return None

        # Paced status requests; the master's answer decides when we are done.
        doc = poll_until(all_alive, self.start_timeout_s)
        if doc is None:
            raise SparkClusterError(
                f"the Spark master at {current.master_url} did not report all {len(current.workers)} "
                f"workers alive within {self.start_timeout_s:.0f} s.\n"
                + "\n".join(self.log_tail(d.name) for d in current.daemons)
            )
        return doc

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a daemon printed (`master`, `worker-1`, ...)."""
        path = self.log_dir / f"{name}.log"
        if not path.is_file():
            return f"(no log at {path})"
        return last_lines(path, lines)

    def _worker(self, number: int) -> DaemonState:
        state = self._recorded_state()
        for w in state.workers:
            if w.name == f"worker-{number}":
                return w
        raise SparkClusterError(f"the Spark cluster has no worker {number} (it has {len(state.workers)})")

    def kill_worker(self, number: int) -> None:
        """SIGKILL worker `number` and the executors it launched (its process group), as when a
        machine is lost, and wait until the worker is gone. The master notices by heartbeat and
        the driver reschedules the lost executors' tasks on the other workers."""
        worker = self._worker(number)
        if worker.pid is None or not self._daemon_running(worker):
            raise SparkClusterError(f"Spark worker {number} is not running")
        # The worker leads its own session (start_new_session), so its group is its pid.
        if not sigkill(worker.pid, group=True):
            raise SparkClusterError(f"Spark worker {number} (pid {worker.pid}) did not exit after SIGKILL")
        self._reap(worker.name)
        self._set_pid(worker.name, None)

    def start_worker(self, number: int) -> SparkClusterState:
        """Start worker `number` again and wait until the master reports it alive."""
        worker = self._worker(number)
        state = self._prepare()
        if self._daemon_running(worker):
            raise SparkClusterError(f"Spark worker {number} is already running")
        state = self._launch_worker(state, worker)
        self.wait_ready(state)
        return state

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the workers (which stop their executors), then the master: SIGTERM, SIGKILL after
        `timeout_s`. True if any daemon was running."""
        state = self.read_state()
        if state is None:
            return False
        return self._stop_daemons([d.name for d in state.daemons], timeout_s)

    def _stop_daemons(self, names: list[str], timeout_s: float) -> bool:
        state = self.read_state()
        if state is None:
            return False
        stopped = False
        # Workers first: a worker that loses its master keeps trying to reconnect to it.
        for group in (state.workers, (state.master,)):
            running = [d for d in group if d.name in names and self._daemon_running(d)]
            terminate([d.pid for d in running if d.pid is not None], timeout_s, kill_group=True)
            for d in running:
                self._reap(d.name)
                stopped = True
        for d in state.daemons:
            if d.name in names and d.pid is not None:
                self._set_pid(d.name, None)
        return stopped
