"""Consumer groups on the real broker, with every member a separate process (`MemberPool`).

The members run `RecordConsumer` with cooperative-sticky and commit-after-process, committing only
in `on_revoke` and on close (`commit_every` is huge), and records are produced only once the group
has settled, so any committed offset seen here was written by the rebalance or close under test.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pipelines.kafka.groups import GroupDescription, MemberEvent, MemberPool, describe_group
from pipelines.kafka.producer import Delivered, make_producer, produce_all

PARTITIONS = 6
SESSION_TIMEOUT_S = 45
ONLY_ON_REVOKE_AND_CLOSE = 10**9
MEMBER_CONFIG = {"session.timeout.ms": SESSION_TIMEOUT_S * 1000}
NAMES = ["m1", "m2", "m3"]


@pytest.fixture
def topic(new_topic: Callable[..., str]) -> str:
    return new_topic(partitions=PARTITIONS)


def produce(bootstrap: str, topic: str, keys: range) -> list[Delivered]:
    report = produce_all(make_producer(bootstrap), topic, [(f"k{i}".encode(), b"v") for i in keys])
    assert report.failed == []
    return report.delivered


@contextmanager
def three_members(bootstrap: str, group_id: str, topic: str, **options: Any) -> Iterator[MemberPool]:
    """Members m1, m2 and m3, each a process of its own, balanced over the topic's partitions; once
    the pool is closed, checks that no partition ever had two owners."""
    with MemberPool(bootstrap, group_id, topic, config=MEMBER_CONFIG, **options) as pool:
        for name in NAMES:
            pool.start(name)
        pool.wait_balanced(NAMES, PARTITIONS, timeout_s=60)
        yield pool
    assert_never_two_owners(pool.events)


def produce_and_process(pool: MemberPool, bootstrap: str, topic: str, keys: range) -> list[Delivered]:
    """Produce a record for each of `keys`, then wait until the pool has processed `keys.stop`."""
    delivered = produce(bootstrap, topic, keys)
    pool.wait_until(lambda p: len(p.processed()) == keys.stop, f"{keys.stop} records processed")
    return delivered


def described(bootstrap: str, group: str, ready: Callable[[GroupDescription], bool]) -> GroupDescription:
    """The broker's description of `group` once `ready(description)` holds (deadline 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        desc = describe_group(bootstrap, group)
        if ready(desc):
            return desc
        assert time.monotonic() < deadline, f"group never got there: {desc}"


def phase_events(pool: MemberPool, since: int, kind: str) -> list[tuple[str, int]]:
    """(member, partition) for every `kind` event reported after the first `since` events."""
    return [(e.member, p) for e in pool.events[since:] if e.kind == kind for p in e.partitions]


def assert_never_two_owners(events: list[MemberEvent]) -> None:
    """Replayed in time order, no partition is ever assigned to a member while another owns it:
    cooperative rebalancing revokes first and assigns in a later round."""
    owner: dict[int, str] = {}
    for e in sorted(events, key=lambda e: e.at):
        for p in e.partitions:
            if e.kind == "assigned":
                assert p not in owner, f"partition {p} assigned to {e.member} while {owner[p]} owns it"
                owner[p] = e.member
            elif e.kind in ("revoked", "lost"):
                assert owner.pop(p) == e.member


def test_three_member_processes_each_own_two_of_six_partitions(
    bootstrap: str, topic: str, group_id: str
) -> None:
    with three_members(bootstrap, group_id, topic) as pool:
        owned = pool.ownership()
        assert [len(owned[n]) for n in NAMES] == [2, 2, 2]
        assert sorted(p for n in NAMES for p in owned[n]) == list(range(PARTITIONS))
        # Three processes, none of them this one.
        assert len({pool.pids[n] for n in NAMES} | {os.getpid()}) == 4

        # The broker's view agrees with what the members' callbacks reported.
        desc = described(bootstrap, group_id, lambda d: d.state == "Stable" and len(d.members) == 3)
        assert desc.assignor == "cooperative-sticky"
        assert {m.client_id: sorted(p for _, p in m.partitions) for m in desc.members} == owned
        assert {m.member_id for m in desc.members} == set(pool.member_ids.values())


