"""The local schema registry: found Java 21+, loopback only, started and reported like the broker."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest

from pipelines.local.jvm import _parse_listing
from pipelines.registry import RegistryError
from pipelines.registry.local import LocalRegistry, find_registry_java, registry_command
from tests.helpers import pipelines


def _jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_the_newest_jdk_21_or_later_runs_the_registry(tmp_path: Path) -> None:
    _jdk(tmp_path, "java-17", "17.0.15")
    _jdk(tmp_path, "temurin-25", "25.0.3")
    _jdk(tmp_path, "java-21", "21.0.2")
    assert find_registry_java(roots=(tmp_path,)) == str(tmp_path / "temurin-25" / "bin" / "java")


def test_without_java_21_the_error_says_what_to_install(tmp_path: Path) -> None:
    _jdk(tmp_path, "java-17", "17.0.15")
    with pytest.raises(RegistryError, match=r"needs Java 21 or newer .* PIPELINES_REGISTRY_JAVA_HOME"):
        find_registry_java(roots=(tmp_path,))
    with pytest.raises(RegistryError, match=r"is not a Java 21\+ installation \(found Java 17\)"):
        find_registry_java(str(tmp_path / "java-17"))


def test_the_command_line_binds_http_and_management_to_loopback_and_stores_on_disk(tmp_path: Path) -> None:
    cmd = registry_command("java", tmp_path / "quarkus-run.jar", tmp_path, 1111, 2222, "256m")
    assert "-Dquarkus.http.host=127.0.0.1" in cmd
    assert "-Dquarkus.http.port=1111" in cmd
    assert "-Dquarkus.management.host=127.0.0.1" in cmd
    assert "-Dquarkus.management.port=2222" in cmd
    assert f"-Dapicurio.datasource.url=jdbc:h2:file:{tmp_path}/data/registry" in cmd
    assert cmd[-2:] == ["-jar", str(tmp_path / "quarkus-run.jar")]


def test_maven_listing_of_the_registry_archive() -> None:
    line = "   io.apicurio:apicurio-registry-app:tar.gz:all:3.3.3:compile:/m2/app-3.3.3-all.tar.gz"
    [artifact] = _parse_listing(line)
    assert (artifact.group, artifact.artifact, artifact.version) == (
        "io.apicurio",
        "apicurio-registry-app",
        "3.3.3",
    )
    assert artifact.path == Path("/m2/app-3.3.3-all.tar.gz")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_registry_runs_on_loopback_and_the_commands_report_it(schema_registry: LocalRegistry) -> None:
    state = schema_registry.running()
    assert state is not None
    assert state.url.startswith("http://127.0.0.1:")
    assert _listening(state.port) and _listening(state.management_port)
    # Every listening socket of the registry's process is on 127.0.0.1 (no 0.0.0.0:9000).
    inodes = set()
    for fd in Path(f"/proc/{state.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since the listing
            link = str(fd.readlink())
            if link.startswith("socket:"):
                inodes.add(link.split("[")[1].rstrip("]"))
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                listening.append(cols[1].split(":")[0])
    assert listening and all(a in ("0100007F", "0000000000000000FFFF00000100007F") for a in listening), (
        listening
    )

    status = pipelines("registry", "status", "--dir", schema_registry.directory)
    assert (status.returncode, status.stdout) == (0, state.ccompat_url + "\n")
    again = pipelines("registry", "start", "--dir", schema_registry.directory)
    assert (again.returncode, again.stdout) == (0, state.ccompat_url + "\n")
    assert (
        f"a schema registry already runs from {schema_registry.directory} (pid {state.pid})" in again.stderr
    )
    assert json.loads((schema_registry.directory / "registry.json").read_text())["pid"] == state.pid


def test_status_and_stop_without_a_registry(tmp_path: Path) -> None:
    status = pipelines("registry", "status", "--dir", tmp_path)
    assert (status.returncode, status.stdout) == (1, "")
    assert f"no schema registry is running in {tmp_path}" in status.stderr
    stop = pipelines("registry", "stop", "--dir", tmp_path)
    assert stop.returncode == 0 and f"no schema registry was running in {tmp_path}" in stop.stderr
