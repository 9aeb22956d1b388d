"""The contract's Avro schemas, their subjects, and the registry calls the commands and jobs make.

The schemas live with the contracts, in `pipelines/contracts/avro/<type>.avsc` (`orders`, `sales`,
`shipments`); a topic's value schema is registered under the subject `<topic>-value` (Confluent's
TopicNameStrategy, what confluent-kafka's serializers use) with BACKWARD compatibility: a new
version must be able to read every record written with the previous one, so consumers upgrade
first and producers after.

`SchemaStore` wraps confluent-kafka's SchemaRegistryClient (which speaks the Confluent API that
Apicurio serves at `/apis/ccompat/v7`) and turns its errors into one line that names the subject
and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from pipelines import contracts
from pipelines.registry import RegistryError

SCHEMA_DIR = Path(contracts.__file__).parent / "avro"
"""`<type>.avsc` of every event type, and `evolution/` (later and broken versions, for the tests)."""
EVENT_TYPES = ("orders", "sales", "shipments")
REQUEST_TIMEOUT_S = 30
"""Every registry request's deadline: an unanswered request fails in one line instead of hanging."""
SERDE_CONF = {"subject.name.strategy.type": "TOPIC"}
"""For confluent-kafka's Avro serializers and deserializers: subjects by topic (`<topic>-value`).
Since 2.16 they default to the ASSOCIATED strategy, which first asks the registry for the topic's
"associations", an endpoint of Confluent's registry that Apicurio does not have (seen to hang)."""
COMPATIBILITY = "BACKWARD"


def subject_for(topic: str) -> str:
    """The value subject of `topic` (TopicNameStrategy): `sales` -> `sales-value`."""
    return f"{topic}-value"


def schema_file(event_type: str) -> Path:
    if event_type not in EVENT_TYPES:
        raise RegistryError(f"no Avro schema for {event_type!r}; the contract has {', '.join(EVENT_TYPES)}")
    return SCHEMA_DIR / f"{event_type}.avsc"


def load_schema(path: Path) -> str:
    """The schema in `path` as compact JSON text; RegistryError naming the file when it is no JSON."""
    try:
        return json.dumps(json.loads(path.read_text()), separators=(",", ":"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read the Avro schema {path}: {exc}") from None


def contract_schema(event_type: str) -> str:
    """The contract's Avro schema of `event_type` (orders, sales, shipments), compact JSON."""
    return load_schema(schema_file(event_type))


@dataclass(frozen=True)
class Version:
    """One registered version of a subject."""

    subject: str
    version: int
    schema_id: int
    schema: str


class SchemaStore:
    """The schema registry at `url` (its Confluent-compatible API root)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client = SchemaRegistryClient({"url": self.url, "timeout": REQUEST_TIMEOUT_S})

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except SchemaRegistryError as exc:
            raise RegistryError(f"{what}: {exc.error_message} (HTTP {exc.http_status_code})") from None
        except Exception as exc:  # httpx transport errors: not reachable
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(
                f"{what}: the schema registry at {self.url} does not answer ({type(exc).__name__}: {exc}); "
                "start it with `pipelines registry start` or pass --registry-url"
            ) from None

    def register(self, topic: str, schema: str, *, compatibility: str = COMPATIBILITY) -> Version:
        """Register `schema` as the value schema of `topic` under `compatibility` (idempotent: the
        same schema again is the same version). RegistryError in one line when the registry refuses
        it, saying why and that the subject's previous versions stay."""
        subject = subject_for(topic)
        with self._calling(f"setting {compatibility} compatibility on {subject}"):
            self.client.set_compatibility(subject, compatibility)
        with self._calling(f"registering a schema for {subject}"):
            try:
                schema_id = self.client.register_schema(subject, Schema(schema, "AVRO"))
            except SchemaRegistryError as exc:
                if exc.http_status_code != 409:
                    raise
                raise RegistryError(
                    f"the registry refused this schema for {subject}: it is not {compatibility} compatible "
                    f"with the registered versions, which stay as they are ({_short(exc.error_message)}); "
                    "make every new field optional with a default, or write to a new topic"
                ) from None
        with self._calling(f"reading the registered version of {subject}"):
            registered = self.client.lookup_schema(subject, Schema(schema, "AVRO"))
        return Version(subject, int(registered.version or 0), schema_id, schema)

    def subjects(self) -> list[str]:
        with self._calling("listing subjects"):
            return sorted(self.client.get_subjects())

    def versions(self, subject: str) -> list[Version]:
        """Every registered version of `subject`, oldest first ([] when the subject is unknown)."""
        with self._calling(f"listing the versions of {subject}"):
            try:
                numbers = self.client.get_versions(subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return []
                raise
        found = []
        for number in sorted(numbers):
            with self._calling(f"reading version {number} of {subject}"):
                registered = self.client.get_version(subject, number)
            found.append(
                Version(subject, number, int(registered.schema_id or 0), registered.schema.schema_str or "")
            )
        return found

    def compatibility(self, subject: str) -> str:
        """The subject's compatibility level (the registry's default when the subject has none)."""
        try:
            return str(self.client.get_compatibility(subject))
        except SchemaRegistryError:
            with self._calling("reading the default compatibility"):
                return str(self.client.get_compatibility())

    def schema_by_id(self, schema_id: int) -> str | None:
        """The schema registered with `schema_id`, or None when the registry has no such id."""
        if schema_id < 0:
            return None
        with self._calling(f"looking up schema id {schema_id}"):
            try:
                return self.client.get_schema(schema_id).schema_str
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return None
                raise

    def is_compatible(self, topic: str, schema: str) -> bool:
        """Whether `schema` could be registered for `topic` now (True for a subject with no versions)."""
        subject = subject_for(topic)
        if not self.versions(subject):
            return True
        with self._calling(f"checking a schema against {subject}"):
            return bool(self.client.test_compatibility(subject, Schema(schema, "AVRO")))


def _short(message: str) -> str:
    """The registry's refusal without the Java class name in front, and without an empty list."""
    text = message.split("Exception: ", 1)[-1].strip()
    return text.removesuffix(", list of diff types: []").removesuffix(", list of diff types:").strip()
