"""Fault matrix: `orchbench run` as a real subprocess, broken on purpose in every phase.

Each case asserts what a user is promised: a non-zero exit, ONE line `orchbench: error: ...` on stderr
and no traceback, no process left behind (recorded servers, or any server / k6 / step process naming
this run's folder or ports), and the raw artifacts of every block that finished before the fault kept
and readable. Runs use tiny specs (2 REST blocks of 2 s; the default interleave, request, makes each
block one paired load task) on ports picked free for each test; the server-death cases also run with
interleave block (one task per block and arm).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchbench.core.spec import load_spec
from results_schema import load_summary
from results_schema.samples import load_samples
from serving.runtime import free_port
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 120.0  # one tiny run takes ~30 s on 2 cores; every wait below has a deadline


# --------------------------------------------------------------------------------------------------
# helpers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s` (or if `proc` exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            pytest.fail(f"orchbench exited ({proc.returncode}) before {what}")
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@dataclass
class Run:
    """One `orchbench run` subprocess with its spec, output folder and ports."""

    tmp: Path
    transport: str = "rest"
    blocks: int = 2
    interleave: str = "auto"
    duration_s: float = 2
    extra: dict[str, Any] = field(default_factory=dict)
    out: Path = field(init=False)
    spec_path: Path = field(init=False)
    ports: dict[str, int] = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"
        self.spec_path = self.tmp / "spec.yaml"
        self.stderr_path = self.tmp / "orchbench.stderr"
        self.tmp.mkdir(parents=True, exist_ok=True)
        ports: list[int] = []
        while len(ports) < 3:
            p = free_port()
            if p not in ports:
                ports.append(p)
        self.ports = {"with": ports[0], "without": ports[1], "model_behind_orchestrator": ports[2]}
        spec: dict[str, Any] = {
            "name": "faults",
            "transports": [self.transport],
            "load": {
                "workers": 1,
                "duration_s": self.duration_s,
                "warmup_s": 1,
                "timeout_s": 5,
                "interleave": self.interleave,
            },
            "blocks": self.blocks,
            "local": {"ports": self.ports, "ready_timeout_s": 60},
            **self.extra,
        }
        self.spec_path.write_text(yaml.safe_dump(spec))

    # running ---------------------------------------------------------------------------------------
    def start(self, out: Path | None = None) -> subprocess.Popen[bytes]:
        if out is not None:
            self.out = out
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchbench.cli",
                    "run",
                    "--spec",
                    str(self.spec_path),
                    "--out",
                    str(self.out),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # so a failed test can kill whatever is left of it
            )
        return self.proc

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def started(self, task_prefix: str) -> str | None:
        """Name of the first task starting with `task_prefix` the runner reported starting, if any."""
        for line in self.stderr().splitlines():
            parts = line.split()
            if parts[:2] == ["[orchbench]", "start"] and parts[2].startswith(task_prefix):
                return parts[2]
        return None

    def wait_started(self, task_prefix: str, timeout_s: float = 90) -> str:
        return str(
            wait_for(f"task {task_prefix}* to start", lambda: self.started(task_prefix), timeout_s, self.proc)
        )

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, "orchbench is no longer running"
        os.kill(self.proc.pid, sig)

    # state -----------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.out / "state" / "deploy").glob("*.json")):
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(path.read_text()))
        return out

    def recorded_procs(self) -> list[dict[str, Any]]:
        return [p for rec in self.records() for p in rec["details"]["processes"]]

    def server_pid(self, arm: str, role: str) -> int | None:
        rec = self.out / "state" / "deploy" / f"{self.transport}-{arm}.json"
        if not rec.exists():
            return None
        for p in json.loads(rec.read_text())["details"]["processes"]:
            if p["role"] == role:
                return int(p["pid"])
        return None

    def k6_pid(self, task: str) -> int | None:
        needle = str(self.out / "tasks" / task)
        for pid in _all_pids():
            cmd = _cmdline(pid)
            if needle in cmd and "k6" in cmd and " run " in cmd and "hera" not in cmd:
                return pid
        return None

    def samples_flowing(self, task: str) -> bool:
        """k6 of `task` has written request rows (it is mid-load, past its start-up)."""
        csv = self.out / "tasks" / task / "fs" / "out" / "raw" / "k6-samples.csv"
        try:
            return csv.stat().st_size > 4096
        except OSError:
            return False

    def leftover_pids(self) -> dict[int, str]:
        """Processes of this run still alive: recorded servers, and any server / k6 / step process
        whose command line names this run's folder or one of its ports. pid -> description."""
        found: dict[int, str] = {}
        for p in self.recorded_procs():
            if _alive(int(p["pid"])) and _cmdline(int(p["pid"])).split() == p["cmdline"]:
                found[int(p["pid"])] = f"recorded {p['role']}"
        port_words = {str(p) for p in self.ports.values()} | {f"127.0.0.1:{p}" for p in self.ports.values()}
        for pid in _all_pids():
            if pid == os.getpid() or (self.proc is not None and pid == self.proc.pid) or not _alive(pid):
                continue
            cmd = _cmdline(pid)
            words = set(cmd.split())
            serving = "serving.model_server" in cmd or "serving.orchestrator" in cmd
            k6 = any(w.endswith("/k6") or w == "k6" for w in words)
            if (serving or k6) and (str(self.out) in cmd or words & port_words):
                found[pid] = cmd[:200]
            elif str(self.tmp) in cmd and "hera.workflows.runner" in cmd:
                found[pid] = f"step {cmd[:200]}"
        return found

    def leftovers(self) -> list[str]:
        return [f"pid {pid}: {what}" for pid, what in self.leftover_pids().items()]

    def kill_everything(self) -> None:
        """Finalizer: whatever this test started and is still there, by pid."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # assertions ------------------------------------------------------------------------------------
    def assert_failed_cleanly(self, rc: int, expect_codes: tuple[int, ...], *needles: str) -> str:
        err = self.stderr()
        assert rc != 0, f"exit 0 after a fault; stderr:\n{err}"
        assert rc in expect_codes, f"exit {rc}, expected one of {expect_codes}; stderr:\n{err}"
        assert "Traceback" not in err, err
        errors = [
            line
            for line in err.splitlines()
            if line.startswith(("orchbench: error:", "orchbench: interrupted"))
        ]
        assert len(errors) == 1, f"expected exactly one error line, got {errors}; stderr:\n{err}"
        message = errors[0]
        assert len(message) > len("orchbench: error: ") + 10, message
        for needle in needles:
            assert needle in message, f"{needle!r} not in {message!r}"
        left = self.leftovers()
        assert not left, f"processes left behind: {left}"
        return message

    def arm_folders(self, task: str) -> list[Path]:
        """The folders holding meta.json of a load task's artifact (a paired task: one per arm)."""
        folder = self.out / "raw" / task
        if (folder / "meta.json").exists():
            return [folder]
        return [folder / arm for arm in ("with", "without") if (folder / arm / "meta.json").exists()]

    def metas(self, task: str) -> list[dict[str, Any]]:
        return [json.loads((f / "meta.json").read_text()) for f in self.arm_folders(task)]

    def assert_raw_kept(self, finished: list[str]) -> None:
        """Every load task that reported done before the fault has readable raw artifacts in OUT/raw."""
        for folder in [f for task in finished for f in self.arm_folders(task)]:
            meta = json.loads((folder / "meta.json").read_text())
            assert meta["status"] == "ok", meta
            summary = load_summary(folder / meta["raw"])
            assert summary.tool == "k6" and summary.requests > 0
            samples = load_samples(folder / meta["samples"], measure_only=True)
            assert len(samples) > 0
            assert len(samples) == summary.requests, (len(samples), summary.requests)

    def done_tasks(self, prefix: str = "load-") -> list[str]:
        return [
            line.split()[2]
            for line in self.stderr().splitlines()
            if line.split()[:2] == ["[orchbench]", "done"] and line.split()[2].startswith(prefix)
        ]


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def factory(**kw: Any) -> Run:
        run = Run(tmp_path / f"run{len(runs)}", **kw)
        runs.append(run)
        return run

    yield factory
    for run in runs:
        run.kill_everything()


