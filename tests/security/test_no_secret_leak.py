"""No secret in anything the project wrote: the broker folder (configuration, logs, certificates,
data), the Spark logs, the checkpoints, Delta tables and progress files of the jobs run on the
secured broker, and the project's own log folder. The 0600 credentials file is the single place
that may hold the passwords. (Runs last in this folder, after the jobs have written their files.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.local.broker import LocalBroker
from pipelines.local.security import CREDENTIALS_FILE
from pipelines.paths import PROJECT_ROOT


def test_no_password_in_any_file_the_project_wrote(
    secure_broker: LocalBroker, secure_run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    creds = secure_broker.credentials()
    secrets = [s.encode() for s in creds.secrets()]
    allowed = secure_broker.directory / CREDENTIALS_FILE
    assert all(s in allowed.read_bytes() for s in secrets)  # the one place they are

    roots = [secure_broker.directory, secure_run_dir, PROJECT_ROOT / ".pipelines" / "logs"]
    roots += sorted(tmp_path_factory.getbasetemp().glob("spark-logs*"))  # the test session's Spark logs
    files = [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file() and p != allowed]
    names = {p.name for p in files}
    # The search covers what matters: broker log and config, format output, the jobs' progress
    # lines, checkpoint offsets and Spark's log (written by test_jobs_secure.py, which runs first).
    assert {"server.log", "server.properties", "format.log", "broker.json"} <= names
    assert {"revenue.progress.jsonl", "spark.log"} <= names, "run with tests/security/test_jobs_secure.py"
    assert any(p.parent.name == "offsets" for p in files), "no checkpoint offsets were searched"
    leaks = [(str(p), i) for p in files for i, s in enumerate(secrets) if s in p.read_bytes()]
    assert leaks == []

    # Nor on the broker's command line, which `ps` shows to every user of the machine.
    state = secure_broker.running()
    assert state is not None and state.pid is not None
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert not any(s in cmdline for s in secrets)
