"""The ledger: every event a generator sent, where the broker put it, and what it was meant to be.

It is the ground truth that tests and reconciliation compare a pipeline's output with. A file of
JSON lines, one per event sent, in the order the events were sent (`seq` 0, 1, 2, ...); wrapped
here, one line each in the file:

    {"seq":0,"partition":2,"offset":0,"key":"order-7-00000000","value":"{...}","kind":"valid"}
    {"seq":1,"partition":0,"offset":0,"key":"order-7-00000001","value":"{...}","kind":"late",
     "late_by_ms":300412}
    {"seq":2,"partition":1,"offset":0,"key":"order-7-00000002","value_base64":"gA==",
     "kind":"malformed","reason":"invalid_utf8"}
    {"seq":3,"partition":null,"offset":null,"key":"order-7-00000003","value":"{...}",
     "kind":"valid","error":"Local: Message timed out"}

- `partition`, `offset`: from the broker's delivery report; both null when delivery failed, and
  then `error` says why. The acknowledged entries are exactly the records the run added to the topic.
- `key`, `value`: the record's bytes as UTF-8 text; a key or value that is not valid UTF-8 is
  written as `key_base64` / `value_base64` instead, so every byte survives.
- `kind`: `valid`, `late` (with `late_by_ms`) or `malformed` (with `reason`, the code a parser
  should assign); see pipelines.generators.events.

The same seed and arguments sent to a fresh topic give the same ledger, byte for byte: partitions
follow the keys (murmur2) and, with the idempotent producer (the default), offsets follow the order
of sending within each partition.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from pipelines.generators.events import EventKind

_KINDS = ("valid", "late", "malformed")


@dataclass(frozen=True)
class LedgerEntry:
    """One event as sent, and its fate."""

    seq: int
    key: bytes | None
    value: bytes
    kind: EventKind
    partition: int | None = None
    offset: int | None = None
    reason: str | None = None
    late_by_ms: int | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        """The broker acknowledged it: it is in the topic at (partition, offset)."""
        return self.error is None and self.partition is not None and self.offset is not None

    def to_json(self) -> str:
        """The entry's ledger line (without the newline)."""
        line: dict[str, object] = {"seq": self.seq, "partition": self.partition, "offset": self.offset}
        line.update(_bytes_field("key", self.key))
        line.update(_bytes_field("value", self.value))
        line["kind"] = self.kind
        for name in ("reason", "late_by_ms", "error"):
            if getattr(self, name) is not None:
                line[name] = getattr(self, name)
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        """Parse one ledger line; raises ValueError when it is not one."""
        try:
            doc = json.loads(line)
            kind = doc["kind"]
            if kind not in _KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            value = _read_bytes(doc, "value")
            if value is None:
                raise ValueError("no value")
            return cls(
                seq=int(doc["seq"]),
                key=_read_bytes(doc, "key"),
                value=value,
                kind=cast(EventKind, kind),
                partition=doc["partition"],
                offset=doc["offset"],
                reason=doc.get("reason"),
                late_by_ms=doc.get("late_by_ms"),
                error=doc.get("error"),
            )
        except (KeyError, TypeError, ValueError) as exc:  # JSON, base64 and UTF-8 errors are ValueErrors
            raise ValueError(f"not a ledger line ({exc!r}): {line[:200]!r}") from None


def _bytes_field(name: str, data: bytes | None) -> dict[str, str | None]:
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _read_bytes(doc: dict[str, Any], name: str) -> bytes | None:
    if f"{name}_base64" in doc:
        return base64.b64decode(doc[f"{name}_base64"], validate=True)
    text = doc[name]
    return None if text is None else str(text).encode("utf-8")


def read_ledger(path: Path) -> list[LedgerEntry]:
    """All entries of a ledger file, in the order the events were sent (by `seq`)."""
    return sorted(iter_ledger(path), key=lambda e: e.seq)


def iter_ledger(path: Path) -> Iterator[LedgerEntry]:
    """The entries of a ledger file one by one, as they are written (for files too big to hold)."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield LedgerEntry.from_json(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: {exc}") from None


class LedgerWriter:
    """Writes entries to a ledger file in `seq` order, whatever order they arrive in.

    Delivery reports come back in order within a partition but interleaved across partitions, so
    entries wait here until every smaller `seq` has been written; only the events in flight are
    held. `close()` writes whatever still waits (there is a gap only if some sent event never got a
    report, which the producer loop rules out by reporting it as failed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] = path.open("w", encoding="utf-8")
        self._next = 0
        self._waiting: dict[int, LedgerEntry] = {}
        self.written = 0

    def add(self, entry: LedgerEntry) -> None:
        self._waiting[entry.seq] = entry
        while self._next in self._waiting:
            self._write(self._waiting.pop(self._next))
            self._next += 1

    def _write(self, entry: LedgerEntry) -> None:
        self._fh.write(entry.to_json() + "\n")
        self.written += 1

    def close(self) -> None:
        for seq in sorted(self._waiting):
            self._write(self._waiting.pop(seq))
        self._fh.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
