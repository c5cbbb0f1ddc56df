"""Warm step starts: a compiled workflow's `python -m hera.workflows.runner -e steps.x:f FILE` forked
from an interpreter that has already imported Hera's runner and the step modules, instead of a fresh
interpreter per step.

Why: a step's process spent ~1.3 s importing before its function ran (Hera's runner with its
pydantic models of Argo 0.8-0.96 s, the step modules 0.34-0.36 s, the compare step's pyarrow and
report code another 1.5 s), at every deploy, wait, load block and teardown: 7 step starts per
deployment replicate and transport of the default spec. Measured side by side in one session
(benchmarks/README.md, "Warm step starts"): see the figures there.

How: the standard library's forkserver (`multiprocessing`'s "forkserver" context) with those
modules preloaded; each step is a process forked from it, which then becomes what the fresh
interpreter would have been: its own session and process group, the template's environment (the
whole of it, not added to the forkserver's), the task's folder as its working directory and first
import path, stdout and stderr into the task's log files, SIGTERM when its parent (the forkserver,
which exits with the runner) dies, `sys.argv` as `python -m` sets it, Hera's runner's own entry
(`hera.workflows._runner.util._run`), then the exit handlers a normal exit runs and the exit code it
gives (1 with the traceback on stderr for an uncaught exception), no descriptor but 0-2 (as
close_fds gives), and its command line shown as that command (setproctitle). Forked from a server
that only imported (never ran a step), each step starts from the state a fresh import gives.

Only where it is the same thing: the template's command is `python` and the runner's interpreter is
the one the workflow would get (`sys.executable`), and its args are `-m hera.workflows.runner -e
ENTRY`. Anything else is started as its own process (pipelines/local_task.start_step).
`ORCHBENCH_WARM_STEPS=0` turns it off.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

import setproctitle
from hera.workflows._runner.util import _run as hera_runner  # what `-m hera.workflows.runner` runs

from orchbench.core.parentdeath import die_with_parent

#: What the forkserver imports once (every step module of the workflows orchbench compiles).
PRELOAD = [
    "hera.workflows._runner.util",
    "pipelines.warm_start",
    "steps.common",
    "steps.taint",
    "steps.floor",
    "steps.deploy",
    "steps.wait",
    "steps.loadtest",
    "steps.loadtest_stage",
    "steps.teardown",
    "steps.compare",
    "steps.report",
]
RUNNER_ARGS = ["-m", "hera.workflows.runner", "-e"]
#: Set to 0 to start every step as a fresh interpreter.
ENV_SWITCH = "ORCHBENCH_WARM_STEPS"
#: Environment variables the forkserver must not carry: it outlives one run (and must not be taken
#: for one of that run's processes by `orchbench cleanup`).
RUN_SCOPED_ENV = ("ORCHBENCH_OWNER",)

_lock = threading.Lock()
_context: ForkServerContext | None = None


def eligible(command: list[str], args: list[str], python: str) -> bool:
    """Whether the step is Hera's runner on this interpreter (the only case forked warm)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    return (
        command in (["python"], ["python3"], [python])
        and python == sys.executable
        and len(args) == len(RUNNER_ARGS) + 1
        and args[: len(RUNNER_ARGS)] == RUNNER_ARGS
    )


def _forkserver() -> ForkServerContext:
    """The forkserver context, its server started once per process with PRELOAD imported (without
    the run-scoped environment variables)."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            assert isinstance(ctx, ForkServerContext)
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        saved = {k: os.environ.pop(k) for k in RUN_SCOPED_ENV if k in os.environ}
        try:
            forkserver.ensure_running()  # (re)started here if it is not running
        finally:
            os.environ.update(saved)
        return _context


class WarmStep:
    """A step forked from the forkserver: what the runner needs of a Popen (pid, poll, wait)."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self.pid: int = process.pid if process.pid is not None else -1

    def poll(self) -> int | None:
        if self._process.is_alive():
            return None
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"step {self.pid} still running after {timeout} s")
            self._process.join(0.05)
        return code


def start(entry: str, source_file: str, cwd: str, env: dict[str, str], stdout: str, stderr: str) -> WarmStep:
    """Fork the step `entry` (module:function) with its inputs file, as `python -m
    hera.workflows.runner -e ENTRY FILE` in `cwd` would run, and return its handle."""
    ctx = _forkserver()
    process = ctx.Process(
        target=_step_main,
        args=(entry, source_file, cwd, env, stdout, stderr),
        name=f"step {entry}",
        daemon=True,  # stopped (SIGTERM) if the runner's process exits while it runs
    )
    process.start()
    return WarmStep(process)


def _detach_from_forkserver() -> None:
    """Close every descriptor above stderr, as an exec'd step gets none (close_fds). Among them is
    the forkserver's "alive" pipe, which multiprocessing hands every child it forks: the forkserver
    exits when the last holder closes it, so a step holding it would keep the forkserver, and with it
    the step itself (its parent-death signal comes from the forkserver), alive after the runner was
    killed (tests/test_faults.py caught exactly that)."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    with contextlib.suppress(AttributeError):  # they name descriptors just closed: forget them
        forkserver._forkserver._forkserver_alive_fd = None  # type: ignore[attr-defined]
        resource_tracker._resource_tracker._fd = None  # type: ignore[attr-defined]
        resource_tracker._resource_tracker._pid = None  # type: ignore[attr-defined]


def _step_main(entry: str, source_file: str, cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """In the forked child: become the step's process, run Hera's runner, exit as it would."""
    _detach_from_forkserver()
    # what `ps` and /proc/<pid>/cmdline show: the command the fresh interpreter would have had
    setproctitle.setproctitle(" ".join([sys.executable, *RUNNER_ARGS, entry, source_file]))
    os.setsid()
    preexec = die_with_parent(parent=os.getppid())  # the forkserver, which exits with the runner
    if preexec is not None:
        preexec()
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # `python -m` puts the working directory first, then $PYTHONPATH (which the forkserver's own
    # path holds only as it was when the forkserver started)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[0:0] = [cwd, *extra]
    sys.argv = [sys.argv[0] if sys.argv else "python", "-e", entry, source_file]
    code, interrupted = 0, False
    try:
        hera_runner()
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code, interrupted = 1, True
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if interrupted:  # as the interpreter does after an uncaught KeyboardInterrupt: die by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _exit_code(value: Any) -> int:
    """SystemExit's code as the interpreter turns it into an exit status."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    with contextlib.suppress(BaseException):
        print(value, file=sys.stderr)
    return 1
