"""A server started by a run lives only as long as that run: it watches the run's process (a lease).

Why a lease and not a parent-death signal (prctl PR_SET_PDEATHSIG): a server's parent is the deploy
step, which starts it and exits at once by design (every step is its own short-lived process), so a
parent-death signal would stop every server at the end of deploy. What the server must outlive is
the step; what it must not outlive is the run. `orchbench run` puts itself in the environment as
ORCHBENCH_OWNER=<pid>:<start time in clock ticks>, every process it starts inherits it, and a server
opens a pidfd on that process (Linux 5.3+): the fd becomes readable the moment the owner exits,
however it exits (SIGKILL included), and the server then shuts down as on SIGTERM. The pidfd sits in
the server's own event loop: no thread, no polling, nothing on the request path. The start time
guards against a recycled pid: an owner that is already gone (or whose pid now runs something else)
stops the server at once.

A server started by hand (`orchbench serve model`) has no owner and runs until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["OWNER_ENV", "owner_alive", "owner_value", "parse_owner", "watch_owner"]

OWNER_ENV = "ORCHBENCH_OWNER"


def _starttime(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def owner_value(pid: int | None = None) -> str:
    """ORCHBENCH_OWNER's value naming `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_starttime(pid)}"


def parse_owner(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    pid_text, _, start_text = value.partition(":")
    try:
        return int(pid_text), int(start_text)
    except ValueError:
        return None


def owner_alive(owner: tuple[int, int]) -> bool:
    return _starttime(owner[0]) == owner[1]


def watch_owner(loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> Callable[[], None]:
    """Call `on_gone()` (from the loop) when the ORCHBENCH_OWNER process exits; returns an undo.
    No owner in the environment: nothing is watched."""
    owner = parse_owner(os.environ.get(OWNER_ENV))
    if owner is None:
        return lambda: None
    try:
        fd = os.pidfd_open(owner[0])
    except (OSError, AttributeError):
        fd = None
    if not owner_alive(owner):  # checked after opening: the pidfd is of the right process, or it is gone
        if fd is not None:
            os.close(fd)
        loop.call_soon(on_gone)
        return lambda: None
    if fd is None:  # no pidfd (old kernel): poll the owner's start time, twice a second
        handle: list[asyncio.TimerHandle] = []

        def poll() -> None:
            if owner_alive(owner):
                handle[:] = [loop.call_later(0.5, poll)]
            else:
                on_gone()

        handle.append(loop.call_later(0.5, poll))

        def cancel() -> None:
            for h in handle:
                h.cancel()

        return cancel

    open_fd = [fd]

    def undo() -> None:
        if open_fd:
            with contextlib.suppress(Exception):
                loop.remove_reader(open_fd[0])
            with contextlib.suppress(OSError):
                os.close(open_fd.pop())

    def readable() -> None:
        undo()
        on_gone()

    loop.add_reader(fd, readable)
    return undo
