"""Ctrl-C while streaming queries run in this process: stop them cleanly, then end as interrupted.

PySpark installs its own SIGINT handler when the SparkContext starts; it calls into the JVM from
inside the handler, which collides with the py4j call the main thread is blocked in (for example
`processAllAvailable()`), and the terminal fills with py4j tracebacks. `StopQueriesOnInterrupt`
replaces it for the block it guards: the first Ctrl-C stops every active query from a helper
thread (the main thread's wait then returns), and the block ends in `KeyboardInterrupt`, which the
`pipelines` command turns into "interrupted" and exit status 130. A second Ctrl-C does not wait.

The JVM itself ignores SIGINT (PySpark starts it that way), so it lives until `spark.stop()`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from rich.console import Console


class StopQueriesOnInterrupt:
    """Context manager; see the module docstring. `check()` raises KeyboardInterrupt once a Ctrl-C
    has been received, for code between waits."""

    def __init__(self, spark: Any, console: Console | None = None) -> None:
        self._spark = spark
        self._console = console or Console(stderr=True)
        self._interrupted = threading.Event()
        self._stopper: threading.Thread | None = None

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def __enter__(self) -> StopQueriesOnInterrupt:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if threading.current_thread() is threading.main_thread():
            # Not PySpark's handler again: after the block a Ctrl-C is a plain KeyboardInterrupt.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.interrupted:
            if self._stopper is not None:
                self._stopper.join(timeout=60)
            # Whatever the stopped queries raised on the way out is a consequence of the Ctrl-C.
            raise KeyboardInterrupt from None

    def check(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # the second Ctrl-C: do not wait for the queries
        self._interrupted.set()
        self._console.print("interrupted: stopping the Spark queries (Ctrl-C again to quit at once)")
        self._stopper = threading.Thread(target=self._stop_queries, name="stop-queries", daemon=True)
        self._stopper.start()

    def _stop_queries(self) -> None:
        # A query stopped mid-batch makes Spark log every write it aborts, and py4j every Python
        # callback it cut short: expected on Ctrl-C, so they go to the log file, not the terminal.
        # (From this thread: a JVM call inside the signal handler would collide with the main one.)
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):
            context = self._spark._jvm.org.apache.logging.log4j.LogManager.getContext(False)
            context.getConfiguration().getRootLogger().removeAppender("console")
            context.updateLoggers()
        for query in list(self._spark.streams.active):
            with contextlib.suppress(Exception):  # already stopping, or failed: either way it ends
                query.stop()