def load_tasks(run: Run) -> list[str]:
    """The load-test tasks in the order the runner executes them (blocks in order; with interleave
    block, the arms as drawn), as the pipeline names them."""
    from pipelines.benchmark import _load_tasks

    return [
        name for name, transport, *_ in _load_tasks(load_spec(run.spec_path)) if transport == run.transport
    ]


# --------------------------------------------------------------------------------------------------
# a server or the load tester dies mid-load


@pytest.mark.parametrize("interleave", ["request", "block"])
@pytest.mark.parametrize("role,arm", [("model_server", "without"), ("orchestrator", "with")])
def test_server_killed_mid_load(make_run: Callable[..., Run], role: str, arm: str, interleave: str) -> None:
    run = make_run(interleave=interleave)
    order = load_tasks(run)
    assert len(order) == (2 if interleave == "request" else 4), order
    # the first load task measuring that arm that has at least one finished task before it
    target = next(t for t in order[1:] if interleave == "request" or t.endswith(f"-{arm}"))
    before = order[: order.index(target)]
    run.start()
    run.wait_started(target)
    wait_for(f"{target} mid-load", lambda: run.samples_flowing(target), 60, run.proc)
    pid = run.server_pid(arm, role)
    assert pid is not None and _alive(pid)
    os.kill(pid, signal.SIGKILL)
    rc = run.finish()
    msg = run.assert_failed_cleanly(rc, (1,), f"step {target} failed", "requests failed")
    assert run.done_tasks() == before, msg
    run.assert_raw_kept(before)
    # the failed block's own artifacts are kept too, marked failed (a pair: both arms, the dead one named)
    metas = run.metas(target)
    assert len(metas) == (2 if interleave == "request" else 1)
    assert all(m["status"] == "failed" and "requests failed" in m["error"] for m in metas)
    if interleave == "request" and role == "orchestrator":  # only the "with" arm lost its server
        assert "k6 (with arm)" in msg, msg


