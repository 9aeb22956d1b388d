"""The dedupe consumer on the real broker: a topic with a replayed batch (what Spark's kafka sink
writes after a crash), an aborted and a committed transaction and a record that is no shipment
gives each shipment exactly once; offsets follow what the caller finished; the bounded store
forgets the least recently seen id first."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from pipelines.kafka.consumer import assign_all
from pipelines.kafka.dedupe import SeenIds, ShipmentDeduplicator, shipment_id_of
from pipelines.kafka.producer import make_producer, produce_all


def shipment(n: int) -> tuple[bytes, bytes]:
    order_id = f"order-9-{n:08d}"
    value = json.dumps(
        {"shipment_id": f"ship-{order_id}", "order_id": order_id, "customer_id": f"cust-{n % 7:05d}",
         "status": "pending", "created_at": f"2026-11-27T10:00:{n % 60:02d}.000Z"},
        separators=(",", ":"),
    )  # fmt: skip
    return order_id.encode(), value.encode()


def transactional_producer(bootstrap: str) -> Producer:
    producer = make_producer(bootstrap, {"transactional.id": f"test-dedupe-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    return producer


def test_each_shipment_once_from_replays_and_committed_transactions_only(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=3)
    originals = [shipment(n) for n in range(60)]
    replayed = originals[40:]  # the last batch, written again after a crash before its commit
    produce_all(make_producer(bootstrap), topic, [*originals, (b"junk", b"not a shipment"), *replayed])
    txn = transactional_producer(bootstrap)
    aborted_key, aborted_value = shipment(1000)
    committed_key, committed_value = shipment(1001)
    txn.begin_transaction()
    txn.produce(topic, key=aborted_key, value=aborted_value)
    assert txn.flush(30) == 0  # on the broker's log before the abort (abort alone purges the queue)
    txn.abort_transaction(30)
    txn.begin_transaction()
    txn.produce(topic, key=committed_key, value=committed_value)
    txn.commit_transaction(30)

    # The aborted shipment is on the topic: a read_uncommitted reader (Java's default) gets it.
    uncommitted = assign_all(
        bootstrap, topic, from_beginning=True, overrides={"isolation.level": "read_uncommitted"}
    )
    try:
        values: list[bytes | None] = []
        while len(values) < 83:  # every record produced, the aborted one included
            msg = uncommitted.poll(10)
            assert msg is not None, f"only {len(values)} records read"
            values.append(msg.value())
    finally:
        uncommitted.close()
    assert aborted_value in values

    readable = len(originals) + 1 + len(replayed) + 1  # the aborted record is never delivered
    with ShipmentDeduplicator(bootstrap, topic, group_id) as dedupe:
        got = list(dedupe.shipments(max_records=readable, idle_timeout_s=30))
        # Then drain the topic (no record for 2 s): an aborted record, if it were read, is read now.
        got += dedupe.shipments(idle_timeout_s=2)
        stats = dedupe.stats
    ids = Counter(s.shipment_id for s in got)
    assert ids == Counter({shipment_id_of(v): 1 for _, v in [*originals, (committed_key, committed_value)]})
    assert {(s.key, s.value) for s in got} == {*originals, (committed_key, committed_value)}
    assert (stats.read, stats.unique, stats.duplicates, stats.unreadable) == (readable, 61, 20, 1)


def test_a_shipment_handed_over_but_not_finished_comes_again_after_a_restart(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic(partitions=1)
    records = [shipment(n) for n in range(20)]
    produce_all(make_producer(bootstrap), topic, records)
    with ShipmentDeduplicator(bootstrap, topic, group_id) as first:
        handed = []
        for s in first.shipments(idle_timeout_s=30):
            handed.append(s.value)
            if len(handed) == 10:
                break  # the caller stops (or dies) while handling the 10th
    with ShipmentDeduplicator(bootstrap, topic, group_id) as second:
        again = [s.value for s in second.shipments(max_records=11, idle_timeout_s=30)]
    # At-least-once across restarts: the 10th was never confirmed, so it comes again; nothing is lost.
    assert handed == [v for _, v in records[:10]]
    assert again == [v for _, v in records[9:]]


def test_seen_ids_forget_the_least_recently_seen_beyond_capacity() -> None:
    seen = SeenIds(capacity=3)
    assert [seen.add(i) for i in ("a", "b", "c")] == [True, True, True]
    assert seen.add("a") is False  # a duplicate, and now the most recently seen
    assert seen.add("d") is True  # over capacity: "b" is the least recently seen and goes
    assert ("a" in seen, "b" in seen, "c" in seen, "d" in seen) == (True, False, True, True)
    assert (len(seen), seen.forgotten) == (3, 1)
    assert seen.add("b") is True  # forgotten, so a late duplicate of it would pass
    with pytest.raises(ValueError, match="at least 1"):
        SeenIds(capacity=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"shipment_id":"ship-o-1","order_id":"o-1"}', "ship-o-1"),
        (b'{"shipment_id":7}', None),
        (b'{"order_id":"o-1"}', None),
        (b'["ship-o-1"]', None),
        (b"not json", None),
        (b"\xff\xfe", None),
        (b"", None),
        (None, None),
    ],
)
def test_shipment_id_of(value: bytes | None, expected: str | None) -> None:
    assert shipment_id_of(value) == expected
