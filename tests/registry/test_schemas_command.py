"""`pipelines schemas register|list|check` on the real registry: the contract's schemas under
BACKWARD compatibility, an optional field accepted, a breaking change refused in one line."""

from __future__ import annotations

import json
import uuid

import fastavro

from pipelines.registry.schemas import SCHEMA_DIR, SchemaStore, contract_schema
from tests.helpers import pipelines

V2 = SCHEMA_DIR / "evolution" / "sales-v2.avsc"
V3 = SCHEMA_DIR / "evolution" / "sales-v3-incompatible.avsc"


def test_the_contract_schemas_are_avro_with_exact_money_and_millisecond_timestamps() -> None:
    for event_type in ("orders", "sales", "shipments"):
        doc = json.loads(contract_schema(event_type))
        fastavro.parse_schema(doc)
        records = doc if isinstance(doc, list) else [doc]
        fields = {f["name"]: f["type"] for r in records for f in r["fields"]}
        if "amount" in fields:
            assert fields["amount"] == {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": 12,
                "scale": 2,
            }
        stamp = fields.get("timestamp", fields.get("created_at"))
        assert stamp == {"type": "long", "logicalType": "timestamp-millis"}
    assert [r["name"] for r in json.loads(contract_schema("sales"))] == ["Sale", "Heartbeat"]


def test_register_list_check_and_a_breaking_change_refused(registry_url: str, store: SchemaStore) -> None:
    topic = f"sales-{uuid.uuid4().hex[:8]}"
    subject = f"{topic}-value"
    url = ("--registry-url", registry_url)

    first = pipelines("schemas", "register", "sales", "--topic", topic, *url)
    assert first.returncode == 0, first.stderr
    [v1] = store.versions(subject)
    assert first.stderr == f"{subject}: version 1, id {v1.schema_id} (BACKWARD)\n"
    assert store.compatibility(subject) == "BACKWARD"
    again = pipelines("schemas", "register", "sales", "--topic", topic, *url)
    assert again.stderr == first.stderr  # idempotent: same version, same id

    check_v2 = pipelines("schemas", "check", "sales", "--topic", topic, "--schema", V2, *url)
    assert (check_v2.returncode, check_v2.stderr) == (
        0,
        f"{subject}: not registered, BACKWARD compatible (version 1): `schemas register`\n",
    )
    assert pipelines("schemas", "register", "sales", "--topic", topic, "--schema", V2, *url).returncode == 0

    check_v3 = pipelines("schemas", "check", "sales", "--topic", topic, "--schema", V3, *url)
    assert check_v3.returncode == 1
    assert check_v3.stderr.splitlines()[-1] == (
        f"error: {subject} would refuse this schema: make every new field optional with a default"
    )
    refused = pipelines("schemas", "register", "sales", "--topic", topic, "--schema", V3, *url)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        f"error: the registry refused this schema for {subject}: it is not BACKWARD compatible"
    )
    assert [v.version for v in store.versions(subject)] == [1, 2]

    listed = pipelines("schemas", "list", *url, columns=250)
    rows = [r for r in listed.stdout.splitlines() if subject in r]
    assert len(rows) == 2 and all(
        "BACKWARD" in r and "pipelines.sales.Sale | pipelines.sales.Heartbeat" in r for r in rows
    )
