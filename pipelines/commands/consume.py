"""`pipelines consume TOPIC`: print a topic's records readably, one per line."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Annotated

import typer

from pipelines.commands.common import BootstrapOpt, ProfileOpt, bootstrap_servers, err, settings_for
from pipelines.errors import PipelinesError

consume_app = typer.Typer()


class _OutputClosed(BaseException):
    """stdout's reader went away (`| head`): stop without retrying, dead-lettering or a traceback.

    A BaseException so the record loop does not count it as a failed record."""


@consume_app.command("consume")
def consume(
    topic: Annotated[str, typer.Argument(help="topic to read")],
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--from-end",
            help="start at the oldest record or at the end (with --group: where it has no committed offset)",
        ),
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="stop after N records (default: until Ctrl-C)")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", "-g", help="read as a member of this consumer group, committing after printing"
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.1, help="stop when no record arrives for this many seconds"),
    ] = None,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "local",
) -> None:
    """Print records: partition, offset, timestamp, key, value and headers, one record per line.

    Text is shown as text (control characters escaped); a value or key that is not UTF-8 is shown
    as an escaped b'...' literal. Without --group nothing is committed and no group is joined.
    """
    from pipelines.kafka.admin import admin_client

    servers = bootstrap_servers(settings_for(profile), bootstrap)
    found = admin_client(servers).list_topics(topic=topic, timeout=15).topics.get(topic)
    if found is None or found.error is not None:
        raise PipelinesError(f"topic {topic!r} does not exist (`pipelines topics list` shows the topics)")
    started = time.monotonic()
    tally = _Tally()
    try:
        if group is None:
            how = _read_outside_group(servers, topic, from_beginning, count, timeout, tally)
        else:
            how = _read_in_group(servers, topic, group, from_beginning, count, timeout, tally)
    except _OutputClosed:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    except KeyboardInterrupt:
        how = "interrupted"
    err.print(
        f"{tally.shown} records from {topic} in {time.monotonic() - started:.1f} s ({how})"
        + (f"; offsets committed for group {group}" if group else ""),
        highlight=False,
    )


@dataclass
class _Tally:
    shown: int = 0

    def emit(self, line: str) -> None:
        try:
            print(line, flush=True)
        except BrokenPipeError:
            raise _OutputClosed() from None
        self.shown += 1


def _read_outside_group(
    servers: str, topic: str, from_beginning: bool, count: int | None, timeout: float | None, tally: _Tally
) -> str:
    from pipelines.kafka.consumer import assign_all, format_record

    consumer = assign_all(servers, topic, from_beginning=from_beginning)
    last = time.monotonic()
    try:
        while count is None or tally.shown < count:
            msg = consumer.poll(0.2)
            if msg is None:
                if timeout is not None and time.monotonic() - last >= timeout:
                    return f"no record for {timeout:g} s"
                continue
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise PipelinesError(f"consumer failed: {error.str()}")
                continue
            tally.emit(format_record(msg))
            last = time.monotonic()
        return "count reached"
    finally:
        consumer.close()


def _read_in_group(
    servers: str,
    topic: str,
    group: str,
    from_beginning: bool,
    count: int | None,
    timeout: float | None,
    tally: _Tally,
) -> str:
    from confluent_kafka import Message

    from pipelines.kafka.consumer import CommitStrategy, RecordConsumer, format_record

    def show(msg: Message) -> None:
        tally.emit(format_record(msg))

    # Commit-after-process: a record counts as read once printed; Ctrl-C commits what was shown.
    with RecordConsumer(
        servers,
        group,
        [topic],
        show,
        strategy=CommitStrategy.AT_LEAST_ONCE,
        max_attempts=1,
        commit_every=100,
        from_beginning=from_beginning,
    ) as consumer:
        consumer.run(max_records=count, idle_timeout_s=timeout)
    if count is not None and tally.shown >= count:
        return "count reached"
    return f"no record for {timeout:g} s"