def test_k6_killed_mid_load(make_run: Callable[..., Run]) -> None:
    run = make_run()
    order = load_tasks(run)
    target = order[1]
    run.start()
    run.wait_started(target)
    wait_for(f"{target} mid-load", lambda: run.samples_flowing(target), 60, run.proc)
    pid = wait_for("the k6 process", lambda: run.k6_pid(target), 10, run.proc)
    os.kill(pid, signal.SIGKILL)
    rc = run.finish()
    run.assert_failed_cleanly(rc, (1,), f"step {target} failed", "k6")
    assert run.done_tasks() == order[:1]
    run.assert_raw_kept(order[:1])
    assert [m["status"] for m in run.metas(target)] == ["failed", "failed"]


# --------------------------------------------------------------------------------------------------
# SIGINT / SIGTERM to `orchbench run` in each phase


def _servers_up(run: Run) -> bool:
    """A server of this run has been spawned (deploy is past its imports; maybe not yet recorded)."""
    ports = {str(p) for p in run.ports.values()}
    return any("serving." in c and ports & set(c.split()) for c in map(_cmdline, _all_pids()))


@pytest.mark.parametrize(
    "sig,phase",
    [
        (
            signal.SIGINT,
            "deploy",
        ),  # as soon as the first server process exists: deploy may not have recorded it
        (signal.SIGTERM, "wait"),
        (signal.SIGINT, "load"),
        (signal.SIGTERM, "load"),
        (signal.SIGINT, "compare"),
        (signal.SIGTERM, "compare"),
    ],
)
def test_signal_in_phase(make_run: Callable[..., Run], sig: signal.Signals, phase: str) -> None:
    run = make_run()
    order = load_tasks(run)
    run.start()
    finished: list[str] = []
    if phase == "deploy":
        run.wait_started("deploy-")
        wait_for("a server process", lambda: _servers_up(run), 60, run.proc, interval_s=0.005)
    elif phase == "wait":
        run.wait_started("wait-")
    elif phase == "load":
        run.wait_started(order[1])
        wait_for(f"{order[1]} mid-load", lambda: run.samples_flowing(order[1]), 60, run.proc)
        finished = order[:1]
    else:
        run.wait_started("compare")
        finished = order
    run.signal(sig)
    rc = run.finish()
    msg = run.assert_failed_cleanly(rc, (130,), f"interrupted by {sig.name}")
    assert run.done_tasks() == finished, msg
    run.assert_raw_kept(finished)
    assert "[orchbench] done  cleanup" in run.stderr()  # the exit handler ran to its end
    assert not (run.out / "summary.json").exists() or phase == "compare"


