"""What a Spark job reading Avro asks the registry before its queries start: the read plan.

`read_plan` classifies every schema id registered now (every subject, every version): readable by
the job's reader schema (Avro's schema resolution) or not; the newest id bounds what the plan
knows. A record of a newer id makes the query fail with `NEW_SCHEMA_ID` (pipelines.transforms.avro);
`new_schema_id` finds that id in the failure, and the job starts its queries again with a plan read
anew, from the checkpoint: the record is read, not lost and not dead-lettered. An id the registry
does not have even then (a positive id of another registry) is kept in the plan as unknown: its
records are dead-lettered as `avro_unknown_schema_id`, and the newest id stays the registry's, so
a schema registered later (with a smaller id than the foreign one) still starts the queries again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipelines.registry.avro import can_read, compact
from pipelines.registry.schemas import SchemaStore
from pipelines.transforms.avro import NEW_SCHEMA_ID, AvroReadPlan

_NEW_ID = re.compile(re.escape(NEW_SCHEMA_ID) + r"(-?\d+)")


def read_plan(store: SchemaStore, reader: str, seen: set[int] | None = None) -> AvroReadPlan:
    """The plan for `reader` from what `store` holds now; `seen` are ids met in records since the
    job started that were newer than its plan. Each is looked up by id: one the registry does not
    have is `unknown` in the plan, so its records are dead-lettered as unknown instead of failing
    the query again; `newest_id` stays the newest id the registry has."""
    reader = compact(reader)
    schemas: dict[int, str] = {}
    for subject in store.subjects():
        for version in store.versions(subject):
            schemas[version.schema_id] = version.schema
    for schema_id in seen or set():
        if schema_id not in schemas:
            text = store.schema_by_id(schema_id)
            if text is not None:
                schemas[schema_id] = text
    writers = {i: compact(s) for i, s in schemas.items() if can_read(reader, s)}
    return AvroReadPlan(
        reader=reader,
        writers=writers,
        unreadable=frozenset(set(schemas) - set(writers)),
        newest_id=max([*schemas, 0]),
        unknown=frozenset((seen or set()) - set(schemas)),
    )


def new_schema_id(exc: BaseException) -> int | None:
    """The schema id a query failed on because it is newer than its plan, or None for any other
    failure. The id is searched in the whole failure: a Kafka sink's failure names it in its own
    message, a Delta sink's (`TASK_WRITE_FAILED`) only in a cause, which pyspark keeps in the JVM's
    stack trace and in the exception's causes."""
    for text in _failure_texts(exc):
        found = _NEW_ID.search(text)
        if found:
            return int(found.group(1))
    return None


def _failure_texts(exc: BaseException) -> Iterator[str]:
    """The messages of `exc` and of its causes, and pyspark's JVM stack trace of each (which has
    every `Caused by:` of the Java exception)."""
    met: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in met:
        met.add(id(current))
        yield str(current)
        yield str(getattr(current, "_stackTrace", None) or "")  # pyspark's CapturedException
        cause = getattr(current, "_cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
