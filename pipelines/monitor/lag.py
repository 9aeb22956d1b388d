"""Lag of Spark streaming queries, computed from their checkpoints.

Spark's kafka source keeps its offsets in the query's checkpoint, never in a consumer group, so
`kafka-consumer-groups` and every lag tool built on groups show nothing for a Spark job — the gap
users complain about most. A checkpoint holds, for every micro-batch, the offsets it read up to
(`offsets/<batch>`, one JSON line per source: `{"topic": {"0": 42, ...}}`) and, once the batch is
done, a marker in `commits/<batch>`. The lag of a partition is its log-end offset minus the offset
of the last committed batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.monitor.checkpoints import last_committed_batch

MAX_DEPTH = 4


@dataclass(frozen=True)
class QueryOffsets:
    """What a query's checkpoint says it has processed."""

    checkpoint: Path
    batch: int | None
    offsets: dict[str, dict[int, int]]
    """topic -> partition -> next offset to read (everything before it is processed)."""
    watermark_ms: int | None


def find_checkpoints(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Query checkpoints below `root`: folders with an `offsets/` and a `metadata` file."""

    def walk(folder: Path, depth: int) -> Iterator[Path]:
        if (folder / "offsets").is_dir() and (folder / "metadata").is_file():
            yield folder
            return
        if depth >= max_depth:
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            yield from walk(child, depth + 1)

    return list(walk(root, 0)) if root.is_dir() else []


def read_query_offsets(checkpoint: Path) -> QueryOffsets:
    """The offsets of the last committed batch of the query checkpointed at `checkpoint`."""
    batch = last_committed_batch(checkpoint)
    if batch is None:
        return QueryOffsets(checkpoint, None, {}, None)
    lines = (checkpoint / "offsets" / str(batch)).read_text().splitlines()
    offsets: dict[str, dict[int, int]] = {}
    watermark: int | None = None
    for line in lines[1:]:  # the first line is the log's version ("v1")
        doc = json.loads(line) if line.strip().startswith("{") else None
        if not isinstance(doc, dict):
            continue
        if "batchWatermarkMs" in doc:
            watermark = int(doc["batchWatermarkMs"])
            continue
        for topic, partitions in doc.items():
            if isinstance(partitions, dict):
                offsets.setdefault(topic, {}).update({int(p): int(o) for p, o in partitions.items()})
    return QueryOffsets(checkpoint, batch, offsets, watermark)


@dataclass(frozen=True)
class QueryLag:
    checkpoint: Path
    topic: str
    batch: int | None
    per_partition: dict[int, tuple[int, int, int]]
    """partition -> (processed up to, log end, lag)."""

    @property
    def total(self) -> int:
        return sum(lag for _, _, lag in self.per_partition.values())


def query_lag(offsets: QueryOffsets, log_ends: Mapping[str, Mapping[int, int]]) -> list[QueryLag]:
    """Lag per topic and partition of one query, given the topics' log-end offsets. A partition
    the query has not read yet (added since) counts from 0."""
    lags = []
    for topic, ends in sorted(log_ends.items()):
        done = offsets.offsets.get(topic, {})
        per = {p: (done.get(p, 0), end, max(end - done.get(p, 0), 0)) for p, end in sorted(ends.items())}
        lags.append(QueryLag(offsets.checkpoint, topic, offsets.batch, per))
    return lags


def latest_progress(progress_file: Path) -> dict[str, dict[str, object]]:
    """Query name -> its latest progress line from a ProgressRecorder JSON-lines file."""
    latest: dict[str, dict[str, object]] = {}
    if not progress_file.is_file():
        return latest
    for line in progress_file.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        latest[str(doc.get("query"))] = doc
    return latest
