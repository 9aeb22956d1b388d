"""The stateful per-customer table on the real broker: counts equal the ledger (in plain Python),
in the compacted topic, in the Delta table and in the state store itself, and a restart on the
same checkpoint continues them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.generators.events import generate_events
from pipelines.generators.ledger import LedgerEntry, read_ledger
from pipelines.generators.publish import publish_events
from pipelines.jobs.customer_order_counts import read_customer_state, start_customer_order_counts
from pipelines.kafka.producer import make_producer
from tests.helpers import read_topic, run_to_end


def expected_counts(entries: list[LedgerEntry]) -> dict[str, tuple[int, Decimal]]:
    """Orders per customer from the ledger: every contract-valid order, late or not, counts."""
    totals: dict[str, list[object]] = defaultdict(lambda: [0, Decimal("0.00")])
    for e in entries:
        if e.kind == "malformed":
            continue
        doc = json.loads(e.value, parse_float=Decimal)
        t = totals[doc["customer_id"]]
        t[0] = int(t[0]) + 1  # type: ignore[call-overload]
        t[1] = Decimal(t[1]) + Decimal(doc["amount"])  # type: ignore[operator]
    return {k: (int(v[0]), Decimal(v[1])) for k, v in totals.items()}  # type: ignore[call-overload]


def run_once(spark: SparkSession, bootstrap: str, topic: str, out: str, dlq: str, tmp_path: Path) -> None:
    queries = start_customer_order_counts(
        spark, bootstrap_servers=bootstrap, source_topic=topic, checkpoint=tmp_path / "checkpoint",
        sink="both", sink_topic=out, delta_path=tmp_path / "counts", dlq_topic=dlq, trigger="available-now",
        max_offsets_per_trigger=700,
    )  # fmt: skip
    run_to_end(queries)


def latest_per_key(bootstrap: str, topic: str) -> dict[str, tuple[int, Decimal]]:
    latest: dict[str, tuple[int, Decimal]] = {}
    for record in sorted(read_topic(bootstrap, topic), key=lambda r: (r.partition, r.offset)):
        doc = json.loads(record.value or b"", parse_float=Decimal)
        assert record.key is not None and record.key.decode() == doc["customer_id"]
        latest[doc["customer_id"]] = (doc["order_count"], Decimal(doc["total_amount"]))
    return latest


def test_counts_survive_a_restart_and_match_the_ledger_everywhere(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    out = new_topic(partitions=3, **{"cleanup.policy": "compact"})
    producer = make_producer(bootstrap)
    orders = generate_events("orders", 2000, seed=51, late_fraction=0.02, malformed_fraction=0.03)
    publish_events(producer, topic, orders, ledger=tmp_path / "one.jsonl")
    run_once(spark, bootstrap, topic, out, dlq, tmp_path)
    first = expected_counts(read_ledger(tmp_path / "one.jsonl"))
    state = {r["customer_id"]: (r["order_count"], r["total_amount"])
             for r in read_customer_state(spark, tmp_path / "checkpoint" / "kafka").collect()}  # fmt: skip
    assert state == first

    # More orders, and a restart on the same checkpoint: the counts continue from the state.
    publish_events(producer, topic, generate_events("orders", 1000, seed=52, malformed_fraction=0.03),
                   ledger=tmp_path / "two.jsonl")  # fmt: skip
    run_once(spark, bootstrap, topic, out, dlq, tmp_path)
    expected = expected_counts(read_ledger(tmp_path / "one.jsonl") + read_ledger(tmp_path / "two.jsonl"))
    assert expected != first

    table = {r["customer_id"]: (r["order_count"], r["total_amount"])
             for r in spark.read.format("delta").load(str(tmp_path / "counts")).collect()}  # fmt: skip
    assert table == expected
    assert latest_per_key(bootstrap, out) == expected
    state = {r["customer_id"]: (r["order_count"], r["total_amount"])
             for r in read_customer_state(spark, tmp_path / "checkpoint" / "merge").collect()}  # fmt: skip
    assert state == expected
