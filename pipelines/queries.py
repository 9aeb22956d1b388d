"""One streaming-query lifecycle for every pipeline, job and `make run`: a QueryGroup.

A job is a named group of streaming queries that start together (if one fails to start, the ones
already started are stopped), run under one `--trigger`, are awaited together and stopped together,
and report what they did through their progress: input rows, Spark's state-operator metrics and the
observed metrics (`observe_records`) that ride along with every micro-batch, exact per batch.

    group = QueryGroup("orders_to_shipments", trigger="available-now")
    with group.starting():
        group.add("shipments", start_kafka_sink(..., trigger=group.trigger,
                                                query_name=group.query_name("shipments")))
    group.await_termination()          # available-now: until each query is done; else until one stops
    group.observed("shipments", "orders", "read")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipelines.triggers import is_available_now, is_real_time, trigger_kwargs

POLL_S = 0.5
"""How long `await_termination` blocks on one query of a running group before it looks at the next."""


def observe_records(df: DataFrame, name: str, *, heartbeats: bool = False) -> DataFrame:
    """`df` (parse output) with observed metrics `name`: `read` (every record), `dead_lettered`
    (records with an `error_reason`) and, with `heartbeats`, `heartbeats`. Observed metrics are
    exact per batch and reported in the query's progress (`QueryGroup.observed`)."""
    metrics = [
        F.count(F.lit(1)).alias("read"),
        F.sum(F.col("error_reason").isNotNull().cast("long")).alias("dead_lettered"),
    ]
    if heartbeats:
        metrics.append(F.sum(F.col("is_heartbeat").cast("long")).alias("heartbeats"))
    return df.observe(name, *metrics)


class QueryGroup:
    """The streaming queries of one job run, by name (`shipments`, `dlq`, `delta`, ...)."""

    def __init__(self, job: str, trigger: str) -> None:
        """`trigger` is a `--trigger` value (`pipelines.triggers`); an unknown one raises
        PipelinesError here, before anything starts."""
        self.job = job
        self.trigger_spec = trigger
        self.trigger: dict[str, Any] = trigger_kwargs(trigger)
        self.queries: dict[str, StreamingQuery] = {}

    @property
    def available_now(self) -> bool:
        """True when the queries process what their sources hold and then stop by themselves."""
        return is_available_now(self.trigger_spec)

    @property
    def real_time(self) -> bool:
        """True in Spark's real-time mode (long-running tasks, one record at a time)."""
        return is_real_time(self.trigger_spec)

    def query_name(self, name: str) -> str:
        """The Spark query name of the group's query `name`: `<job>_<name>`."""
        return f"{self.job}_{name}"

    @contextmanager
    def starting(self) -> Iterator[QueryGroup]:
        """Start queries inside: if anything raises, the queries started so far are stopped."""
        try:
            yield self
        except BaseException:
            self.stop(raise_errors=False)
            raise

    def add(self, name: str, query: StreamingQuery) -> StreamingQuery:
        self.queries[name] = query
        return query

    def __getitem__(self, name: str) -> StreamingQuery:
        return self.queries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.queries

    def __iter__(self) -> Iterator[str]:
        return iter(self.queries)

    def __len__(self) -> int:
        return len(self.queries)

    def values(self) -> list[StreamingQuery]:
        return list(self.queries.values())

    def await_termination(self) -> None:
        """Wait, then stop every query. Available-now: until each query has processed what its
        source held and stopped. Otherwise: until any query stops (Ctrl-C, `stop()` from another
        thread) or fails. A query's failure is re-raised (StreamingQueryException)."""
        try:
            if self.available_now:
                for query in self.queries.values():
                    query.awaitTermination()
            else:
                self._await_any()
        finally:
            self.stop()

    def _await_any(self) -> None:
        while self.queries:
            for query in self.queries.values():
                # pyspark takes float seconds here too (it waits int(timeout * 1000) ms).
                if query.awaitTermination(POLL_S / len(self.queries)):  # type: ignore[arg-type]
                    return

    def process_all_available(self) -> None:
        """Block until every query has processed what its source holds now (running triggers)."""
        for query in self.queries.values():
            query.processAllAvailable()

    def stop(self, *, raise_errors: bool = True) -> None:
        """Stop every query, each one even if stopping another fails (the first error is raised)."""
        errors: list[BaseException] = []
        for query in self.queries.values():
            try:
                query.stop()
            except Exception as exc:  # stop the others before reporting it
                errors.append(exc)
        if errors and raise_errors:
            raise errors[0]

    def progress(self, name: str) -> list[dict[str, Any]]:
        """The progress of every batch query `name` reported that the session still keeps
        (`spark.sql.streaming.numRecentProgressUpdates`, which the project's sessions set), as dicts."""
        return [json.loads(p.json) for p in self.queries[name].recentProgress]

    def input_rows(self, name: str) -> int:
        """Records query `name` read, summed over its reported batches."""
        return sum(int(p.get("numInputRows") or 0) for p in self.progress(name))

    def observed(self, name: str, metrics: str, metric: str) -> int:
        """The observed metric `metrics.metric` of query `name`, summed over its reported batches."""
        return sum(
            int((p.get("observedMetrics") or {}).get(metrics, {}).get(metric) or 0)
            for p in self.progress(name)
        )

    def state_metric(self, name: str, metric: str) -> int:
        """A state-operator metric of query `name` (e.g. `numRowsDroppedByWatermark`), summed over
        its reported batches and operators."""
        return sum(
            int(op.get(metric) or 0) for p in self.progress(name) for op in p.get("stateOperators") or []
        )
