"""What the local launchers (the Kafka broker, the Kafka cluster, the Spark standalone cluster) share:
free loopback ports, whether a pid is still the daemon it was, starting a daemon in a session of
its own, stopping and killing it, and waiting for a condition or an answer with a deadline.

`Launcher` is their common base: the child processes the object started (so they can be reaped
and watched while starting), and its use as a context manager that stops only what it started.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Generic, Self, TypeVar

from pipelines.errors import PipelinesError

HOST = "127.0.0.1"
"""Every local daemon listens on loopback only."""

K = TypeVar("K")
S = TypeVar("S")
T = TypeVar("T")


# -- ports ------------------------------------------------------------------------------------
def free_port() -> int:
    """A port of HOST that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def first_taken(ports: Iterable[int]) -> int | None:
    """The first of `ports` that another process holds, or None when all are free."""
    return next((p for p in ports if not port_is_free(p)), None)


class PortPicker:
    """Hands out ports of HOST, each different from every port it handed out or reserved before."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def __call__(self, wanted: int | None = None) -> int:
        """`wanted` when given and not handed out yet, else a free port."""
        port = wanted if wanted is not None else free_port()
        while port in self.taken:
            port = free_port()
        return self.reserve(port)

    def reserve(self, port: int) -> int:
        """Count `port` as handed out (chosen elsewhere), so no later pick returns it."""
        self.taken.add(port)
        return port


# -- processes --------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not a running daemon.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def cmdline(pid: int) -> str:
    """The command line of process `pid`, its arguments joined by spaces ("" when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def runs(pid: int | None, *marks: str) -> bool:
    """True when process `pid` runs and its command line holds every one of `marks`: a pid that
    the system reused belongs to another program, whose command line does not."""
    if pid is None or not pid_alive(pid):
        return False
    line = cmdline(pid)
    return all(mark in line for mark in marks)


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait until process `pid` has exited, up to `timeout_s`; True if it did.

    Uses a pidfd, which becomes readable when the process ends, so nothing polls or sleeps.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        if readable:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return bool(readable) or not pid_alive(pid)
    finally:
        os.close(fd)


def spawn(
    cmd: Sequence[str], output: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` in `cwd` with what it prints appended to `output`.

    A session of its own: the daemon outlives the command that started it (`pipelines broker
    start`) and ignores the terminal's Ctrl-C, which is meant for the foreground command.
    """
    with output.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )


def terminate(pids: Sequence[int], timeout_s: float, *, kill_group: bool = False) -> None:
    """SIGTERM every one of `pids` at once and wait for them to exit, all within `timeout_s`; one
    still running then gets SIGKILL (its whole process group with `kill_group`)."""
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        if not wait_for_exit(pid, max(0.0, deadline - time.monotonic())):
            (os.killpg if kill_group else os.kill)(pid, signal.SIGKILL)
            wait_for_exit(pid, 10)


def sigkill(pid: int, *, group: bool = False, timeout_s: float = 30.0) -> bool:
    """SIGKILL process `pid` (its whole process group with `group`), as a crash would, and wait
    until it is gone; True if it exited within `timeout_s`."""
    (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    return wait_for_exit(pid, timeout_s)


# -- waiting ----------------------------------------------------------------------------------
def poll_until(attempt: Callable[[], T | None], timeout_s: float, every_s: float = 0.25) -> T | None:
    """Call `attempt` until it returns something other than None, at most every `every_s`, for up to
    `timeout_s`; its result, or None once the deadline passed. (A pacing interval, not a sleep that
    guesses how long something takes: the attempt decides.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        started = time.monotonic()
        result = attempt()
        if result is not None:
            return result
        if started > deadline:
            return None
        left = every_s - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)


def ask_until(
    ask: Callable[[float], bool],
    deadline: float,
    check: Callable[[], None] | None = None,
    *,
    most_s: float = 2.0,
) -> bool:
    """Call `ask(timeout_s)` until it returns True (then True) or the `deadline` (a time.monotonic()
    value) passes (then False). Each request blocks until it is answered or its timeout (at most
    `most_s`) passes, so the requests are the wait. `check()` runs before each request, to raise
    when a process being waited for has exited."""
    while True:
        if check is not None:
            check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if ask(min(most_s, max(remaining, 0.1))):
            return True


# -- files ------------------------------------------------------------------------------------
def last_lines(path: Path, lines: int) -> str:
    """The last `lines` lines of the log `path`, under a header naming it (for error messages)."""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {path} ---\n" + "\n".join(text)


def write_atomically(path: Path, text: str) -> None:
    """Write-then-rename: a reader never sees half a file, even if the writer is killed mid-write."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# -- the launchers' base ----------------------------------------------------------------------
class Launcher(Generic[K, S]):
    """A launcher of local daemons in `directory`, which records them in its state file.

    It keeps the daemons this object started, by key (reaped when they stop, watched while they
    start), and is a context manager: `with` starts, and on the way out stops only when this
    object did the starting. A subclass names its state file (`STATE_FILE`), what it launches
    (`KIND`, for messages) and its error class (`ERROR`), and parses its state (`_parse_state`).
    """

    STATE_FILE: ClassVar[str]
    KIND: ClassVar[str]
    ERROR: ClassVar[type[PipelinesError]] = PipelinesError

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._procs: dict[K, subprocess.Popen[bytes]] = {}
        self._started_here = False

    def start(self) -> tuple[S, bool]:
        raise NotImplementedError

    def stop(self) -> bool:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.directory / self.STATE_FILE

    def _parse_state(self, text: str) -> S:
        raise NotImplementedError

    def _unreadable(self, exc: Exception) -> str:
        """What to say, and to do, when the state file cannot be parsed."""
        raise NotImplementedError

    def read_state(self) -> S | None:
        """What the state file records; None before the first start."""
        if not self.state_file.is_file():
            return None
        try:
            return self._parse_state(self.state_file.read_text())
        except (ValueError, TypeError, KeyError) as exc:
            raise self.ERROR(self._unreadable(exc)) from None

    def _recorded_state(self) -> S:
        """`read_state()`, or the error saying that nothing was ever started here."""
        state = self.read_state()
        if state is None:
            raise self.ERROR(f"no {self.KIND} has been started in {self.directory}")
        return state

    # -- daemons ----------------------------------------------------------------------------
    def _require_free(self, ports: Iterable[int], owner: str, remedy: str) -> None:
        """The error naming the first of `ports` (those `owner` was set up to use) that another
        process holds, and `remedy`, what to do about it; nothing when all are free."""
        taken = first_taken(ports)
        if taken is not None:
            raise self.ERROR(
                f"port {taken} on {HOST} is taken by another process, and {owner} was set up to use "
                f"it. Free the port, or {remedy}."
            )

    def _spawn(
        self, key: K, cmd: Sequence[str], output: Path, cwd: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = spawn(cmd, output, cwd, env)
        self._procs[key] = proc
        return proc

    def _exited(self) -> Iterator[tuple[K, subprocess.Popen[bytes], int]]:
        """(key, process, exit code) of every daemon this object started that has exited since."""
        for key, proc in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                yield key, proc, code

    def _reap(self, key: K) -> None:
        proc = self._procs.pop(key, None)
        if proc is not None:
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()
            self._started_here = False