def test_second_signal_during_cleanup(make_run: Callable[..., Run]) -> None:
    """SIGTERM mid-load, then SIGINT and SIGTERM again while the exit handler tears down."""
    run = make_run()
    order = load_tasks(run)
    run.start()
    run.wait_started(order[0])
    wait_for(f"{order[0]} mid-load", lambda: run.samples_flowing(order[0]), 60, run.proc)
    run.signal(signal.SIGTERM)
    wait_for("the exit handler", lambda: run.started("cleanup"), 30, run.proc, interval_s=0.01)
    for again in (signal.SIGINT, signal.SIGTERM):
        if run.proc is not None and run.proc.poll() is None:
            os.kill(run.proc.pid, again)
    rc = run.finish()
    run.assert_failed_cleanly(rc, (130,), "interrupted by SIGTERM")


def test_signal_before_the_runner_starts(make_run: Callable[..., Run]) -> None:
    """SIGTERM while the workflow is being compiled (the run folder exists, no step yet): one line, 130."""
    run = make_run()
    run.start()
    wait_for("the run folder", lambda: run.out.exists(), 30, run.proc, interval_s=0.005)
    run.signal(signal.SIGTERM)
    rc = run.finish()
    run.assert_failed_cleanly(rc, (130,), "interrupted by SIGTERM")
    assert not run.records()


# --------------------------------------------------------------------------------------------------
# the environment is wrong


@pytest.mark.parametrize("which", ["with", "without"])
def test_port_already_in_use(make_run: Callable[..., Run], which: str) -> None:
    run = make_run()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", run.ports[which]))
        holder.listen()
        run.start()
        rc = run.finish()
    msg = run.assert_failed_cleanly(rc, (1,), f"port {run.ports[which]}", "already in use")
    assert "orchbench.core.errors" not in msg, msg  # the message, not an exception's class path
    assert not run.done_tasks()
    # the other arm, deployed or not, was torn down by the exit handler
    assert "[orchbench] done  cleanup" in run.stderr()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_output_directory_not_writable(make_run: Callable[..., Run], where: str) -> None:
    run = make_run()
    if where == "under-a-file":
        blocker = run.tmp / "file.txt"
        blocker.write_text("a regular file, not a folder\n")
        out = blocker / "sub"
    else:
        out = Path("/proc/self/orchbench-out")
    run.start(out=out)
    rc = run.finish(60)
    run.assert_failed_cleanly(rc, (2,), "output directory not writable")
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# orchbench itself killed (SIGKILL: no clean-up of its own) or hung up on (SIGHUP: a closed terminal)


def _is_server(what: str) -> bool:
    """A `Run.leftover_pids` description of a model server or orchestrator (else k6 or a step)."""
    return "serving." in what or "recorded" in what


def _next_run_on_same_ports(make_run: Callable[..., Run], killed: Run) -> Run:
    """A second run on the killed run's ports: it can only succeed if nothing of the first is left."""
    nxt = make_run()
    nxt.ports = dict(killed.ports)
    data = yaml.safe_load(nxt.spec_path.read_text())
    data["local"]["ports"] = nxt.ports
    nxt.spec_path.write_text(yaml.safe_dump(data))
    return nxt


