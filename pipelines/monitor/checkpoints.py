"""What a streaming query's checkpoint folder says about it."""

from __future__ import annotations

from pathlib import Path


def last_committed_batch(checkpoint: Path) -> int | None:
    """The id of the last micro-batch a query committed (its checkpoint's `commits/` log)."""
    commits = checkpoint / "commits"
    ids = [int(p.name) for p in commits.iterdir() if p.name.isdigit()] if commits.is_dir() else []
    return max(ids, default=None)
