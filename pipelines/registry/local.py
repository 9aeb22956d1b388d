"""A real Apicurio Registry run by the project: the local schema registry.

The registry is a child JVM started from the Quarkus distribution that `make setup` unpacked into
`.jars/registry`, with its storage, pid and logs in one folder:

    DIR/registry.json   URL, ports and pid of the running registry
    DIR/data/           its H2 database files (the schemas, their ids and compatibility rules)
    DIR/logs/stdout.log what the JVM printed (Quarkus logs to the console)

**Storage: H2 on disk** (`jdbc:h2:file:DIR/data/registry`), not in memory (the default, which
forgets every schema at a restart, while the topics still hold records that name their ids) and not
`kafkasql` on our broker: a registry on disk starts and stops on its own, whatever broker (or none)
is running, keeps its ids across restarts, and `make clean` removes it with the rest of
`.pipelines/`. A production registry would keep its storage in PostgreSQL or in Kafka (`kafkasql`),
replicated; this one serves one machine.

It needs Java 21 or newer (Quarkus 3): `find_registry_java` picks a JDK 21+ (Temurin 25 on these
machines) for the registry alone; Spark and the broker keep Java 17. It listens on 127.0.0.1 only,
its HTTP API and its management interface (health) both, and keeps its ports across restarts of the
same folder. Ready means its management interface answers `/health/ready` with 200.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import versions
from pipelines.local import jvm
from pipelines.local.process import HOST, Launcher, PortPicker, last_lines, poll_until, runs, terminate
from pipelines.registry import RegistryError

if TYPE_CHECKING:
    from pipelines.config import Settings

CCOMPAT_PATH = "/apis/ccompat/v7"
"""Where Apicurio serves the Confluent Schema Registry API (what confluent-kafka's client speaks)."""
MIN_JAVA = 21
JVM_ROOTS = (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/usr/local/lib/jvm"))
"""Where JDKs are installed on Debian and in the usual images."""
_MARK = "-Dpipelines.registry.dir="
"""On the registry's command line, with its folder: how `running` knows the pid is this registry."""


@dataclass(frozen=True)
class RegistryState:
    """What `DIR/registry.json` records of a registry."""

    url: str
    """Its base URL, `http://127.0.0.1:PORT`; the Confluent-compatible API is under CCOMPAT_PATH."""
    port: int
    management_port: int
    pid: int | None = None

    @property
    def ccompat_url(self) -> str:
        return self.url + CCOMPAT_PATH


def java_major(java_home: Path) -> int | None:
    """The major version of the JDK in `java_home` from its `release` file (None if unreadable)."""
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(found.group(1)) if found else None


def find_registry_java(java_home: str | None = None, roots: tuple[Path, ...] = JVM_ROOTS) -> str:
    """The `java` of a JDK 21+ for the registry: `java_home` when given (the environment's
    PIPELINES_REGISTRY_JAVA_HOME), else the newest JDK under `roots`. RegistryError saying what to
    install when there is none."""
    if java_home:
        home = Path(java_home)
        major = java_major(home)
        if major is None or major < MIN_JAVA or not (home / "bin" / "java").is_file():
            raise RegistryError(
                f"PIPELINES_REGISTRY_JAVA_HOME={java_home} is not a Java {MIN_JAVA}+ installation "
                f"(found Java {major}); point it at a JDK {MIN_JAVA} or newer"
            )
        return str(home / "bin" / "java")
    found = [
        (major, home)
        for root in roots
        if root.is_dir()
        for home in sorted(root.iterdir())
        if (major := java_major(home)) is not None and major >= MIN_JAVA and (home / "bin" / "java").is_file()
    ]
    if not found:
        raise RegistryError(
            f"Apicurio Registry {versions.APICURIO_REGISTRY} needs Java {MIN_JAVA} or newer and none was "
            f"found under {', '.join(map(str, roots))}: install one (Debian: apt-get install "
            "openjdk-21-jre-headless, or a Temurin 25 JDK) or set PIPELINES_REGISTRY_JAVA_HOME"
        )
    return str(max(found)[1] / "bin" / "java")


def registry_command(
    java: str, launcher: Path, directory: Path, port: int, management_port: int, heap: str
) -> list[str]:
    """The registry's command line: loopback only, H2 on disk in `directory/data`."""
    data = directory / "data" / "registry"
    return [
        java,
        f"-Xmx{heap}",
        "-Djava.awt.headless=true",
        f"{_MARK}{directory}",
        f"-Dquarkus.http.host={HOST}",
        f"-Dquarkus.http.port={port}",
        # The management interface (health, metrics) binds 0.0.0.0:9000 unless told otherwise.
        f"-Dquarkus.management.host={HOST}",
        f"-Dquarkus.management.port={management_port}",
        f"-Dapicurio.datasource.url=jdbc:h2:file:{data}",
        # One user on one machine: a pool of 20 connections at start is 20 idle H2 sessions.
        "-Dapicurio.datasource.jdbc.initial-size=2",
        "-Dapicurio.datasource.jdbc.min-size=2",
        "-Dapicurio.datasource.jdbc.max-size=20",
        "-jar",
        str(launcher),
    ]


def ready(state: RegistryState, timeout_s: float) -> bool:
    """True when the registry's management interface answers `/health/ready` with 200."""
    url = f"http://{HOST}:{state.management_port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class LocalRegistry(Launcher[str, RegistryState]):
    """One local Apicurio Registry in `directory`. Starting a running one reports it instead."""

    STATE_FILE = "registry.json"
    KIND = "schema registry"
    ERROR = RegistryError

    def __init__(
        self,
        directory: Path,
        jars_dir: Path,
        *,
        java_home: str | None = None,
        heap: str = "384m",
        start_timeout_s: float = 180.0,
    ) -> None:
        super().__init__(directory)
        self.jars_dir = jars_dir
        self.java_home = java_home
        self.heap = heap
        self.start_timeout_s = start_timeout_s

    @property
    def log_file(self) -> Path:
        return self.directory / "logs" / "stdout.log"

    def _parse_state(self, text: str) -> RegistryState:
        return RegistryState(**json.loads(text))

    def _unreadable(self, exc: Exception) -> str:
        return f"{self.state_file} is unreadable ({exc}); remove it to let the registry pick new ports"

    def _write_state(self, state: RegistryState) -> RegistryState:
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        return state

    def running(self) -> RegistryState | None:
        """The state of the registry running from this folder, or None."""
        state = self.read_state()
        if state is None or not runs(state.pid, f"{_MARK}{self.directory}", "quarkus-run.jar"):
            return None
        return state

    @property
    def url(self) -> str:
        """The base URL of the registry (`http://127.0.0.1:PORT`)."""
        return self._recorded_state().url

    @property
    def ccompat_url(self) -> str:
        """The Confluent-compatible API, for confluent-kafka's SchemaRegistryClient."""
        return self._recorded_state().ccompat_url

    def start(self) -> tuple[RegistryState, bool]:
        """Start the registry and wait until it is ready; returns (state, started_now)."""
        existing = self.running()
        if existing is not None:
            if not ready(existing, 10):
                raise RegistryError(
                    f"a registry process (pid {existing.pid}) runs from {self.directory} but is not ready "
                    f"at {existing.url}; stop it with `pipelines registry stop`"
                )
            return existing, False
        java = find_registry_java(self.java_home)
        launcher = jvm.registry_launcher(self.jars_dir)
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        previous = self.read_state()
        if previous is None:
            pick = PortPicker()
            port, management = pick(), pick()
            state = RegistryState(f"http://{HOST}:{port}", port, management)
        else:
            state = replace(previous, pid=None)
        self._require_free(
            (state.port, state.management_port),
            f"the registry in {self.directory}",
            f"remove {self.state_file} to let the registry choose new free ports",
        )
        cmd = registry_command(java, launcher, self.directory, state.port, state.management_port, self.heap)
        proc = self._spawn("registry", cmd, self.log_file, self.directory)
        state = self._write_state(replace(state, pid=proc.pid))
        self._started_here = True

        def check_running() -> None:
            for _, _, code in self._exited():
                self._write_state(replace(state, pid=None))
                raise RegistryError(
                    f"the schema registry exited with code {code} while starting.\n"
                    + last_lines(self.log_file, 25)
                )

        def attempt() -> bool | None:
            check_running()
            return ready(state, 2.0) or None

        # A refused connection answers at once: the probe is paced (every 0.25 s at most), not slept.
        if poll_until(attempt, self.start_timeout_s) is None:
            self.stop()
            raise RegistryError(
                f"the schema registry was not ready at {state.url} within {self.start_timeout_s:.0f} s; "
                "it was stopped.\n" + last_lines(self.log_file, 25)
            )
        return state, True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the registry (SIGTERM, then SIGKILL after `timeout_s`); True if one was running."""
        state = self.running()
        if state is None or state.pid is None:
            return False
        terminate([state.pid], timeout_s)
        self._reap("registry")
        self._write_state(replace(state, pid=None))
        return True


REGISTRY_DIR = Path(".pipelines/registry")
"""The local registry's folder, relative to the project root."""
DIR_ENV = "PIPELINES_REGISTRY_DIR"
"""Another folder for the local registry (a relative one is relative to the project root)."""
JAVA_HOME_ENV = "PIPELINES_REGISTRY_JAVA_HOME"
URL_ENV = "PIPELINES_SCHEMA_REGISTRY_URL"


def local_registry(
    settings: Settings, environ: Mapping[str, str], directory: Path | None = None
) -> LocalRegistry:
    """The project's local registry: in `directory` (`--dir`), else $PIPELINES_REGISTRY_DIR, else
    `.pipelines/registry`."""
    return LocalRegistry(
        directory or settings.resolve_path(Path(environ.get(DIR_ENV) or REGISTRY_DIR)),
        settings.resolve_path(settings.paths.jars_dir),
        java_home=environ.get(JAVA_HOME_ENV),
    )


def registry_url(settings: Settings, override: str | None, environ: Mapping[str, str]) -> str:
    """The registry to talk to: `override` (`--registry-url`), else $PIPELINES_SCHEMA_REGISTRY_URL,
    else the local registry's Confluent-compatible API; RegistryError saying how to start one."""
    url = override or environ.get(URL_ENV)
    if url:
        return url
    registry = local_registry(settings, environ)
    state = registry.running()
    if state is None:
        raise RegistryError(
            f"no schema registry is running in {registry.directory}: start one with `pipelines registry "
            f"start`, or pass --registry-url URL (or set {URL_ENV})"
        )
    return state.ccompat_url
