"""One local run per machine, and what a dead run left behind.

A local run owns the machine: its servers bind fixed ports and its floor and blocks measure a quiet
machine. `MachineLock` is an flock(2) on `<runtime dir>/local-run.lock` (the runtime dir is
$ORCHBENCH_RUNTIME_DIR, else $XDG_RUNTIME_DIR/orchbench, else /tmp/orchbench-<uid>). The kernel
releases it however the holder ends, SIGKILL included, so a stale lock never blocks a new run. A
second run meanwhile is refused in one line before it starts anything (or waits, with --wait).

Beside the lock, `holder.json` names the run that holds it (pid, start time, run folder); a run
that finishes removes it. A run that finds one when it gets the lock has found a run that died
without cleaning up, and cleans up after it (`cleanup_run`): from the dead run's deployment records,
every server still running under its recorded pid with the same command line and start time
(psutil) is stopped (SIGTERM to its process group, then SIGKILL), and so is any other process still
carrying the dead run's ORCHBENCH_OWNER (a step or load tester it started); its CPU plan goes.
Nothing else is touched. `orchbench cleanup [RUN_DIR]` does the same by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from orchbench.core.errors import PlatformError
from orchbench.fsio import write_text
from serving.lease import OWNER_ENV, owner_value, parse_owner

__all__ = [
    "Cleanup",
    "MachineBusy",
    "MachineLock",
    "cleanup_run",
    "holder",
    "runtime_dir",
]

LOCK_FILE = "local-run.lock"
HOLDER_FILE = "holder.json"
CPU_PLAN_FILE = "cpu_plan.json"  # orchbench.core.platform.local_cpu.CPU_PLAN_FILE
_GRACE_S = 5.0


class MachineBusy(PlatformError):
    """Another local run holds this machine."""


def runtime_dir() -> Path:
    base = os.environ.get("ORCHBENCH_RUNTIME_DIR")
    if base:
        path = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "orchbench"
    else:
        path = Path("/tmp") / f"orchbench-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def holder(folder: Path | None = None) -> dict[str, Any] | None:
    """The run named in holder.json (it holds the lock, or died holding it), or None."""
    path = (folder or runtime_dir()) / HOLDER_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another orchbench run"
    return f"orchbench run pid {info.get('pid')} ({info.get('run_dir')})"


@dataclass
class MachineLock:
    """flock on the runtime dir's lock file; `acquire` returns what the previous, dead run left."""

    folder: Path = field(default_factory=runtime_dir)
    fd: int | None = None

    def acquire(self, run_dir: Path, wait: bool = False, on_wait: Any = None) -> dict[str, Any] | None:
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = holder(self.folder)
                if not wait:
                    raise MachineBusy(
                        f"{_describe(info)} holds this machine (lock {self.folder / LOCK_FILE}); "
                        "wait for it to finish, or pass --wait"
                    ) from None
                if on_wait is not None:
                    on_wait(f"waiting for {_describe(info)} to finish")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        previous = holder(self.folder)
        mine = {
            "pid": os.getpid(),
            "owner": owner_value(),
            "run_dir": str(run_dir),
            "started_at": time.time(),
        }
        write_text(self.folder / HOLDER_FILE, json.dumps(mine))
        return previous

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            (self.folder / HOLDER_FILE).unlink()
        os.close(self.fd)  # closing the only fd of the open file releases the flock
        self.fd = None

    def __enter__(self) -> MachineLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------------------------------
# cleaning up after a run that died


@dataclass
class Cleanup:
    run_dir: Path
    stopped: list[str] = field(default_factory=list)  # "role pid N"
    untainted: bool = False

    def summary(self) -> str:
        what = ", ".join(self.stopped) if self.stopped else "no process was still running"
        plan = "; removed its CPU plan" if self.untainted else ""
        return f"{self.run_dir}: {what}{plan}"


def _matches(proc: psutil.Process, cmdline: list[str], starttime_ticks: int | None) -> bool:
    """The process is the one recorded: same command line and start time (clock ticks since boot)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE or proc.cmdline() != cmdline:
            return False
        if starttime_ticks is None:
            return False
        recorded = psutil.boot_time() + starttime_ticks / os.sysconf("SC_CLK_TCK")
        return abs(proc.create_time() - recorded) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _stop(procs: list[tuple[psutil.Process, str, bool]]) -> list[str]:
    """SIGTERM each (its process group when it leads one), wait, then SIGKILL what is left."""
    stopped: list[str] = []
    for proc, what, group in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        stopped.append(what)
    _gone, alive = psutil.wait_procs([p for p, _, _ in procs], timeout=_GRACE_S)
    for proc in alive:
        group = next(g for p, _, g in procs if p.pid == proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
    psutil.wait_procs(alive, timeout=_GRACE_S)
    return stopped


def _records(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((run_dir / "state" / "deploy").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and data.get("platform") == "local":
                out.append(data)
    return out


def cleanup_run(run_dir: Path, owner: str | None = None) -> Cleanup:
    """Stop what the (dead) run in `run_dir` left running and remove its CPU plan. `owner` is the
    ORCHBENCH_OWNER value the run gave its processes (from holder.json), if known."""
    run_dir = Path(run_dir)
    result = Cleanup(run_dir)
    parsed = parse_owner(owner)
    if parsed is not None and parsed[0] != os.getpid():
        with contextlib.suppress(psutil.Error):
            me = psutil.Process(parsed[0])
            if abs(me.create_time() - (psutil.boot_time() + parsed[1] / os.sysconf("SC_CLK_TCK"))) < 0.05:
                raise PlatformError(f"{run_dir}: its run (pid {parsed[0]}) is still running; stop it first")
    victims: list[tuple[psutil.Process, str, bool]] = []
    seen: set[int] = set()
    for rec in _records(run_dir):
        for p in (rec.get("details") or {}).get("processes") or []:
            try:
                proc = psutil.Process(int(p["pid"]))
            except (psutil.Error, KeyError, TypeError, ValueError):
                continue
            if _matches(proc, list(p.get("cmdline") or []), p.get("starttime")) and proc.pid not in seen:
                seen.add(proc.pid)
                victims.append(
                    (proc, f"{p.get('role', 'server')} pid {proc.pid}", int(p.get("pgid", -1)) == proc.pid)
                )
    if owner:
        for proc in psutil.process_iter(["pid"]):
            if proc.pid in seen or proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get(OWNER_ENV) != owner or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                name = " ".join(proc.cmdline()[:3])[:60]
            except (psutil.Error, OSError):
                continue
            seen.add(proc.pid)
            victims.append((proc, f"{name} pid {proc.pid}", False))
    result.stopped = _stop(victims)
    plan = run_dir / CPU_PLAN_FILE
    if plan.exists():
        with contextlib.suppress(OSError):
            plan.unlink()
            result.untainted = True
    return result
