"""Broker-free parts of the consumer library: how records print, what a dead letter carries, and
which settings each commit strategy forces."""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, Message

from pipelines.contracts import DEAD_LETTER_HEADERS, dead_letter_topic
from pipelines.kafka.consumer import (
    CommitStrategy,
    RecordConsumer,
    consumer_config,
    format_record,
    format_timestamp,
    readable_bytes,
)
from pipelines.kafka.dlq import DeadLetter

MS = 1795773600123  # 2026-11-27T10:00:00.123Z


def sales_record(partition: int, offset: int, key: bytes | None, value: bytes, **more: object) -> Message:
    """A record of the `sales` topic, as a consumer hands it over."""
    return Message(topic="sales", partition=partition, offset=offset, key=key, value=value, **more)


def test_readable_bytes_shows_text_as_text_and_escapes_everything_else() -> None:
    assert readable_bytes(b'{"amount": 12.5}') == '{"amount": 12.5}'
    assert readable_bytes("café €".encode()) == "café €"
    # One record, one line: control characters are escaped, not printed.
    assert readable_bytes(b"a\nb\tc\r\x00\x7f") == "a\\nb\\tc\\r\\x00\\x7f"
    # Not UTF-8: an escaped bytes literal, so binary is never mistaken for text.
    assert readable_bytes(b"\xff\xfe\x00ok") == "b'\\xff\\xfe\\x00ok'"
    assert readable_bytes(b"") == ""
    assert readable_bytes(None) == "null"


def test_format_timestamp_is_iso_utc_with_milliseconds_and_its_type() -> None:
    assert format_timestamp((TIMESTAMP_CREATE_TIME, MS)) == "2026-11-27T10:00:00.123Z (create)"
    assert format_timestamp((TIMESTAMP_LOG_APPEND_TIME, MS)) == "2026-11-27T10:00:00.123Z (log-append)"
    assert format_timestamp((TIMESTAMP_NOT_AVAILABLE, 0)) == "-"


def test_format_record_prints_every_field_on_one_line() -> None:
    msg = sales_record(
        2, 41, b"sale-7", b"\xffnot utf-8", headers=[("trace", b"abc"), ("empty", None)],
        timestamp=(TIMESTAMP_CREATE_TIME, MS),
    )  # fmt: skip
    assert format_record(msg) == (
        "partition=2 offset=41 timestamp=2026-11-27T10:00:00.123Z (create) key=sale-7 "
        "value=b'\\xffnot utf-8' headers=[trace=abc, empty=null]"
    )
    bare = sales_record(0, 0, None, b"v", timestamp=(1, MS))
    assert (
        format_record(bare)
        == "partition=0 offset=0 timestamp=2026-11-27T10:00:00.123Z (create) key=null value=v"
    )


def test_dead_letter_keeps_key_value_and_headers_and_adds_the_five_contract_headers() -> None:
    msg = sales_record(
        1,
        17,
        b"sale-1",
        b"{not json",
        headers=[("trace", b"t-1"), ("error.reason", b"stale reason from upstream")],
    )
    letter = DeadLetter.from_message(msg, "invalid_json", "the value is not a JSON object: {not json")
    assert (letter.topic, letter.key, letter.value) == ("sales.dlq", b"sale-1", b"{not json")
    assert letter.headers() == [
        ("trace", b"t-1"),
        ("error.reason", b"invalid_json"),
        ("error.detail", b"the value is not a JSON object: {not json"),
        ("source.topic", b"sales"),
        ("source.partition", b"1"),
        ("source.offset", b"17"),
    ]
    assert DEAD_LETTER_HEADERS == (
        "error.reason",
        "error.detail",
        "source.topic",
        "source.partition",
        "source.offset",
    )
    assert dead_letter_topic("orders") == "orders.dlq"


def test_each_strategy_owns_the_commit_settings() -> None:
    overrides = {"enable.auto.commit": True, "enable.auto.offset.store": True, "client.id": "me"}
    for strategy in (CommitStrategy.AT_MOST_ONCE, CommitStrategy.AT_LEAST_ONCE):
        conf = consumer_config("h:1", "g", strategy, overrides=overrides)
        # An override cannot quietly turn a manual-commit strategy into auto-commit.
        assert (conf["enable.auto.commit"], conf["enable.auto.offset.store"]) == (False, False)
        assert conf["client.id"] == "me"
        assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    auto = consumer_config("h:1", "g", CommitStrategy.AUTO_COMMIT, from_beginning=False)
    assert (auto["enable.auto.commit"], auto["auto.offset.reset"]) == (True, "latest")
    assert [s.value for s in CommitStrategy] == [
        "auto-commit",
        "commit-before-process",
        "commit-after-process",
    ]


def test_commit_before_process_refuses_retries() -> None:
    with pytest.raises(ValueError, match="one attempt"):
        RecordConsumer(
            "127.0.0.1:1", "g", ["t"], lambda m: None, strategy=CommitStrategy.AT_MOST_ONCE, max_attempts=3
        )
