"""The partition-count advisor: its arithmetic, its reasons, and the broker measurement."""

from __future__ import annotations

import pytest

from pipelines.errors import PipelinesError
from pipelines.kafka.admin import list_topics
from pipelines.kafka.partitioning import measure_partition_throughput, plan_partitions


def test_throughput_bound_wins_when_the_load_is_high() -> None:
    plan = plan_partitions(target_mb_s=100, per_partition_mb_s=10, consumers=2, growth=1.5)
    assert (plan.for_throughput, plan.for_parallelism, plan.recommended) == (15, 6, 15)
    assert plan.reasons[0].startswith("throughput: 100 MB/s x growth 1.5 = 150 MB/s")


def test_parallelism_bound_wins_for_small_topics() -> None:
    plan = plan_partitions(target_mb_s=1, per_partition_mb_s=10, consumers=4)
    assert (plan.for_throughput, plan.for_parallelism, plan.recommended) == (1, 12, 12)
    assert any("never removed" in r for r in plan.reasons)


def test_rounds_up_to_a_multiple_of_the_brokers_and_warns_when_many() -> None:
    plan = plan_partitions(target_mb_s=50, per_partition_mb_s=0.2, consumers=1, brokers=3)
    assert plan.for_throughput == 250
    assert plan.recommended == 252
    assert any("is many for one topic" in r for r in plan.reasons)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_mb_s": 0, "per_partition_mb_s": 1, "consumers": 1},
        {"target_mb_s": 1, "per_partition_mb_s": 1, "consumers": 0},
        {"target_mb_s": 1, "per_partition_mb_s": 1, "consumers": 1, "growth": 0.5},
    ],
)
def test_nonsense_inputs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(PipelinesError):
        plan_partitions(**kwargs)  # type: ignore[arg-type]


def test_measurement_reads_back_everything_and_cleans_up(bootstrap: str) -> None:
    m = measure_partition_throughput(bootstrap, records=2000, record_bytes=1000)
    assert (m.records, m.megabytes) == (2000, 2.0)
    assert not [t for t in list_topics(bootstrap) if t.startswith("pipelines-plan-probe-")]
