"""What a Spark job reading Avro asks the registry before its queries start: the read plan.

`read_plan` classifies every schema id registered now (every subject, every version): readable by
the job's reader schema (Avro's schema resolution) or not; the newest id bounds what the plan
knows. A record of a newer id makes the query fail with `NEW_SCHEMA_ID` (pipelines.transforms.avro);
`new_schema_id` finds that id in the failure, and the job starts its queries again with a plan read
anew, from the checkpoint: the record is read, not lost and not dead-lettered.
"""

from __future__ import annotations

import re

from pipelines.registry.avro import can_read, compact
from pipelines.registry.schemas import SchemaStore
from pipelines.transforms.avro import NEW_SCHEMA_ID, AvroReadPlan

_NEW_ID = re.compile(re.escape(NEW_SCHEMA_ID) + r"(-?\d+)")


def read_plan(store: SchemaStore, reader: str, seen: set[int] | None = None) -> AvroReadPlan:
    """The plan for `reader` from what `store` holds now; `seen` are ids met in records since the
    job started (an id the registry does not have is then covered by `newest_id`, so its records
    are dead-lettered as unknown instead of failing the query again)."""
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
        newest_id=max([*schemas, *(seen or set()), 0]),
    )


def new_schema_id(exc: BaseException) -> int | None:
    """The schema id a query failed on because it is newer than its plan, or None for any other
    failure."""
    found = _NEW_ID.search(str(exc))
    return int(found.group(1)) if found else None
