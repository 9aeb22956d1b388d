"""`--format avro` for the Spark jobs: the options, and the read plan kept across restarts.

A job reading Avro reads its plan from the registry before its queries start
(`pipelines.registry.spark.read_plan`). When a record of a schema registered later arrives, its
queries fail with that id; `AvroPlans.renew` reads the plan again with it and the job starts its
queries again from their checkpoints, so nothing is lost and nothing is read twice (the failed
micro-batch was not committed). Each new id costs one restart, a few seconds. An id the registry
does not have (a positive id of another registry) costs one restart too, per run of the job: the
new plan knows it as unknown and its records are dead-lettered (`avro_unknown_schema_id`).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Generic, TypeVar

from pipelines.config import Settings
from pipelines.errors import PipelinesError
from pipelines.queries import QueryGroup
from pipelines.registry.local import URL_ENV, registry_url
from pipelines.registry.schemas import SchemaStore, contract_schema
from pipelines.registry.spark import new_schema_id, read_plan
from pipelines.transforms.avro import AvroReadPlan

FORMAT_ENV = "PIPELINES_FORMAT"
FORMATS = ("json", "avro")
T = TypeVar("T")


def add_format_options(p: argparse.ArgumentParser) -> None:
    """`--format json|avro` and `--registry-url` (defaults: $PIPELINES_FORMAT, else json; and
    $PIPELINES_SCHEMA_REGISTRY_URL, else the local registry)."""
    p.add_argument(
        "--format",
        dest="value_format",
        choices=FORMATS,
        default=None,
        help=f"json (default; also ${FORMAT_ENV}) or avro: the Confluent wire format, every registered "
        "version of the topic's schema read into the contract's",
    )
    p.add_argument(
        "--registry-url",
        default=None,
        help=f"with --format avro: a Confluent-compatible schema registry API (default: ${URL_ENV}, "
        "else the local registry of `pipelines registry start`)",
    )


def resolve_format(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """`--format`, else $PIPELINES_FORMAT, else json (PipelinesError for another value)."""
    value = args.value_format or environ.get(FORMAT_ENV) or "json"
    if value not in FORMATS:
        raise PipelinesError(f"${FORMAT_ENV} must be json or avro, not {value!r}")
    args.value_format = value
    return str(value)


def job_format(job: str, args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """`resolve_format` for a job's entry point, before anything starts: a bad $PIPELINES_FORMAT
    is one line on stderr and exit status 2, like every other setup error of a job."""
    try:
        return resolve_format(args, environ)
    except PipelinesError as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class AvroPlans:
    """The job's read plan (None for JSON), renewed when a newer schema id fails its queries."""

    def __init__(self, store: SchemaStore | None = None, reader: str | None = None) -> None:
        self.store = store
        self.reader = reader
        self.seen: set[int] = set()
        self.plan: AvroReadPlan | None = None
        if store is not None and reader is not None:
            self.plan = read_plan(store, reader)

    @classmethod
    def for_args(
        cls, args: argparse.Namespace, settings: Settings, environ: Mapping[str, str], event_type: str
    ) -> AvroPlans:
        if resolve_format(args, environ) != "avro":
            return cls()
        args.registry_url = registry_url(settings, args.registry_url, environ)
        return cls(SchemaStore(args.registry_url), contract_schema(event_type))

    def starter(self, start: Callable[..., T]) -> Callable[..., T]:
        """The job's start function, with the current plan."""
        return start if self.plan is None else partial(start, avro_plan=self.plan)

    def renew(self, failure: BaseException) -> bool:
        """True when `failure` is a record of a schema id newer than the plan, met for the first
        time: the plan is then read again with it (start the queries again)."""
        if self.plan is None or self.store is None or self.reader is None:
            return False
        new = new_schema_id(failure)
        if new is None or new in self.seen:
            return False
        self.seen.add(new)
        self.plan = read_plan(self.store, self.reader, self.seen)
        if new in self.plan.unknown:
            what = (
                f"schema id {new} is not in the registry at {self.store.url} (a record of another "
                "registry?): starting the queries again from their checkpoints, its records dead-lettered "
                "as avro_unknown_schema_id"
            )
        else:
            known = "readable" if new in self.plan.writers else "not readable"
            what = (
                f"schema id {new} was registered after the job started ({known}): starting the queries "
                "again from their checkpoints with it"
            )
        print(what, file=sys.stderr)
        return True


G = TypeVar("G", bound=QueryGroup)


class RenewingRun(Generic[G]):
    """Run a job's queries (`start(plans)` starts them) until they end, starting them again, from
    their checkpoints, each time they fail on a schema registered after their plan was read.
    `stop()` (another thread) ends the run; `groups` are the query groups started, in order."""

    def __init__(self, plans: AvroPlans, start: Callable[[AvroPlans], G]) -> None:
        self.plans = plans
        self.start = start
        self.groups: list[G] = []
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def current(self) -> G | None:
        return self.groups[-1] if self.groups else None

    def run(self) -> list[G]:
        while True:
            with self._lock:
                if self._stopping and self.groups:
                    return self.groups
                group = self.start(self.plans)
                self.groups.append(group)
            try:
                group.await_termination()
            except Exception as exc:
                if self._stopping or not self.plans.renew(exc):
                    raise
                continue
            return self.groups

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self.current is not None:
                self.current.stop()
