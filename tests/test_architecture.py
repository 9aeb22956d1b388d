"""The layout's rules, checked on the source (docs/architecture.md): what each layer may import,
thin job entry points, and a repository that cites only documents it contains."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipelines"
JOBS = ("sales_to_delta", "revenue_per_minute", "orders_to_shipments", "customer_order_counts")


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (also inside functions and TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def top(module: str) -> str:
    return module.split(".")[0]


STDLIB_OK = {"__future__", "dataclasses", "typing", "collections", "re", "json", "decimal", "datetime"}


@pytest.mark.parametrize("path", modules_under(PACKAGE / "contracts"), ids=lambda p: p.name)
def test_contracts_import_nothing_of_the_project(path: Path) -> None:
    project = {
        m for m in imports_of(path) if top(m) == "pipelines" and not m.startswith("pipelines.contracts")
    }
    assert project == set(), f"{path.name} imports {project}: the contracts must stand alone"
    others = {top(m) for m in imports_of(path)} - STDLIB_OK - {"pipelines", "pyspark"}
    assert others == set(), f"{path.name} imports {others}"


@pytest.mark.parametrize("path", modules_under(PACKAGE / "transforms"), ids=lambda p: p.name)
def test_spark_transforms_import_only_contracts_and_pyspark(path: Path) -> None:
    """Pure DataFrame -> DataFrame code: no Kafka client, no sources or sinks, no sessions."""
    imported = imports_of(path)
    project = {m for m in imported if top(m) == "pipelines"}
    allowed = {m for m in project if m.startswith(("pipelines.contracts", "pipelines.transforms"))}
    assert project == allowed, f"{path.name} imports {project - allowed}"
    assert {top(m) for m in imported} <= STDLIB_OK | {"pipelines", "pyspark"}, imported


def test_the_processor_transform_is_pure_python() -> None:
    imported = imports_of(PACKAGE / "processor" / "shipments.py")
    assert {top(m) for m in imported} <= STDLIB_OK | {"pipelines"}
    assert {m for m in imported if top(m) == "pipelines"} == {"pipelines.contracts"}


def test_the_kafka_toolkit_does_not_depend_on_spark_or_the_pipelines() -> None:
    for path in modules_under(PACKAGE / "kafka"):
        imported = imports_of(path)
        assert not {m for m in imported if top(m) == "pyspark"}, path.name
        wiring = {
            m for m in imported if m.startswith(("pipelines.jobs", "pipelines.processor", "pipelines.demo"))
        }
        assert wiring == set(), f"{path.name} imports {wiring}"


def test_monitoring_does_not_import_the_pipelines() -> None:
    for path in modules_under(PACKAGE / "monitor"):
        assert not {m for m in imports_of(path) if m.startswith("pipelines.jobs")}, path.name


@pytest.mark.parametrize("job", JOBS)
def test_job_entry_points_are_thin(job: str) -> None:
    """`jobs/<name>.py` only runs `pipelines.jobs.<name>.main`: two hops from a job to its transforms."""
    path = ROOT / "jobs" / f"{job}.py"
    assert imports_of(path) == {"sys", f"pipelines.jobs.{job}"}
    assert len(path.read_text().splitlines()) <= 40


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:  # not a git checkout (an sdist): every file below the root
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def test_every_cited_document_is_in_the_repository() -> None:
    """A clone must be able to follow every reference: docs/*.md and the README, nothing outside."""
    # Documents are named in capitals (README.md) or live in docs/; other *.md names
    # are files the project writes (report.md, bench/results/latest.md).
    cited = re.compile(r"\b([A-Z][A-Z_-]+\.md|docs/[\w/-]+\.md)\b")
    missing = []
    for path in tracked_files():
        if path.suffix not in (".py", ".md", ".yaml", ".toml", ".sh") and path.name != "Makefile":
            continue
        for name in set(cited.findall(path.read_text(errors="replace"))):
            candidates = [ROOT / name, path.parent / name, ROOT / "docs" / name]
            if not any(c.is_file() for c in candidates):
                missing.append(f"{path.relative_to(ROOT)} cites {name}")
    assert missing == []


def test_no_formatter_escapes_in_the_package_and_jobs() -> None:
    escaped = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in (PACKAGE, ROOT / "jobs")
        for path in modules_under(folder)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: skip" in line or "fmt: off" in line
    ]
    assert escaped == []
