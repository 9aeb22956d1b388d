"""`pipelines schemas register|list|check`: the contract's Avro schemas in the schema registry.

The schemas are `pipelines/contracts/avro/<type>.avsc`; each topic's value schema is the subject
`<topic>-value`, registered with BACKWARD compatibility (docs/schemas.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.commands.common import ProfileOpt, err, out, settings_for
from pipelines.commands.registry import RegistryUrlOpt, registry_url
from pipelines.errors import PipelinesError
from pipelines.registry.schemas import (
    COMPATIBILITY,
    EVENT_TYPES,
    SchemaStore,
    contract_schema,
    load_schema,
    subject_for,
)

schemas_app = typer.Typer(
    help="Register, list and check the contract's Avro schemas in the schema registry.", no_args_is_help=True
)

TypesArg = Annotated[
    list[str] | None, typer.Argument(help=f"event types (default: all of {', '.join(EVENT_TYPES)})")
]
TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="register under <topic>-value (default: the type's name)")
]
SchemaOpt = Annotated[
    Path | None, typer.Option("--schema", help="an .avsc file instead of the contract's (one type only)")
]


def _types(types: list[str] | None) -> list[str]:
    chosen = types or list(EVENT_TYPES)
    for t in chosen:
        if t not in EVENT_TYPES:
            raise PipelinesError(f"unknown event type {t!r}; the contract has {', '.join(EVENT_TYPES)}")
    return chosen


def _targets(types: list[str] | None, topic: str | None, schema: Path | None) -> list[tuple[str, str]]:
    """(topic, schema text) for each chosen type."""
    chosen = _types(types)
    if (topic is not None or schema is not None) and len(chosen) != 1:
        raise PipelinesError("--topic and --schema take one event type: name it, e.g. `sales`")
    return [(topic or t, load_schema(schema) if schema is not None else contract_schema(t)) for t in chosen]


@schemas_app.command("register")
def schemas_register(
    types: TypesArg = None,
    topic: TopicOpt = None,
    schema: SchemaOpt = None,
    url: RegistryUrlOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Register the value schema of each type under <topic>-value with BACKWARD compatibility.

    Idempotent: a schema already registered keeps its version and id. A schema that is not BACKWARD
    compatible with the registered versions is refused (exit 1), and the old versions stay.
    """
    store = SchemaStore(registry_url(settings_for(profile), url))
    for name, text in _targets(types, topic, schema):
        version = store.register(name, text)
        err.print(
            f"{version.subject}: version {version.version}, id {version.schema_id} ({COMPATIBILITY})",
            highlight=False,
        )


@schemas_app.command("list")
def schemas_list(url: RegistryUrlOpt = None, profile: ProfileOpt = "local") -> None:
    """Every subject with its versions, schema ids and compatibility level."""
    store = SchemaStore(registry_url(settings_for(profile), url))
    table = Table("subject", "version", "id", "compatibility", "schema")
    for subject in store.subjects():
        level = store.compatibility(subject)
        for v in store.versions(subject):
            table.add_row(subject, str(v.version), str(v.schema_id), level, _names(v.schema))
    out.print(table)


@schemas_app.command("check")
def schemas_check(
    types: TypesArg = None,
    topic: TopicOpt = None,
    schema: SchemaOpt = None,
    url: RegistryUrlOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Check, without registering, that each schema could be registered now (BACKWARD compatible
    with the subject's versions) and say whether it already is; exit 1 if one could not."""
    store = SchemaStore(registry_url(settings_for(profile), url))
    refused = []
    for name, text in _targets(types, topic, schema):
        subject = subject_for(name)
        versions = store.versions(subject)
        registered = next((v for v in versions if _same(v.schema, text)), None)
        if registered is not None:
            err.print(f"{subject}: registered as version {registered.version} (id {registered.schema_id})")
        elif store.is_compatible(name, text):
            latest = f"version {versions[-1].version}" if versions else "no version yet"
            err.print(f"{subject}: not registered, {COMPATIBILITY} compatible ({latest}): `schemas register`")
        else:
            latest = f"version {versions[-1].version}"
            err.print(f"[red]{subject}: not {COMPATIBILITY} compatible with {latest}[/]")
            refused.append(subject)
    if refused:
        raise PipelinesError(
            f"{', '.join(refused)} would refuse this schema: make every new field optional with a default"
        )


def _same(a: str, b: str) -> bool:
    return bool(json.loads(a) == json.loads(b))


def _names(schema: str) -> str:
    """`pipelines.sales.Sale | pipelines.sales.Heartbeat`: the record names of a schema, for the list."""
    doc = json.loads(schema)
    members = doc if isinstance(doc, list) else [doc]
    return " | ".join(
        f"{m.get('namespace', '')}.{m.get('name', '?')}".lstrip(".") if isinstance(m, dict) else str(m)
        for m in members
    )
