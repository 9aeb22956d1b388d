"""Typed, frozen settings: a profile file (`conf/<profile>.yaml`) plus environment overrides.

Only the entry points (the CLI, the jobs, the test fixtures) call `load_settings`, handing it the
environment explicitly; everything below them receives plain values. Environment overrides use
`PIPELINES_<SECTION>__<NAME>` (double underscore between levels), and the most common one has a
short form: `PIPELINES_BOOTSTRAP_SERVERS`.

Secrets come from the environment only: a profile file that sets one (`kafka.sasl_password`) is
refused, and secrets are `SecretStr`s, which print as `**********`. Client security is
`PIPELINES_KAFKA__SECURITY_PROTOCOL`, `PIPELINES_KAFKA__SASL_MECHANISM`,
`PIPELINES_KAFKA__SASL_USERNAME`, `PIPELINES_KAFKA__SASL_PASSWORD` and
`PIPELINES_KAFKA__SSL_CA_LOCATION` (see `pipelines.security`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pipelines.contracts import SALES_TOPIC
from pipelines.errors import PipelinesError
from pipelines.paths import CONF_DIR, PROJECT_ROOT

ENV_PREFIX = "PIPELINES_"
LOCAL_BROKER = "local"
SECRET_FIELDS = (("kafka", "sasl_password"),)
"""(section, name) of every setting that is a secret: environment only."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    bootstrap_servers: str = LOCAL_BROKER
    """`host:port[,host:port]`, or "local" for the broker `pipelines broker start` runs."""
    producer: dict[str, str | int | bool] = Field(default_factory=dict)
    """librdkafka producer properties added to the project's defaults."""
    replication_factor: int | None = Field(default=None, ge=1)
    """Copies of each partition of the topics jobs create on demand (dead-letter topics, and sink
    topics with `--create-topics`); unset: the cluster's `default.replication.factor`."""
    security_protocol: str = "PLAINTEXT"
    """PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    """Only from the environment (PIPELINES_KAFKA__SASL_PASSWORD); a profile file may not set it."""
    ssl_ca_location: Path | None = None
    """PEM file of the CA that signed the brokers' certificates (relative: to the project root)."""


class BrokerSettings(_Frozen):
    dir: Path = Path(".pipelines/broker")
    heap: str = "512m"
    start_timeout_s: float = 90.0
    secure: bool = False
    """Start the local broker with TLS, SCRAM-SHA-512 and ACLs (`pipelines broker start --secure`)."""


_SOURCE_CONSUMER: dict[str, str | int | bool] = {"fetch.max.wait.ms": 10}


class SparkSettings(_Frozen):
    master: str = "local[*]"
    shuffle_partitions: int = 4
    ui_enabled: bool = False
    log4j_config: Path | None = Path("conf/log4j2.properties")
    max_offsets_per_trigger: int | None = 100_000
    kafka_consumer: dict[str, str | int | bool] = Field(default_factory=lambda: _SOURCE_CONSUMER.copy())
    """Kafka consumer properties of Spark's kafka source in every job (each becomes the source
    option `kafka.<name>`). A micro-batch task reads a range of offsets already on the broker, so
    a fetch that finds nothing new should come back at once: with the consumer's default
    `fetch.max.wait.ms` (500 ms) the first task after a pause in the input waits up to half a
    second for a fetch its consumer sent ahead (bench: 500 ms tasks whenever input started or
    stopped, gone at 10 ms)."""
    interpreted_projections: bool = True
    """The orders -> shipments job's micro-batch query evaluates its projections interpreted instead
    of compiling them (`pipelines.spark.INTERPRETED`). Spark generates the Java code of a query's
    plan again for every micro-batch: for the order parser that was ~90 ms of a 190 ms batch of a
    few hundred orders on two cores, while interpreting reads a backlog as fast (bench). False:
    Spark's code generation, as in every other job."""


class ProcessorSettings(_Frozen):
    """The Python processor's (`pipelines process orders-to-shipments`) defaults; its options win."""

    commit_interval_s: float = Field(default=0.1, gt=0)
    """At-least-once: how often the acknowledged offsets are committed; exactly-once: how long a
    transaction stays open; at-most-once: how long a batch collects before its commit."""
    max_batch: int = Field(default=5000, ge=1)
    """Records per commit or transaction, at most."""
    producer: dict[str, str | int | bool] = Field(default_factory=dict)
    """librdkafka producer properties for the processor, over `kafka.producer`."""


class PathSettings(_Frozen):
    jars_dir: Path = Path(".jars")
    data_dir: Path = Path(".pipelines/data")
    checkpoint_dir: Path = Path(".pipelines/checkpoints")


class TopicSettings(_Frozen):
    name: str
    partitions: int = 3
    replication_factor: int = 1


class Settings(_Frozen):
    profile: str = "local"
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    spark: SparkSettings = SparkSettings()
    processor: ProcessorSettings = ProcessorSettings()
    paths: PathSettings = PathSettings()
    topics: dict[str, TopicSettings] = Field(
        default_factory=lambda: {SALES_TOPIC: TopicSettings(name=SALES_TOPIC)}
    )

    def resolve_path(self, path: Path) -> Path:
        """Relative paths in a profile are relative to the project root, not the working dir."""
        return path if path.is_absolute() else PROJECT_ROOT / path


def load_settings(
    profile: str | Path = "local",
    environ: Mapping[str, str] | None = None,
    conf_dir: Path = CONF_DIR,
) -> Settings:
    """Load `conf/<profile>.yaml` (or a path to a YAML file) and apply overrides from `environ`.

    Raises PipelinesError naming the file and the offending field when the profile is invalid.
    """
    path = Path(profile) if str(profile).endswith((".yaml", ".yml")) else conf_dir / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml"))
        raise PipelinesError(f"profile {profile!r} not found at {path}; known profiles: {', '.join(known)}")
    data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    for section, key in SECRET_FIELDS:
        if key in (data.get(section) or {}):
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise PipelinesError(
                f"{path} sets {section}.{key}, a secret: secrets come only from the environment "
                f"({env}), never from a file that could be committed. Remove it from the profile."
            )
    data.setdefault("profile", path.stem)
    from_env: dict[tuple[str, ...], str] = {}
    for name, keys, value in _env_overrides(environ or {}):
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        from_env[tuple(keys)] = name
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e, path, from_env) for e in exc.errors())
        raise PipelinesError(f"invalid settings: {problems}") from None


def _problem(error: Any, path: Path, from_env: Mapping[tuple[str, ...], str]) -> str:
    """One validation error as a user can act on it: the key, where it was set (the variable or
    the file), the value given and what is allowed."""
    loc = tuple(str(p) for p in error["loc"])
    key = ".".join(loc)
    where = from_env.get(loc) or str(path)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        known = f"; {'.'.join(loc[:-1]) or 'the top level'} takes {', '.join(allowed)}" if allowed else ""
        return f"unknown key {key} (in {where}){known}"
    return f"{key} = {error['input']!r} (from {where}): {error['msg']}"


def _allowed_keys(parent: tuple[str, ...]) -> list[str]:
    """The keys the settings accept under `parent` (a path of field names), if it names a section."""
    model: Any = Settings
    for name in parent:
        field = getattr(model, "model_fields", {}).get(name)
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """(variable, key path, value) of every PIPELINES_* override in `environ`."""
    overrides = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        if name == "PIPELINES_BOOTSTRAP_SERVERS":
            overrides.append((name, ["kafka", "bootstrap_servers"], value))
        elif "__" in name:
            keys = name.removeprefix(ENV_PREFIX).lower().split("__")
            overrides.append((name, keys, value))
    return overrides
