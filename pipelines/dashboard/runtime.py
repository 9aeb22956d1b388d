"""What `pipelines dashboard` hands the Streamlit page, which runs in the same process: the Monitor
and the refresh interval. (Streamlit executes the page as a script of its own; the modules it
imports, this one included, are the process's.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.dashboard.sources import Monitor

_MONITOR: list[Monitor] = []
_REFRESH_S = [3.0]


def configure(monitor: Monitor, refresh_s: float) -> None:
    _MONITOR[:] = [monitor]
    _REFRESH_S[0] = refresh_s


def monitor() -> Monitor:
    if not _MONITOR:
        raise RuntimeError("the dashboard page runs inside `pipelines dashboard`, not on its own")
    return _MONITOR[0]


def refresh_s() -> float:
    return _REFRESH_S[0]
