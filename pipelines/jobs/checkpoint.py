"""A job's checkpoint folder is checked before Spark starts, so reusing one by mistake is one line.

Spark's own answers to a reused checkpoint are long stack traces, or worse, silence: a stateful
query restarted with another `--window` fails deep inside the state store, one restarted with
another topic fails on offsets it cannot map, and one restarted with another shuffle-partition
count keeps the checkpoint's count without a word. So every job writes `pipelines-job.json` into
its checkpoint folder on first use — the job, the topics it reads and the settings its state
depends on — and compares on every start (it is written once a query has committed a batch, so arguments Spark
refused are never recorded):

* made by another job, for another topic, or with another `--window`, `--watermark`, `--mode` or
  shuffle-partition count: refused, naming what differs and how to start fresh;
* a file Spark needs to resume that does not parse (the query's `metadata`, its newest `offsets/N`
  or `commits/N`, or `pipelines-job.json` itself): what a crash mid-write or a full disk leaves;
  refused, naming the file and what to do.

A checkpoint from before this file existed is checked against what Spark's own files say (the
query folders present, the topics in the newest offsets, the shuffle-partition count in their
`conf`) and then gets its `pipelines-job.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PipelinesError

MANIFEST = "pipelines-job.json"
SHUFFLE_PARTITIONS = "shuffle_partitions"
_OPTION = {"window": "--window", "watermark": "--watermark", "mode": "--mode", "topic": "the topic"}


class CheckpointError(PipelinesError):
    """The checkpoint folder belongs to another job or setting, or a file in it is damaged."""


def _fresh_start(checkpoint: Path) -> str:
    return (
        f"To start fresh, pass a new --checkpoint folder (this one keeps its state), or delete "
        f"{checkpoint} to process the topic again from --starting-offsets"
    )


def guard_checkpoint(
    checkpoint: Path,
    job: str,
    queries: Iterable[str],
    identity: Mapping[str, str],
    retired: Iterable[str] = (),
) -> None:
    """Refuse `checkpoint` unless it is new or was made by `job` with the same `identity` (topic,
    window, ...; `shuffle_partitions` is checked against Spark's own record too), and its files
    parse. `queries` are the query folders the job may have under it; `retired` the folders of
    queries an earlier release of the job ran and this one does not resume (refused, saying so).
    Records the identity on first use."""
    identity = dict(identity)
    folders = (
        [checkpoint, *sorted(p for p in checkpoint.iterdir() if p.is_dir())] if checkpoint.is_dir() else []
    )
    query_folders = [p for p in folders if (p / "metadata").exists() or (p / "offsets").is_dir()]
    for folder in query_folders:
        _check_files(folder, checkpoint)
    manifest = checkpoint / MANIFEST
    recorded = _read_json(manifest, checkpoint) if manifest.exists() else None
    if manifest.exists() and (not isinstance(recorded, dict) or "job" not in recorded):
        raise _damaged(manifest, checkpoint, "it is not the object pipelines wrote")
    # Made by this job: its manifest says so, or (from before the manifest) every query folder is
    # one of its own. Another job's checkpoint may hold a folder of a retired name (the revenue
    # job's `dlq`), which must never be called this job's to delete.
    named = [p.name for p in query_folders if p != checkpoint]
    ours = recorded["job"] == job if isinstance(recorded, dict) else set(named) <= {*queries, *retired}
    old = [name for name in named if name in set(retired)]
    if old and ours:
        raise CheckpointError(
            f"checkpoint {checkpoint} holds {_folders(old)}, a query of an earlier release of {job} "
            f"that this release does not run. If that query had caught up, delete {checkpoint / old[0]} "
            f"and start again; else finish the run with the earlier release first. {_fresh_start(checkpoint)}"
        )
    if isinstance(recorded, dict):
        _compare(checkpoint, job, identity, recorded.get("job"), recorded.get("identity") or {})
        return
    if query_folders:
        names = ["." if p == checkpoint else p.name for p in query_folders]
        others = [n for n in names if n not in set(queries)]
        if others:
            raise CheckpointError(
                f"checkpoint {checkpoint} holds {_folders(others)}, which {job} does not write: another "
                f"job made it. {_fresh_start(checkpoint)}"
            )
        _compare(checkpoint, job, identity, job, _identity_from_spark(query_folders, identity))


def record_checkpoint(checkpoint: Path, job: str, identity: Mapping[str, str]) -> bool:
    """Write `pipelines-job.json` once a query of the job has committed a batch in `checkpoint`
    (so arguments Spark refused never get recorded); True if written now."""
    manifest = checkpoint / MANIFEST
    folders = [checkpoint, *(p for p in checkpoint.iterdir() if p.is_dir())] if checkpoint.is_dir() else []
    if manifest.exists() or not any(_newest(p / "commits") for p in folders):
        return False
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"job": job, "identity": dict(identity)}, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest)
    return True


def _folders(names: list[str]) -> str:
    return "a query in the folder itself" if names == ["."] else "query folders " + ", ".join(names)


def _compare(
    checkpoint: Path, job: str, identity: Mapping[str, str], made_by: Any, recorded: Mapping[str, Any]
) -> None:
    if made_by != job:
        raise CheckpointError(
            f"checkpoint {checkpoint} was made by {made_by}, not {job}: two jobs must never share a "
            f"checkpoint. {_fresh_start(checkpoint)}"
        )
    differs = [
        (key, str(recorded[key]), str(value))
        for key, value in identity.items()
        if key in recorded and str(recorded[key]) != str(value)
    ]
    if not differs:
        return
    what = "; ".join(f"{_describe(key)} was {old!r}, this run has {new!r}" for key, old, new in differs)
    hint = ""
    if any(key == SHUFFLE_PARTITIONS for key, _o, _n in differs):
        old = next(o for k, o, _n in differs if k == SHUFFLE_PARTITIONS)
        hint = (
            f" Spark keeps a stateful query's partition count for the life of its checkpoint: set "
            f"PIPELINES_SPARK__SHUFFLE_PARTITIONS={old} to resume."
        )
    raise CheckpointError(
        f"checkpoint {checkpoint} was made by {job} with other settings: {what}; its state cannot be "
        f"carried over.{hint} {_fresh_start(checkpoint)}"
    )


def _describe(key: str) -> str:
    if key == SHUFFLE_PARTITIONS:
        return "the shuffle-partition count (spark.shuffle_partitions)"
    return _OPTION.get(key, f"--{key.replace('_', '-')}")


def _identity_from_spark(query_folders: list[Path], identity: Mapping[str, str]) -> dict[str, str]:
    """What Spark's files of an older checkpoint say about the keys of `identity` it can answer:
    the topic (from the newest offsets) and the shuffle-partition count (from their conf)."""
    found: dict[str, str] = {}
    for folder in query_folders:
        lines = _newest_lines(folder / "offsets")
        if len(lines) < 3:
            continue
        conf = (json.loads(lines[1]).get("conf") or {}) if lines[1].startswith("{") else {}
        if SHUFFLE_PARTITIONS in identity and "spark.sql.shuffle.partitions" in conf:
            found[SHUFFLE_PARTITIONS] = conf["spark.sql.shuffle.partitions"]
        if "topic" in identity:
            topics = sorted(t for line in lines[2:] for t in (json.loads(line) or {}))
            if topics:
                found["topic"] = ",".join(topics)
    return found


def _newest(log: Path) -> Path | None:
    ids = [int(p.name) for p in log.iterdir() if p.name.isdigit()] if log.is_dir() else []
    return log / str(max(ids)) if ids else None


def _newest_lines(log: Path) -> list[str]:
    newest = _newest(log)
    return newest.read_text(errors="replace").splitlines() if newest else []


def _check_files(folder: Path, checkpoint: Path) -> None:
    """The files Spark reads first when a query resumes: each must parse."""
    metadata = folder / "metadata"
    if metadata.exists():
        value = _read_json(metadata, checkpoint)
        if not isinstance(value, dict) or "id" not in value:
            raise _damaged(metadata, checkpoint, "it has no query id")
    for log, minimum in (("offsets", 3), ("commits", 2)):
        newest = _newest(folder / log)
        if newest is None:
            continue
        lines = newest.read_text(errors="replace").splitlines()
        if len(lines) < minimum or not lines[0].startswith("v"):
            raise _damaged(newest, checkpoint, "it is truncated", replay=True)
        for line in lines[1:]:
            try:
                json.loads(line)
            except ValueError:
                raise _damaged(newest, checkpoint, "a line of it is not JSON", replay=True) from None


def _read_json(path: Path, checkpoint: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise _damaged(path, checkpoint, "it is not valid JSON") from None


def _damaged(path: Path, checkpoint: Path, why: str, *, replay: bool = False) -> CheckpointError:
    # Hadoop's local file system keeps a checksum next to each file; a stale one makes Spark's
    # rewrite of the file fail, so it goes too.
    crc = path.with_name(f".{path.name}.crc")
    files = f"{path} {crc}" if crc.exists() else str(path)
    fix = (
        f"To resume, delete it (rm {files}) and run again: the query replays that batch (Delta sinks "
        "skip a batch they already committed; Kafka sinks may write it again)"
        if replay
        else _fresh_start(checkpoint)
    )
    return CheckpointError(
        f"checkpoint file {path} is damaged ({why}), as a crash while it was written or a full disk "
        f"leaves it. {fix}"
    )


@dataclass(frozen=True)
class CheckpointSpec:
    """What a job's checkpoint holds: its query folders (`"."`: the checkpoint is the query's own
    folder) and the settings its state depends on; `stateful` adds the shuffle-partition count."""

    queries: tuple[str, ...]
    identity: Mapping[str, str]
    stateful: bool = False
    retired: tuple[str, ...] = ()
    """Query folders of an earlier release of the job (see `guard_checkpoint`)."""
