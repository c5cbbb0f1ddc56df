"""Process supervision for the local platform: what the record of a spawned server lets later steps
check (the pid still runs the process we started: same cmdline and start time), reaping, log tails,
killing what a failed deploy spawned, and holding signals while a record is unsaved."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 15


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_ours(proc: dict[str, Any]) -> bool:
    """The recorded process still runs under its pid (same start time and cmdline), not a zombie."""
    pid = int(proc["pid"])
    if proc_state(pid) in (None, "Z", "X"):
        return False
    return proc_starttime(pid) == proc.get("starttime") and proc_cmdline(pid) == proc["cmdline"]


#: Popen objects of the servers this process started (kept so their exit codes are not lost).
CHILDREN: dict[int, Any] = {}


def reap(pid: int) -> int | None:
    """Reap `pid` if it is our exited child; its exit code (negative signal) or None."""
    child = CHILDREN.get(pid)
    if child is not None:
        return child.poll()
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def is_gone(proc: dict[str, Any]) -> bool:
    """The recorded process has exited (reaped, a zombie, or its pid now belongs to another process)."""
    pid = int(proc["pid"])
    reap(pid)
    return proc_state(pid) in (None, "Z", "X") or proc_starttime(pid) != proc.get("starttime")


def exit_note(proc: dict[str, Any]) -> str:
    code = reap(int(proc["pid"]))
    child = CHILDREN.get(int(proc["pid"]))
    if code is None and child is not None:  # our child, still exiting (its cmdline already gone)
        with contextlib.suppress(Exception):
            code = child.wait(1.0)
    if code is None:
        exit_file = Path(proc["log"]).with_suffix(".exit")
        with contextlib.suppress(OSError, ValueError):
            code = int(exit_file.read_text().strip())
    return "exit code unknown" if code is None else f"exit code {code}"


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return " | ".join(tail) if tail else "(empty log)"


def kill_spawned(pids: list[int]) -> None:
    """SIGKILL the process groups of servers this process just started (and reap them)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for pid in pids:
        child = CHILDREN.get(pid)
        if child is not None:
            with contextlib.suppress(Exception):
                child.wait(5.0)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while servers are spawned and recorded: a KeyboardInterrupt raised
    inside Popen (after the fork, before it returns) would leave a server nobody knows about. The
    signal takes effect, as KeyboardInterrupt, once the record is on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, _frame: got.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt(f"{signal.Signals(got[0]).name} while deploying")


@contextlib.contextmanager
def kill_on_error(procs: list[dict[str, Any]]) -> Iterator[None]:
    """Servers spawned before a failure that kept their record from being written are stopped here:
    nothing else would ever know about them."""
    try:
        yield
    except BaseException:
        kill_spawned([int(p["pid"]) for p in procs])
        raise


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port. SO_REUSEADDR as the servers use it: a port whose last
    connections are in TIME_WAIT is free (Linux still refuses it while a socket listens there)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
