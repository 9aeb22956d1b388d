"""Resolve the project's JVM artifacts with Maven, once, into a git-ignored folder.

Two sets, each on a classpath of its own:

* `spark`: the Kafka source/sink and Delta Lake for Spark, with their runtime dependencies, minus
  every artifact that pyspark already ships (Spark, Scala, Hadoop, Jackson, log4j, ...), so the
  pyspark copies are the only ones on the classpath. These go on `spark.jars` / `--jars`.
* `kafka`: the Apache Kafka broker with its dependencies and logging, used only to run the local
  broker and never mixed with Spark's classpath (it brings its own Scala and kafka-clients).
* `registry`: Apicurio Registry, the local schema registry: one tar.gz (a Quarkus fast-jar), unpacked
  in place and run on a JDK 21+ of its own (`pipelines.registry.local`).

Nothing is downloaded when a Spark session starts: Ivy (`spark.jars.packages`) is never used.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines import versions
from pipelines.errors import SetupError
from pipelines.paths import JVM_MANIFEST_DIR

MANIFESTS: dict[str, str] = {
    "spark": "spark-connectors.pom.xml",
    "kafka": "kafka-broker.pom.xml",
    "registry": "apicurio-registry.pom.xml",
}
REGISTRY_LAUNCHER = "quarkus-run.jar"
"""The file that starts the unpacked registry (`java -jar`)."""
STAMP = "resolved.json"
_DOTTED_VERSION = re.compile(r"\d+\.\d+")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    path: Path

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


def pyspark_jar_names() -> set[str]:
    """Artifact ids of the jars shipped inside the installed pyspark (`pyspark/jars`)."""
    import pyspark

    jars_dir = Path(pyspark.__file__).parent / "jars"
    return {_artifact_id_of(p.name) for p in jars_dir.glob("*.jar")}


def _artifact_id_of(file_name: str) -> str:
    """`kafka-clients-3.9.2.jar` -> `kafka-clients`: the name before the version, which is the
    first dash-separated part shaped like `N.N...` (so `spark-sql-kafka-0-10_2.13-4.2.0.jar`
    keeps its `-0-10_2.13`); a dotless version (`foo-14.jar`) is the fallback."""
    parts = file_name.removesuffix(".jar").split("-")
    for looks_like_version in (_DOTTED_VERSION.match, _DIGITS.fullmatch):
        for i in range(1, len(parts)):
            if looks_like_version(parts[i]):
                return "-".join(parts[:i])
    return "-".join(parts)


def _manifest_fingerprint(name: str) -> dict[str, str]:
    text = (JVM_MANIFEST_DIR / MANIFESTS[name]).read_text()
    # Only the versions the manifest uses: a new registry version does not re-resolve Spark's jars.
    used = {k: v for k, v in versions.MAVEN_PROPERTIES.items() if "${" + k + "}" in text}
    return {"manifest": text, **used}


def is_resolved(jars_dir: Path, name: str) -> bool:
    """True when `jars_dir/name` holds the jars of the current manifest and versions."""
    stamp = jars_dir / name / STAMP
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    if recorded.get("fingerprint") != _manifest_fingerprint(name):
        return False
    return all((jars_dir / name / f).is_file() for f in recorded.get("files", []))


def resolve(
    jars_dir: Path,
    name: str,
    *,
    force: bool = False,
    mvn: str = "mvn",
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Resolve manifest `name` ("spark" or "kafka") with Maven into `jars_dir/name`.

    Idempotent and quick: when the folder already matches the manifest and versions it returns
    at once. Raises SetupError with Maven's own error when an artifact cannot be resolved.
    """
    target = jars_dir / name
    if not force and is_resolved(jars_dir, name):
        return jar_paths(jars_dir, name)
    mvn_path = shutil.which(mvn)
    if mvn_path is None:
        raise SetupError(
            "Maven (`mvn`) is not on PATH; it resolves the Kafka and Delta jars once. "
            "Install it (Debian: apt-get install maven) and run `make setup` again."
        )
    log(f"resolving {name} jars with Maven from conf/jvm/{MANIFESTS[name]} ...")
    with tempfile.TemporaryDirectory(prefix=f"pipelines-mvn-{name}-") as tmp:
        listing = Path(tmp) / "deps.txt"
        copied = Path(tmp) / "jars"
        props = [f"-D{k}={v}" for k, v in versions.MAVEN_PROPERTIES.items()]
        cmd = [
            mvn_path,
            "-B",
            "-q",
            "-f",
            str(JVM_MANIFEST_DIR / MANIFESTS[name]),
            *props,
            "dependency:copy-dependencies",
            "dependency:list",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={copied}",
            f"-DoutputFile={listing}",
            "-DoutputAbsoluteArtifactFilename=true",
            "-DappendOutput=false",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stdout.splitlines() if "ERROR" in ln][:6]
            raise SetupError(
                f"Maven could not resolve the {name} jars (exit {proc.returncode}):\n"
                + "\n".join(errors or proc.stdout.splitlines()[-6:] or proc.stderr.splitlines()[-6:])
                + "\nCheck that Maven Central is reachable and the versions in pipelines/versions.py exist."
            )
        artifacts = _parse_listing(listing.read_text())
        skip = pyspark_jar_names() if name == "spark" else set()
        kept = [a for a in artifacts if a.artifact not in skip]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        files = []
        for a in kept:
            if a.path.name.endswith(".tar.gz"):
                files.append(_unpack(a, target))
            else:
                shutil.copy2(a.path, target / a.path.name)
                files.append(a.path.name)
        stamp = {
            "fingerprint": _manifest_fingerprint(name),
            "files": files,
            "artifacts": [a.coordinates for a in kept],
            "left_out_shipped_by_pyspark": sorted(a.coordinates for a in artifacts if a.artifact in skip),
        }
        (target / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    log(f"{name}: {len(kept)} jars in {target}")
    return jar_paths(jars_dir, name)


def _unpack(artifact: Artifact, target: Path) -> str:
    """Unpack a distribution archive (the registry's tar.gz) into `target/<artifact>-<version>/`;
    returns the launcher's path relative to `target` (what the stamp records)."""
    folder = target / f"{artifact.artifact}-{artifact.version}"
    with tarfile.open(artifact.path) as archive:
        archive.extractall(folder, filter="data")
    launchers = sorted(folder.rglob(REGISTRY_LAUNCHER))
    if not launchers:
        raise SetupError(f"{artifact.path.name} holds no {REGISTRY_LAUNCHER}: not the Quarkus distribution")
    return launchers[0].relative_to(target).as_posix()


def _parse_listing(text: str) -> list[Artifact]:
    """Parse `mvn dependency:list` output lines `group:artifact:jar:version:scope:/abs/path`, and
    archives with a classifier, `group:artifact:tar.gz:classifier:version:scope:/abs/path`."""
    artifacts = []
    for raw in text.splitlines():
        line = raw.strip().split(" -- ")[0]
        parts = line.split(":")
        if len(parts) >= 7 and parts[2] == "tar.gz":
            group, artifact, _type, _classifier, version, _scope = parts[:6]
            artifacts.append(Artifact(group, artifact, version, Path(":".join(parts[6:]))))
            continue
        if len(parts) < 6 or parts[2] != "jar":
            continue
        group, artifact, _type, version, _scope = parts[:5]
        path = Path(":".join(parts[5:]))
        artifacts.append(Artifact(group, artifact, version, path))
    return artifacts


def jar_paths(jars_dir: Path, name: str) -> list[Path]:
    """The resolved jars of set `name` as absolute paths, sorted; SetupError when missing."""
    target = jars_dir.resolve() / name
    if not is_resolved(jars_dir, name):
        raise SetupError(
            f"The {name} jars are not resolved (or are out of date) in {target}. "
            "Run `make setup` (or `pipelines jars --resolve`)."
        )
    stamp = json.loads((target / STAMP).read_text())
    return sorted(target / f for f in stamp["files"])


def spark_jars(jars_dir: Path) -> list[Path]:
    """Jars for `spark.jars` / `spark-submit --jars`: Kafka source and sink, Delta Lake."""
    return jar_paths(jars_dir, "spark")


def registry_launcher(jars_dir: Path) -> Path:
    """The unpacked registry's `quarkus-run.jar`; SetupError when it is not resolved."""
    return jar_paths(jars_dir, "registry")[0]


def broker_classpath(jars_dir: Path) -> str:
    """The broker's own classpath (`java -cp`), separate from Spark's."""
    return ":".join(str(p) for p in jar_paths(jars_dir, "kafka"))
