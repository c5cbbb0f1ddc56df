"""`orchbench cleanup RUN_DIR` by hand (issue 15, "Nothing outlives its run"): from a dead run's
records it stops only processes whose recorded command line and start time still match, and those
carrying the run's ORCHBENCH_OWNER; nothing else. One line on stderr, exit 0; bad input one line, 2."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

DEAD_OWNER = "999999999:1"  # a pid that cannot exist: the run that started these is gone


def _starttime(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture()
def sleepers() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _sleep(pids: list[int], seconds: str, env: dict[str, str] | None = None) -> int:
    """`sleep` as its own process group, orphaned at once (as a dead run's servers are: not our child,
    so nothing here waits for it), and its pid."""
    launcher = (  # the sleeper's stdio on /dev/null, so the launcher's pipe closes when it exits
        "import subprocess as s\n"
        f"print(s.Popen(['sleep', {seconds!r}], start_new_session=True, stdin=s.DEVNULL, stdout=s.DEVNULL,"
        " stderr=s.DEVNULL).pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, **(env or {})},
    )
    pid = int(out.stdout)
    pids.append(pid)
    return pid


def _cli(*args: str, runtime: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHBENCH_RUNTIME_DIR": str(runtime)}
    env.pop("ORCHBENCH_OWNER", None)
    return subprocess.run(
        [sys.executable, "-m", "orchbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_cleanup_run_dir_stops_only_what_the_dead_run_left(tmp_path: Path, sleepers: list[int]) -> None:
    run = tmp_path / "run"
    (run / "state" / "deploy").mkdir(parents=True)
    (run / "workflow.yaml").write_text("{}\n")
    (run / "owner.json").write_text(json.dumps({"owner": DEAD_OWNER, "pid": 999999999}))
    (run / "cpu_plan.json").write_text("{}\n")
    server = _sleep(sleepers, "61")  # recorded, still the same process: stopped
    recycled = _sleep(sleepers, "62")  # its pid recorded with another start time: left alone
    step = _sleep(sleepers, "63", env={"ORCHBENCH_OWNER": DEAD_OWNER})  # carries the run's owner: stopped
    stranger = _sleep(sleepers, "64")  # nothing to do with the run: left alone
    processes = [
        {
            "role": "model",
            "pid": server,
            "pgid": server,
            "cmdline": ["sleep", "61"],
            "starttime": _starttime(server),
        },
        {
            "role": "orchestrator",
            "pid": recycled,
            "pgid": recycled,
            "cmdline": ["sleep", "62"],
            "starttime": _starttime(recycled) - 1000,
        },
    ]
    record = {
        "platform": "local",
        "name": "x",
        "transport": "rest",
        "arm": "without",
        "model_name": "m",
        "details": {"processes": processes},
    }
    (run / "state" / "deploy" / "rest-without.json").write_text(json.dumps(record))

    res = _cli("cleanup", str(run), runtime=tmp_path / "runtime")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"orchbench: an earlier run died without cleaning up: {run}: "), lines[0]
    assert f"model pid {server}" in lines[0] and f"pid {step}" in lines[0], lines[0]
    assert "removed its CPU plan" in lines[0] and not (run / "cpu_plan.json").exists()
    deadline = time.monotonic() + 5
    while (_alive(server) or _alive(step)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server) and not _alive(step)
    assert _alive(recycled) and _alive(stranger), "cleanup stopped a process that was not the run's"
    assert str(recycled) not in lines[0] and str(stranger) not in lines[0]

    again = _cli("cleanup", str(run), runtime=tmp_path / "runtime")  # twice: nothing left, still fine
    assert again.returncode == 0 and "no process was still running" in again.stderr, again.stderr


def test_cleanup_usage_errors_one_line(tmp_path: Path) -> None:
    res = _cli("cleanup", str(tmp_path), runtime=tmp_path / "runtime")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0] == f"orchbench: error: {tmp_path}: not a run directory (no workflow.yaml or state/)"
    res = _cli("cleanup", runtime=tmp_path / "runtime")  # no run died holding this (isolated) machine
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "orchbench: nothing to clean up: no run died holding this machine"
