"""Streaming query progress as JSON lines, with rows dropped as late counted per batch and in total.

`lastProgress` is only the last micro-batch (often an empty one), so counting late rows from it
loses most of them. `ProgressRecorder` is a StreamingQueryListener: it sees every progress event
of every query in the session and appends one JSON object per batch to a file:

    {"query": "revenue_per_minute_delta", "batch_id": 3, "timestamp": "...", "input_rows": 1000,
     "input_rows_per_second": ..., "processed_rows_per_second": ..., "batch_duration_ms": 812,
     "watermark": "2026-11-27T10:04:30.000Z", "dropped_by_watermark": 2,
     "dropped_by_watermark_total": 7, "state_rows": 14, "sink_output_rows": 12,
     "event_time_max": "2026-11-27T10:05:00.412Z", "observed": {"records": {"read": 1000, ...}}}

`observed` holds the batch's observed metrics (`pipelines.queries.observe_records`: records read,
dead-lettered, heartbeats), exact per batch: summed over a query's lines they are what the
dashboard (`pipelines dashboard`) reconciles, also for jobs that ran in another process.

Spark's `numRowsDroppedByWatermark` counts rows at the input of the stateful operator, which for
an aggregation is after partial aggregation: several late sales of one window and category in one
batch and partition count as one. The jobs therefore also reconcile late records exactly at the
end of a run (see `pipelines.flows`).

Nothing secret reaches the file or the log: every line passes through `pipelines.security.redact`,
which masks the passwords registered in the process (Spark's progress carries no source options
today; this keeps it so if a future version adds them).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from pipelines.security import redact

log = logging.getLogger("pipelines.progress")


def summarize_progress(progress: dict[str, Any]) -> dict[str, Any]:
    """The fields of one StreamingQueryProgress (as a dict) that operators look at."""
    state = progress.get("stateOperators") or []
    sink = progress.get("sink") or {}
    duration = progress.get("durationMs") or {}
    return {
        "query": progress.get("name"),
        "batch_id": progress.get("batchId"),
        "timestamp": progress.get("timestamp"),
        "input_rows": int(progress.get("numInputRows") or 0),
        "input_rows_per_second": float(progress.get("inputRowsPerSecond") or 0.0),
        "processed_rows_per_second": float(progress.get("processedRowsPerSecond") or 0.0),
        "batch_duration_ms": int(duration.get("triggerExecution") or 0),
        "watermark": (progress.get("eventTime") or {}).get("watermark"),
        "dropped_by_watermark": sum(int(s.get("numRowsDroppedByWatermark") or 0) for s in state),
        "state_rows": sum(int(s.get("numRowsTotal") or 0) for s in state),
        "sink_output_rows": int(sink.get("numOutputRows", -1)),
        "event_time_max": (progress.get("eventTime") or {}).get("max"),
        "observed": progress.get("observedMetrics") or {},
    }


class ProgressRecorder(StreamingQueryListener):
    """Appends every progress event of the session's queries to `path` as a JSON line, logs each
    batch, and keeps per-query totals of input rows and rows dropped by the watermark."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.dropped_total: dict[str, int] = {}
        self.input_total: dict[str, int] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def onQueryStarted(self, event: Any) -> None:
        log.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event: Any) -> None:
        record = summarize_progress(json.loads(event.progress.json))
        name = record["query"] or "unnamed"
        with self._lock:
            self.dropped_total[name] = self.dropped_total.get(name, 0) + record["dropped_by_watermark"]
            self.input_total[name] = self.input_total.get(name, 0) + record["input_rows"]
            record["dropped_by_watermark_total"] = self.dropped_total[name]
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(redact(json.dumps(record)) + "\n")
        if record["input_rows"] or record["dropped_by_watermark"]:
            log.info(
                "%s batch %s: %d rows in, %d dropped as late (%d in total), watermark %s",
                name,
                record["batch_id"],
                record["input_rows"],
                record["dropped_by_watermark"],
                self.dropped_total[name],
                record["watermark"],
            )

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            log.error("query %s failed: %s", event.id, redact(event.exception.splitlines()[0]))
