"""Warm step starts (pipelines/warm_start.py): a step forked from the preloaded forkserver behaves as
the fresh `python -m hera.workflows.runner -e ENTRY FILE` it replaces: working directory and import
path, the template's environment only, its own session, logs, exit codes, exit handlers, SIGINT."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from pipelines import warm_start

PROBE = """
import atexit, json, os, pathlib, sys, time

def probe(mode: str) -> str:
    here = pathlib.Path.cwd()
    atexit.register(lambda: (here / "atexit.txt").write_text("ran"))
    (here / "probe.json").write_text(json.dumps({
        "cwd": str(here), "path0": sys.path[0], "env": dict(os.environ), "pid": os.getpid(),
        "sid": os.getsid(0), "pgid": os.getpgid(0),
        "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
        "cmdline": open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(),
    }))
    if mode == "raise":
        raise RuntimeError("the step failed")
    if mode == "exit3":
        sys.exit(3)
    if mode == "sleep":
        (here / "sleeping").write_text("")
        time.sleep(30)
    print("a line of the step's own")
    return "result-" + mode
"""


def _start(tmp_path: Path, mode: str) -> warm_start.WarmStep:
    (tmp_path / "warmprobe.py").write_text(PROBE)
    source = tmp_path / "source"
    source.write_text(json.dumps([{"name": "mode", "value": mode}]))
    env = {"PATH": os.environ.get("PATH", ""), "ORCHBENCH_OWNER": "run-1", "ONLY_HERE": "x"}
    logs = (str(tmp_path / "out.log"), str(tmp_path / "err.log"))
    return warm_start.start("warmprobe:probe", str(source), str(tmp_path), env, *logs)


def test_only_hera_runner_on_this_interpreter_is_forked_warm(monkeypatch):
    args = ["-m", "hera.workflows.runner", "-e", "steps.wait:wait"]
    assert warm_start.eligible([sys.executable], args, sys.executable)
    assert not warm_start.eligible(["/other/python"], args, "/other/python")
    assert not warm_start.eligible([sys.executable], ["-m", "other", "-e", "x:y"], sys.executable)
    assert not warm_start.eligible(["sh"], args, sys.executable)
    monkeypatch.setenv(warm_start.ENV_SWITCH, "0")
    assert not warm_start.eligible([sys.executable], args, sys.executable)


def test_a_warm_step_runs_as_a_fresh_one_would(tmp_path):
    step = _start(tmp_path, "ok")
    assert step.wait(timeout=60) == 0
    seen = json.loads((tmp_path / "probe.json").read_text())
    assert seen["cwd"] == str(tmp_path) and seen["path0"] == str(tmp_path)
    # the template's environment only: nothing of the test process's own
    assert seen["env"]["ONLY_HERE"] == "x" and seen["env"]["ORCHBENCH_OWNER"] == "run-1"
    assert "PYTEST_CURRENT_TEST" not in seen["env"]
    # its own session and process group, whose id is the pid the runner signals
    assert seen["pid"] == step.pid == seen["sid"] == seen["pgid"]
    # no descriptor of the forkserver's (its "alive" pipe would keep it, and this step, alive after
    # the runner died): 0-2, and the one listing /proc/self/fd
    assert seen["fds"] == [0, 1, 2, 3], seen["fds"]
    # ps shows the command a fresh interpreter would have had
    assert (
        seen["cmdline"].strip()
        == f"{sys.executable} -m hera.workflows.runner -e warmprobe:probe {tmp_path / 'source'}"
    )
    out = (tmp_path / "out.log").read_text()
    assert "a line of the step's own" in out and "result-ok" in out  # Hera prints the result
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_failures_and_exit_codes_come_back(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    failed = _start(tmp_path / "a", "raise")
    exited = _start(tmp_path / "b", "exit3")
    assert failed.wait(timeout=60) == 1
    assert "RuntimeError: the step failed" in (tmp_path / "a" / "err.log").read_text()
    assert exited.wait(timeout=60) == 3


def test_sigint_to_the_process_group_stops_it_as_an_interrupt(tmp_path):
    step = _start(tmp_path, "sleep")
    deadline = time.monotonic() + 60
    while not (tmp_path / "sleeping").exists():
        assert time.monotonic() < deadline and step.poll() is None
        time.sleep(0.05)
    os.killpg(step.pid, signal.SIGINT)
    assert step.wait(timeout=30) == -signal.SIGINT
    assert "KeyboardInterrupt" in (tmp_path / "err.log").read_text()
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_the_forkserver_does_not_carry_a_runs_owner(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHBENCH_OWNER", "run-2")
    step = _start(tmp_path, "ok")
    assert step.wait(timeout=60) == 0
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    if pid is None:
        pytest.skip("no forkserver pid to look at")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not any(e.startswith(b"ORCHBENCH_OWNER=") for e in environ)
