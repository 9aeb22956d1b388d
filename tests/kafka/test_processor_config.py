"""The processor's settings and error classification, without a broker."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from pipelines.errors import PipelinesError
from pipelines.processor.processor import (
    Guarantee,
    ProcessorConfig,
    ProcessorResult,
    ProcessorStats,
    classify,
    default_transactional_id,
)


@pytest.mark.parametrize(
    ("err", "action"),
    [
        (KafkaError(KafkaError._FENCED, "fenced by newer instance", fatal=True), "fenced"),
        (KafkaError(KafkaError.PRODUCER_FENCED, "fenced"), "fenced"),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "stale epoch", fatal=True), "fenced"),
        (KafkaError(KafkaError.FENCED_INSTANCE_ID, "same group.instance.id", fatal=True), "fenced"),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "bumpable", txn_requires_abort=True), "abort"),
        (KafkaError(KafkaError._INCONSISTENT, "broken", fatal=True), "fatal"),
        (KafkaError(KafkaError._FATAL, "raised earlier"), "fatal"),
        (KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True), "abort"),
        (KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True), "retry"),
        (KafkaError(KafkaError.UNKNOWN, "who knows"), "abort"),
    ],
)
def test_transactional_errors_are_classified(err: KafkaError, action: str) -> None:
    assert classify(err) == action


def test_the_default_transactional_id_is_stable_and_derived_from_the_group() -> None:
    config = ProcessorConfig("b:9092", Guarantee.EXACTLY_ONCE, group_id="ship")
    assert config.effective_transactional_id == "ship-shipper" == default_transactional_id("ship")
    with_instance = ProcessorConfig("b:9092", Guarantee.EXACTLY_ONCE, group_id="ship", instance_id="2")
    assert with_instance.effective_transactional_id == "ship-shipper-2"
    explicit = ProcessorConfig("b:9092", Guarantee.EXACTLY_ONCE, transactional_id="mine")
    assert explicit.effective_transactional_id == "mine"
    assert ProcessorConfig("b:9092", Guarantee.AT_LEAST_ONCE).effective_transactional_id is None
    assert config.dead_letter_topic == "orders.dlq"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"commit_interval_s": 0.0}, "--commit-interval must be positive"),
        ({"sink_topic": "orders"}, "use two topics"),
        ({"guarantee": Guarantee.AT_MOST_ONCE, "transactional_id": "t"}, "only for --guarantee exactly-once"),
        ({"transactional_id": ""}, "must not be empty"),
    ],
)
def test_nonsense_settings_are_refused_with_one_line(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"guarantee": Guarantee.EXACTLY_ONCE, **changes}
    with pytest.raises(PipelinesError, match=message):
        ProcessorConfig("b:9092", **arguments)  # type: ignore[arg-type]


def test_the_summary_says_what_was_written_and_why_it_stopped() -> None:
    stats = ProcessorStats(
        consumed=1020, shipped=1000, dead_lettered=20, transactions_committed=3, transactions_aborted=1
    )
    assert ProcessorResult(Guarantee.EXACTLY_ONCE, stats, "idle", "no record for 3 s").summary() == (
        "consumed 1,020: 1,000 shipments, 20 dead letters; transactions committed 3, aborted 1; "
        "stopped: idle (no record for 3 s)"
    )
    plain = ProcessorStats(consumed=10, shipped=7, dead_lettered=1, lost=2, offset_commits=1)
    assert ProcessorResult(Guarantee.AT_MOST_ONCE, plain, "max_records").summary() == (
        "consumed 10: 7 shipments, 1 dead letters, 2 lost; offset commits 1; stopped: max_records"
    )