@pytest.mark.parametrize(
    "sig,phase",
    [
        (signal.SIGKILL, "deploy"),
        (signal.SIGKILL, "load"),
        (signal.SIGHUP, "deploy"),
        (signal.SIGHUP, "load"),
    ],
)
def test_orchbench_killed_or_hung_up(make_run: Callable[..., Run], sig: signal.Signals, phase: str) -> None:
    # killed mid-load: blocks long enough that a k6 left running would still be there seconds later
    run = make_run(duration_s=8) if (sig, phase) == (signal.SIGKILL, "load") else make_run()
    order = load_tasks(run)
    run.start()
    finished: list[str] = []
    k6: int | None = None
    if phase == "deploy":
        run.wait_started("deploy-")
        wait_for("a server process", lambda: _servers_up(run), 60, run.proc, interval_s=0.005)
    else:
        run.wait_started(order[1])
        wait_for(f"{order[1]} mid-load", lambda: run.samples_flowing(order[1]), 60, run.proc)
        finished = order[:1]
        k6 = run.k6_pid(order[1])
        assert k6 is not None, "no k6 process mid-load"
    run.signal(sig)
    rc = run.finish()
    if sig == signal.SIGHUP:  # handled like SIGTERM: one line, 130, the exit handler ran
        run.assert_failed_cleanly(rc, (130,), "interrupted by SIGHUP")
        assert "[orchbench] done  cleanup" in run.stderr()
    else:
        assert rc == -signal.SIGKILL
        if phase == "load":
            # the step process and its k6 die with the runner (parent-death signal), within seconds
            wait_for(
                "the killed run's k6 and step processes to die with it",
                lambda: not [w for w in run.leftover_pids().values() if not _is_server(w)],
                3,
            )
            assert k6 is not None and not _alive(k6), f"k6 (pid {k6}) outlived the killed run"
        # the servers watch the run (their lease): they go by themselves, with nobody to stop them
        wait_for(
            "the killed run's servers to stop by themselves",
            lambda: not [w for w in run.leftover_pids().values() if _is_server(w)],
            15,
        )
    # the next run, on the same ports, succeeds; it cleans up after a killed run and says so
    nxt = _next_run_on_same_ports(make_run, run)
    nxt.start()
    assert nxt.finish() == 0, nxt.stderr()
    assert (nxt.out / "summary.json").exists()
    if sig == signal.SIGKILL:
        assert "an earlier run died without cleaning up" in nxt.stderr(), nxt.stderr()
    assert not run.leftovers(), run.leftovers()
    assert not nxt.leftovers(), nxt.leftovers()
    # what the killed run had finished is in its run directory, analysable
    run.assert_raw_kept(finished)
    assert all(run.arm_folders(t) for t in finished)


def test_two_runs_at_once(make_run: Callable[..., Run]) -> None:
    """Started together: one holds the machine and succeeds; the other says so in one line and
    starts nothing (no run folder, no process)."""
    a, b = make_run(), make_run()
    a.start()
    b.start()
    rcs = {a.finish(): a, b.finish(): b}
    assert sorted(rcs) == [0, 1], {rc: r.stderr() for rc, r in rcs.items()}
    winner, loser = rcs[0], rcs[1]
    assert (winner.out / "summary.json").exists()
    msg = loser.assert_failed_cleanly(1, (1,), "holds this machine", "--wait")
    assert str(winner.out) in msg, msg
    assert not loser.out.exists(), "the refused run created its run folder"
    assert not winner.leftovers()


def test_second_run_waits(make_run: Callable[..., Run]) -> None:
    """--wait: the second run waits for the first to finish, then runs."""
    a, b = make_run(), make_run()
    a.start()
    a.wait_started("deploy-")
    with open(b.stderr_path, "wb") as err:
        b.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchbench.cli",
                "run",
                "--spec",
                str(b.spec_path),
                "--out",
                str(b.out),
                "--wait",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    assert a.finish() == 0, a.stderr()
    assert b.finish() == 0, b.stderr()
    assert "waiting for orchbench run" in b.stderr()
