"""Where the project keeps its files: configuration profiles, resolved jars, local state.

The package is installed in editable mode from a clone (`make setup`), so the clone's root is the
parent of this package. Every path here can be overridden through the settings.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
JVM_MANIFEST_DIR = CONF_DIR / "jvm"
DEFAULT_JARS_DIR = PROJECT_ROOT / ".jars"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".pipelines"
JOBS_DIR = PROJECT_ROOT / "jobs"
