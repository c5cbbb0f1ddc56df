"""Fault matrix: `orchbench run` as a real subprocess, broken on purpose in every phase.

Each case asserts what a user is promised: a non-zero exit, ONE line `orchbench: error: ...` on stderr
and no traceback, no process left behind (recorded servers, or any server / k6 / step process naming
this run's folder or ports), and the raw artifacts of every block that finished before the fault kept
and readable. Runs use tiny specs (2 REST blocks of 2 s; the default interleave, request, makes each
block one paired load task) on ports picked free for each test; the server-death cases also run with
interleave block (one task per block and arm); a run that must only get past its blocks (the fault
comes at compare, or it is the run after a fault) has blocks of 1 s and no warm-up, and the two
machine-lock tests share one set of three runs. The run harness is tests/fault_helpers.py.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fault_helpers import (
    QUICK_BLOCKS,
    Run,
    _alive,
    _all_pids,
    _cmdline,
    load_tasks,
    wait_for,
)

pytestmark = pytest.mark.slow


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


# --------------------------------------------------------------------------------------------------
# a server or the load tester dies mid-load


@pytest.mark.parametrize(
    "role,arm,interleave",
    [
        ("model_server", "without", "request"),
        ("orchestrator", "with", "block"),
        # the same code paths again (make test-full)
        pytest.param("model_server", "without", "block", marks=pytest.mark.full),
        pytest.param("orchestrator", "with", "request", marks=pytest.mark.full),
    ],
)
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
        pytest.param(signal.SIGTERM, "wait", marks=pytest.mark.full),
        pytest.param(signal.SIGINT, "load", marks=pytest.mark.full),
        (signal.SIGTERM, "load"),
        (signal.SIGINT, "compare"),
        pytest.param(signal.SIGTERM, "compare", marks=pytest.mark.full),
    ],
)
def test_signal_in_phase(make_run: Callable[..., Run], sig: signal.Signals, phase: str) -> None:
    run = make_run(**QUICK_BLOCKS) if phase == "compare" else make_run()  # compare: after every block
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


@pytest.mark.parametrize("which", ["with", pytest.param("without", marks=pytest.mark.full)])
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
    """A second run on the killed run's ports: it can only succeed if nothing of the first is left.
    One short block: deploying, measuring and tearing down on those ports is what it proves."""
    nxt = make_run(blocks=1, **QUICK_BLOCKS)
    nxt.ports = dict(killed.ports)
    data = yaml.safe_load(nxt.spec_path.read_text())
    data["local"]["ports"] = nxt.ports
    nxt.spec_path.write_text(yaml.safe_dump(data))
    return nxt


@pytest.mark.parametrize(
    "sig,phase",
    [
        pytest.param(signal.SIGKILL, "deploy", marks=pytest.mark.full),
        (signal.SIGKILL, "load"),
        (signal.SIGHUP, "deploy"),
        pytest.param(signal.SIGHUP, "load", marks=pytest.mark.full),
    ],
)
def test_orchbench_killed_or_hung_up(make_run: Callable[..., Run], sig: signal.Signals, phase: str) -> None:
    # killed mid-load: blocks long enough that a k6 left running would still be there seconds after
    # the 3 s it is given to die (killed ~1 s into a 7 s block with no warm-up: ~6 s left)
    killed_mid_load = (sig, phase) == (signal.SIGKILL, "load")
    run = make_run(duration_s=7, warmup_s=0) if killed_mid_load else make_run()
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


@pytest.fixture(scope="module")
def contending_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[int, Run], Run]]:
    """Two runs started together (one wins the machine, the other is refused), and a third started
    with --wait once the winner is deploying. The machine-lock tests below each read these runs:
    ({exit code: run} of the two, the waiting run)."""
    tmp = tmp_path_factory.mktemp("contending")
    first, second, waiter = (Run(tmp / name, **QUICK_BLOCKS) for name in ("first", "second", "waiter"))
    try:
        first.start()
        second.start()

        def deploying() -> Run | None:
            running = [r for r in (first, second) if r.started("deploy-")]
            if not running and all(r.proc is not None and r.proc.poll() is not None for r in (first, second)):
                pytest.fail(f"neither run got to deploy: {first.stderr()}\n{second.stderr()}")
            return running[0] if running else None

        winner = wait_for("one of the two runs to deploy", deploying, 90)
        assert winner.proc is not None and winner.proc.poll() is None, winner.stderr()
        waiter.start(wait=True)
        rcs = {first.finish(): first, second.finish(): second}
        waiter.finish()
        yield rcs, waiter
    finally:
        for run in (first, second, waiter):
            run.kill_everything()


def test_two_runs_at_once(contending_runs: tuple[dict[int, Run], Run]) -> None:
    """Started together: one holds the machine and succeeds; the other says so in one line and
    starts nothing (no run folder, no process)."""
    rcs, _ = contending_runs
    assert sorted(rcs) == [0, 1], {rc: r.stderr() for rc, r in rcs.items()}
    winner, loser = rcs[0], rcs[1]
    assert (winner.out / "summary.json").exists()
    msg = loser.assert_failed_cleanly(1, (1,), "holds this machine", "--wait")
    assert str(winner.out) in msg, msg
    assert not loser.out.exists(), "the refused run created its run folder"
    assert not winner.leftovers()


def test_second_run_waits(contending_runs: tuple[dict[int, Run], Run]) -> None:
    """--wait: a run started while another holds the machine waits for it to finish, then runs."""
    rcs, waiter = contending_runs
    assert 0 in rcs, {rc: r.stderr() for rc, r in rcs.items()}  # the run it waited for succeeded
    assert waiter.proc is not None and waiter.proc.returncode == 0, waiter.stderr()
    waited = [ln for ln in waiter.stderr().splitlines() if "waiting for orchbench run" in ln]
    assert waited and str(rcs[0].out) in waited[0], waiter.stderr()
    assert (waiter.out / "summary.json").exists()
    assert not waiter.leftovers(), waiter.leftovers()