def test_a_fourth_member_takes_only_the_partition_that_must_move_committed_in_on_revoke(
    bootstrap: str, topic: str, group_id: str
) -> None:
    with three_members(bootstrap, group_id, topic, commit_every=ONLY_ON_REVOKE_AND_CLOSE) as pool:
        # Produced once the group is settled, so no rebalance has committed any of it yet.
        first = produce_and_process(pool, bootstrap, topic, range(60))
        per_partition = {p: sum(1 for d in first if d.partition == p) for p in range(PARTITIONS)}
        before = pool.ownership()
        since = len(pool.events)

        pool.start("m4")
        pool.wait_balanced([*NAMES, "m4"], PARTITIONS, timeout_s=60)
        after = pool.ownership()

        # 6 partitions over 4 members is 2+2+1+1: the newcomer needs one partition, so exactly one
        # moves; the other five stay where they were.
        revoked = phase_events(pool, since, "revoked")
        assert len(revoked) == 1, revoked
        [(loser, moved)] = revoked
        assert phase_events(pool, since, "assigned") == [("m4", moved)]
        assert after["m4"] == [moved]
        for name in NAMES:
            assert set(after[name]) == set(before[name]) - {moved}
        assert phase_events(pool, since, "lost") == []

        # on_revoke committed the moved partition, and only it, before giving it up ...
        [revoke] = [e for e in pool.events[since:] if e.kind == "revoked"]
        assert revoke.committed == ((moved, per_partition[moved]),)
        desc = described(bootstrap, group_id, lambda d: d.state == "Stable" and len(d.members) == 4)
        committed = {row.partition: row.committed for row in desc.partitions}
        assert committed == {p: (per_partition[p] if p == moved else None) for p in range(PARTITIONS)}
        assert {row.partition: row.lag for row in desc.partitions}[moved] == 0

        # ... so m4 starts there: records produced now are processed once each, and none of the
        # moved partition's first records is processed again (they would come first, in order).
        produce(bootstrap, topic, range(60, 120))
        pool.wait_until(lambda p: len(p.processed()) >= 120, "120 records processed")
        processed = [(p, o) for _, p, o in pool.processed()]
        assert len(processed) == len(set(processed)) == 120
        assert {p for m, p, _ in pool.processed()[60:] if m == "m4"} == {moved}
        assert moved in before[loser]


def test_a_member_that_closes_leaves_at_once_and_only_its_partitions_move(
    bootstrap: str, topic: str, group_id: str
) -> None:
    with three_members(bootstrap, group_id, topic, commit_every=ONLY_ON_REVOKE_AND_CLOSE) as pool:
        produce_and_process(
            pool, bootstrap, topic, range(30)
        )  # after the group settled: nothing committed yet
        before = pool.ownership()
        since = len(pool.events)

        asked = pool.close("m2")
        # A member that merely vanished would be noticed after session.timeout.ms (45 s); close()
        # sends LeaveGroup, so the others must own its partitions far sooner.
        pool.wait_balanced(["m1", "m3"], PARTITIONS, timeout_s=SESSION_TIMEOUT_S / 3)
        took = time.monotonic() - asked
        assert took < SESSION_TIMEOUT_S / 5, f"took {took:.1f} s"

        # Only m2's partitions moved: the others gave up nothing and gained exactly those.
        assert [e for e in phase_events(pool, since, "revoked") if e[0] != "m2"] == []
        assert phase_events(pool, since, "lost") == []
        gained = sorted(p for m, p in phase_events(pool, since, "assigned") if m != "m2")
        assert gained == before["m2"]
        for name in ("m1", "m3"):
            assert set(pool.owned[name]) >= set(before[name])
        pool.wait_until(lambda p: "m2" in p.closed, "m2 closed")

        # m2 committed its partitions on the way out (its close revoked them); m1 and m3 have not
        # committed anything yet.
        desc = described(bootstrap, group_id, lambda d: len(d.members) == 2)
        assert {r.partition for r in desc.partitions if r.committed is not None} == set(before["m2"])
        assert all(r.lag == 0 for r in desc.partitions if r.committed is not None)
