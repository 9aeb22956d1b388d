"""The bench's environment: the machine description, a fresh broker in a temporary folder, topics,
Kafka's own tools, and child processes that never outlive the run."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines import versions
from pipelines.config import Settings, load_settings
from pipelines.kafka.admin import create_topic, end_offsets
from pipelines.local.broker import LocalBroker, find_java

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
QUIX_VENV = ROOT / ".venv-quix"
QUIX_PYTHON = str(QUIX_VENV / "bin" / "python")
"""Quix Streams runs from a virtualenv of its own (`make bench` creates it from
bench/requirements-quix.txt): it pins confluent-kafka below 2.13 and would downgrade the project's."""
PIPELINES = str(Path(sys.executable).with_name("pipelines"))


def settings() -> Settings:
    """The committed local profile, without environment overrides (as the tests use it)."""
    return load_settings("local", {})


def jars_dir() -> Path:
    s = settings()
    return s.resolve_path(s.paths.jars_dir)


def _meminfo_gib() -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _quix_version() -> str | None:
    try:
        out = subprocess.run(
            [QUIX_PYTHON, "-c", "from importlib.metadata import version; print(version('quixstreams'))"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _java_version() -> str:
    try:
        out = subprocess.run([find_java(), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, memory, load, and every version that matters."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": _java_version(),
        "spark": versions.SPARK,
        "delta": versions.DELTA_JVM,
        "kafka_broker": versions.KAFKA_BROKER,
        "confluent_kafka": _version("confluent-kafka"),
        "librdkafka": _librdkafka(),
        "quixstreams": _quix_version(),
        "orjson": _version("orjson"),
    }


def _librdkafka() -> str | None:
    try:
        import confluent_kafka

        return str(confluent_kafka.libversion()[0])
    except Exception:
        return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_topic(bootstrap: str, prefix: str, partitions: int, **config: str) -> str:
    name = unique(prefix)
    create_topic(bootstrap, name, partitions=partitions, config=config)
    return name


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in a topic written from offset 0 (the sum of its end offsets)."""
    return sum(end_offsets(bootstrap, topic).values())


@contextlib.contextmanager
def bench_broker(directory: Path) -> Iterator[LocalBroker]:
    """A fresh single-node broker in `directory`, stopped at the end, also on Ctrl-C or SIGTERM."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with LocalBroker(directory, jars_dir(), heap="1g") as broker:
            yield broker
    finally:
        signal.signal(signal.SIGTERM, previous)


def kafka_tool(
    main_class: str, args: Sequence[str], timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's own tools (kafka-tools jar) on the broker's classpath."""
    classpath = str(jars_dir() / "kafka" / "*")
    quiet = ROOT / "conf" / "broker-log4j2.yaml"
    # That log4j2 file writes to ${kafka.logs.dir}: unset, log4j would create a folder named so.
    log_dir = Path(tempfile.gettempdir()) / f"pipelines-bench-tool-logs-{os.getpid()}"
    cmd = [
        find_java(),
        "-Xmx512m",
        f"-Dlog4j2.configurationFile=file:{quiet}",
        f"-Dkafka.logs.dir={log_dir}",
        "-cp",
        classpath,
        main_class,
        *args,
    ]
    with child(cmd) as proc:
        out, err = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{main_class} failed ({proc.returncode}): {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def child(cmd: Sequence[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """A child process in its own process group, killed (group and all) if still running at the end."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=kwargs.pop("stderr", subprocess.PIPE),
        text=True,
        start_new_session=True,
        cwd=kwargs.pop("cwd", ROOT),
        # One-line summaries stay one line (rich wraps at 80 columns when stderr is not a terminal).
        env=kwargs.pop("env", {**os.environ, "COLUMNS": "400"}),
        **kwargs,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for(condition: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy (returned), or raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


_NUMBER = re.compile(r"[\d,.]+")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def export_tree(commit: str, directory: Path) -> Path:
    """The `pipelines` package as of `commit` (read from git, the work tree untouched), for running
    the code before an optimisation side by side with the code after it."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", commit, "pipelines", "conf"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def new_topic_named(bootstrap: str, name: str, partitions: int, **config: str) -> str:
    create_topic(bootstrap, name, partitions=partitions, config=config)
    return name


def preload_producer(bootstrap: str) -> Any:
    """The producer of a workload's untimed preload: idempotent, `acks=all`, Java's partitioner,
    large lz4 batches and a deep queue (the preload is not what is measured)."""
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
        }
    )


def produce_preload(
    producer: Any, topic: str, events: Any, on_delivery: Any, what: str, count: int, log: Any
) -> None:
    """Produce every generated event to `topic` (waiting when the queue is full), reporting every
    200,000, then flush: the untimed preload of a bench workload."""
    for n, event in enumerate(events):
        while True:
            try:
                producer.produce(topic, event.value, event.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 1000 == 0:
            producer.poll(0)
            if n % 200_000 == 0 and n:
                log(f"preload: {n:,} of {count:,} {what} sent")
    producer.flush(120)
